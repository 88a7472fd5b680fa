"""OpenTelemetry export, checked at a real OTLP receiver (gRPC and
HTTP/protobuf, on the official protobufs): the spans and metrics a plain
request, a failover, a stream and a rejected request leave; the standard
OTEL_* switches; content and secrets kept out; and a collector that is down
or hangs costing requests nothing."""

import json
import os
import re
import signal
import socket
import threading
import time
import urllib.error
import urllib.request

import anthropic
import openai
import pytest

from conftest import start_demo, stop_demo
from otlp_receiver import Receiver

# Export often, so the tests wait milliseconds rather than seconds.
FAST = {
    "OTEL_BSP_SCHEDULE_DELAY": "100",
    "OTEL_METRIC_EXPORT_INTERVAL": "300",
    "OTEL_SERVICE_NAME": "switchyard-under-test",
    "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=ci",
}
APP_KEY = "app-key-that-must-not-be-exported"


def new_traceparent():
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def spans_of(receiver, trace_id, n):
    """Waits for at least `n` spans of the trace and returns them."""
    def ready():
        spans = [s for s in receiver.all_spans() if s["trace_id"] == trace_id]
        return spans if len(spans) >= n else None
    return receiver.wait_for(ready, what=f"{n} spans of trace {trace_id}")


def one(spans, kind):
    found = [s for s in spans if s["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} span, got {found}"
    return found[0]


def endpoint(receiver, protocol):
    port = receiver.grpc_port if protocol == "grpc" else receiver.http_port
    return f"http://127.0.0.1:{port}"


def traced_demo(receiver, protocol="http/protobuf", **extra):
    return start_demo({**FAST, **extra,
                       "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint(receiver, protocol),
                       "OTEL_EXPORTER_OTLP_PROTOCOL": protocol})


@pytest.fixture(scope="module", params=["grpc", "http/protobuf"])
def traced(request):
    """A demo exporting to a receiver of its own, over each protocol."""
    receiver = Receiver().start()
    demo = traced_demo(receiver, request.param)
    yield demo, receiver
    stop_demo(demo)
    receiver.stop()


def test_plain_request_continues_the_app_trace(traced):
    demo, receiver = traced
    trace_id, parent_id, traceparent = new_traceparent()
    prompt = f"a prompt that stays private {trace_id}"
    client = openai.OpenAI(base_url=f"{demo.base}/v1", api_key=APP_KEY)
    r = client.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": prompt}],
        max_tokens=64, temperature=0.5, extra_headers={"traceparent": traceparent})

    spans = spans_of(receiver, trace_id, 2)
    server, attempt = one(spans, "server"), one(spans, "client")
    assert server["parent_span_id"] == parent_id, "the app's trace is continued"
    assert attempt["parent_span_id"] == server["span_id"]
    assert server["name"] == "chat gpt"
    assert attempt["name"] == "chat gpt-5"

    s = server["attributes"]
    assert s["gen_ai.operation.name"] == "chat"
    assert s["gen_ai.request.model"] == "gpt"
    assert s["gen_ai.response.model"] == r.model == "gpt-5"
    assert s["gen_ai.usage.input_tokens"] == r.usage.prompt_tokens
    assert s["gen_ai.usage.output_tokens"] == r.usage.completion_tokens > 0
    assert s["switchyard.route"] == "gpt"
    assert s["switchyard.target"] == "gpt"
    assert s["switchyard.attempts"] == 1
    assert s["switchyard.dialect"] == "openai"
    assert s["http.response.status_code"] == 200
    assert server["status_code"] != "STATUS_CODE_ERROR"

    a = attempt["attributes"]
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-5"
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["gen_ai.response.id"] == r.id
    assert a["gen_ai.request.max_tokens"] == 64
    assert a["gen_ai.request.temperature"] == 0.5
    assert a["gen_ai.response.model"] == "gpt-5"
    assert a["gen_ai.usage.output_tokens"] == r.usage.completion_tokens
    assert a["server.address"] == "127.0.0.1"
    assert isinstance(a["server.port"], int) and a["server.port"] > 0
    assert a["switchyard.attempt"] == 1
    assert a["switchyard.outcome"] == "ok"
    assert attempt["status_code"] != "STATUS_CODE_ERROR"

    assert server["resource"]["service.name"] == "switchyard-under-test"
    assert server["resource"]["deployment.environment"] == "ci"

    raw = receiver.raw_bytes()
    assert prompt.encode() not in raw, "content is not exported unless enabled"
    assert APP_KEY.encode() not in raw
    upstream = demo.upstream_headers("openai")
    assert "traceparent" not in upstream, "the app's trace headers stay inside"
    assert trace_id not in json.dumps(upstream)


def test_failover_leaves_two_attempt_spans(traced):
    demo, receiver = traced
    demo.reset()
    demo.knobs("anthropic", "claude-sonnet-4-5", error_status=503, error_rate=1.0)
    trace_id, _, traceparent = new_traceparent()
    client = openai.OpenAI(base_url=f"{demo.base}/v1", api_key=APP_KEY)
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="frontier", messages=[{"role": "user", "content": "fail over"}],
            extra_headers={"traceparent": traceparent})
    finally:
        demo.reset()
    assert raw.headers["x-switchyard-target"] == "gpt"
    assert raw.headers["x-switchyard-attempts"] == "2"

    spans = spans_of(receiver, trace_id, 3)
    server = one(spans, "server")
    first, second = sorted((s for s in spans if s["kind"] == "client"),
                           key=lambda s: s["attributes"]["switchyard.attempt"])
    assert first["parent_span_id"] == second["parent_span_id"] == server["span_id"]

    f = first["attributes"]
    assert f["switchyard.attempt"] == 1
    assert f["switchyard.target"] == "claude"
    assert f["gen_ai.provider.name"] == "anthropic"
    assert first["status_code"] == "STATUS_CODE_ERROR"
    assert f["http.response.status_code"] == 503
    assert f["error.type"] == f["switchyard.failover.reason"] == f["switchyard.outcome"]
    assert f["error.type"] in ("server_error", "overloaded")
    assert "gen_ai.response.model" not in f

    s2 = second["attributes"]
    assert s2["switchyard.attempt"] == 2
    assert s2["switchyard.target"] == "gpt"
    assert s2["switchyard.outcome"] == "ok"
    assert second["status_code"] != "STATUS_CODE_ERROR"

    s = server["attributes"]
    assert s["switchyard.target"] == "gpt"
    assert s["switchyard.attempts"] == 2
    assert server["status_code"] != "STATUS_CODE_ERROR", "the app saw no error"


def test_stream_records_time_to_first_chunk(traced):
    demo, receiver = traced
    trace_id, _, traceparent = new_traceparent()
    client = anthropic.Anthropic(base_url=demo.base, api_key=APP_KEY)
    with client.messages.stream(
            model="gpt", max_tokens=64, messages=[{"role": "user", "content": "stream"}],
            extra_headers={"traceparent": traceparent}) as stream:
        text = "".join(stream.text_stream)
    assert text

    spans = spans_of(receiver, trace_id, 2)
    server, attempt = one(spans, "server"), one(spans, "client")
    a = attempt["attributes"]
    assert a["gen_ai.request.stream"] is True
    assert 0 < a["switchyard.time_to_first_chunk"] < 30
    events = [e for e in attempt["events"] if e["name"] == "gen_ai.first_chunk"]
    assert len(events) == 1
    assert events[0]["attributes"]["switchyard.time_to_first_chunk"] == a["switchyard.time_to_first_chunk"]
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["gen_ai.usage.output_tokens"] > 0
    assert server["attributes"]["switchyard.dialect"] == "anthropic"
    assert server["attributes"]["gen_ai.usage.output_tokens"] == a["gen_ai.usage.output_tokens"]
    # The spans end with the stream, after the first chunk.
    assert attempt["end_ns"] - attempt["start_ns"] >= a["switchyard.time_to_first_chunk"] * 1e9 * 0.99

    def ttfc():
        return [p for p in receiver.points("gen_ai.client.operation.time_to_first_chunk")
                if p["attributes"].get("gen_ai.provider.name") == "openai" and p["count"] >= 1]
    point = receiver.wait_for(ttfc, what="the time-to-first-chunk histogram")[0]
    assert point["unit"] == "s"
    assert point["attributes"]["gen_ai.request.model"] == "gpt-5"
    assert point["attributes"]["switchyard.target"] == "gpt"


@pytest.mark.parametrize("body,status,error_type", [
    (b'{"model": "gpt", "messages": ', 400, "invalid_request"),
    (b'{"model": "no-such-route", "messages": [{"role": "user", "content": "x"}]}', 404, "unknown_route"),
])
def test_rejected_request_has_an_error_span_and_no_attempt(traced, body, status, error_type):
    demo, receiver = traced
    trace_id, _, traceparent = new_traceparent()
    req = urllib.request.Request(
        f"{demo.base}/v1/chat/completions", data=body, method="POST",
        headers={"content-type": "application/json", "authorization": f"Bearer {APP_KEY}",
                 "traceparent": traceparent})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == status

    server = one(spans_of(receiver, trace_id, 1), "server")
    assert server["status_code"] == "STATUS_CODE_ERROR"
    assert server["status_message"]
    s = server["attributes"]
    assert s["error.type"] == error_type
    assert s["http.response.status_code"] == status
    assert "switchyard.target" not in s
    # Attempt spans end before their request's: none came, none will.
    time.sleep(0.5)
    assert [x for x in receiver.all_spans() if x["trace_id"] == trace_id] == [server]


def prometheus_series(text, name):
    """`{frozen labels: value}` for one Prometheus sample name."""
    out = {}
    for line in text.splitlines():
        m = re.match(r'^(\w+)(?:\{(.*)\})? (\S+)$', line)
        if m and m.group(1) == name:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out[frozenset(labels.items())] = float(m.group(3))
    return out


def otlp_series(receiver, name, field):
    """The same shape from OTLP: our namespace stripped, dots as underscores."""
    out = {}
    for p in receiver.points(name):
        labels = {k.removeprefix("switchyard.").replace(".", "_"): str(v)
                  for k, v in p["attributes"].items()}
        out[frozenset(labels.items())] = float(p[field])
    return out


def test_metrics_are_the_numbers_prometheus_shows(traced):
    demo, receiver = traced
    client = openai.OpenAI(base_url=f"{demo.base}/v1", api_key=APP_KEY)
    demo.knobs("anthropic", "claude-sonnet-4-5", error_status=503, error_rate=1.0)
    try:
        for _ in range(3):
            client.chat.completions.create(
                model="frontier", messages=[{"role": "user", "content": "count me"}])
    finally:
        demo.reset()
    pairs = [
        ("switchyard_requests_total", "switchyard.requests", "value"),
        ("switchyard_failovers_total", "switchyard.failovers", "value"),
        ("switchyard_tokens_total", "switchyard.tokens", "value"),
        ("switchyard_gen_ai_client_operation_duration_seconds_count",
         "gen_ai.client.operation.duration", "count"),
        ("switchyard_gen_ai_client_token_usage_sum", "gen_ai.client.token.usage", "sum"),
        ("switchyard_time_to_first_token_seconds_count",
         "gen_ai.client.operation.time_to_first_chunk", "count"),
    ]
    text = demo.prometheus()
    for prom, otel, field in pairs:
        expected = prometheus_series(text, prom)
        if prom != "switchyard_time_to_first_token_seconds_count":
            assert expected, f"{prom} has samples"
        receiver.wait_for(lambda: otlp_series(receiver, otel, field) == expected,
                          what=f"OTLP {otel} to equal Prometheus {prom}: {expected} "
                               f"vs {otlp_series(receiver, otel, field)}")
    failovers = prometheus_series(text, "switchyard_failovers_total")
    assert sum(v for k, v in failovers.items() if ("target", "claude") in k) >= 3
    durations = receiver.points("gen_ai.client.operation.duration")
    assert any(p["attributes"].get("error.type") for p in durations), "failed attempts carry error.type"
    assert all(p["unit"] == "s" for p in durations)


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def test_content_is_exported_only_when_enabled(receiver):
    demo = traced_demo(receiver, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true")
    try:
        trace_id, _, traceparent = new_traceparent()
        prompt = f"capture this prompt {trace_id}"
        client = openai.OpenAI(base_url=f"{demo.base}/v1", api_key=APP_KEY)
        r = client.chat.completions.create(
            model="claude", messages=[{"role": "system", "content": "be brief"},
                                      {"role": "user", "content": prompt}],
            extra_headers={"traceparent": traceparent})
        server = one(spans_of(receiver, trace_id, 2), "server")
    finally:
        stop_demo(demo)
    s = server["attributes"]
    assert prompt in s["gen_ai.input.messages"]
    assert s["gen_ai.system_instructions"] == "be brief"
    assert r.choices[0].message.content in s["gen_ai.output.messages"]
    assert APP_KEY.encode() not in receiver.raw_bytes()


def test_traces_exporter_none_keeps_metrics(receiver):
    demo = traced_demo(receiver, OTEL_TRACES_EXPORTER="none")
    try:
        client = openai.OpenAI(base_url=f"{demo.base}/v1", api_key=APP_KEY)
        client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "m"}])
        receiver.wait_for(lambda: receiver.points("gen_ai.client.operation.duration"),
                          what="metrics")
        time.sleep(0.5)
    finally:
        stop_demo(demo)
    assert receiver.all_spans() == []


def test_sdk_disabled_exports_nothing(receiver):
    demo = traced_demo(receiver, OTEL_SDK_DISABLED="true")
    try:
        client = openai.OpenAI(base_url=f"{demo.base}/v1", api_key=APP_KEY)
        client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "m"}])
        # With export on, this is 10 batch delays and 5 metric intervals.
        time.sleep(1.5)
    finally:
        stop_demo(demo)
    assert receiver.requests == {"grpc": 0, "http": 0}


def test_spans_are_flushed_on_graceful_shutdown(receiver):
    demo = traced_demo(receiver, OTEL_BSP_SCHEDULE_DELAY="600000",
                       OTEL_METRIC_EXPORT_INTERVAL="600000")
    trace_id, _, traceparent = new_traceparent()
    client = openai.OpenAI(base_url=f"{demo.base}/v1", api_key=APP_KEY)
    client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "bye"}],
                                   extra_headers={"traceparent": traceparent})
    time.sleep(0.3)
    assert receiver.all_spans() == [], "nothing is sent before the (long) batch delay"
    demo.proc.send_signal(signal.SIGTERM)
    assert demo.proc.wait(timeout=30) == 0
    assert len([s for s in receiver.all_spans() if s["trace_id"] == trace_id]) == 2
    assert receiver.points("gen_ai.client.operation.duration"), "metrics are flushed too"


class Blackhole:
    """A collector that accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self):
        for c in self.conns:
            c.close()
        self.sock.close()


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("collector", ["stopped", "hanging"])
def test_requests_succeed_when_the_collector_is_down(collector):
    hole = Blackhole() if collector == "hanging" else None
    port = hole.port if hole else closed_port()
    demo = start_demo({**FAST, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                       "OTEL_BSP_MAX_QUEUE_SIZE": "16", "OTEL_EXPORTER_OTLP_TIMEOUT": "5000"})
    latencies, failures = [], []
    body = json.dumps({"model": "gpt", "messages": [{"role": "user", "content": "up?"}]}).encode()

    def worker(n):
        for _ in range(n):
            req = urllib.request.Request(
                f"{demo.base}/v1/chat/completions", data=body, method="POST",
                headers={"content-type": "application/json", "authorization": f"Bearer {APP_KEY}"})
            started = time.monotonic()
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    r.read()
                    if r.status != 200:
                        failures.append(r.status)
            except Exception as e:  # noqa: BLE001 - every failure counts
                failures.append(repr(e))
            latencies.append(time.monotonic() - started)

    try:
        threads = [threading.Thread(target=worker, args=(50,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        metrics = demo.prometheus()
    finally:
        stop_demo(demo)
        if hole:
            hole.close()
    assert failures == []
    assert len(latencies) == 200
    latencies.sort()
    print(f"collector {collector}: p50 {latencies[100] * 1000:.1f} ms, "
          f"p99 {latencies[197] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
    # A request that waited on the exporter would take its 5 s timeout.
    assert latencies[-1] < 4.0
    dropped = sum(prometheus_series(metrics, "switchyard_telemetry_spans_dropped_total").values())
    failed = sum(prometheus_series(metrics, "switchyard_telemetry_export_failures_total").values())
    if collector == "hanging":
        assert dropped > 0, "400 spans into a queue of 16 that never drains: drops are counted"
    else:
        assert dropped + failed > 0, "refused exports are counted"
