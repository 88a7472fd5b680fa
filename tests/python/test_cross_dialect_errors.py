"""Errors in each app's dialect, whatever backend failed, over raw HTTP:
status, body shape and headers an SDK of that dialect relies on, and the
abnormal end of a stream cut after it began."""

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request

import pytest


BACKENDS = {
    "claude": ("anthropic", "claude-sonnet-4-5"),
    "gpt": ("openai", "gpt-5"),
    "gemini": ("gemini", "gemini-2.5-pro"),
    "local": ("local", "qwen3-32b"),
}

DIALECTS = ["openai", "anthropic", "gemini"]


def request_for(dialect, route, stream=False, text="x"):
    """(path, headers, body) of a minimal request in `dialect`."""
    if dialect == "openai":
        body = {"model": route, "messages": [{"role": "user", "content": text}]}
        if stream:
            body["stream"] = True
        return "/v1/chat/completions", {"authorization": "Bearer demo-key"}, body
    if dialect == "anthropic":
        body = {"model": route, "max_tokens": 100, "messages": [{"role": "user", "content": text}]}
        if stream:
            body["stream"] = True
        return "/v1/messages", {"x-api-key": "demo-key", "anthropic-version": "2023-06-01"}, body
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    return f"/v1beta/models/{route}:{method}", {"x-goog-api-key": "demo-key"}, body


def call(base, dialect, route, **kw):
    path, headers, body = request_for(dialect, route, **kw)
    req = urllib.request.Request(
        base + path, method="POST", data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())


def error_of(dialect, body):
    """(type-or-status name, message) from an error body in `dialect`."""
    if dialect == "openai":
        return body["error"]["type"], body["error"]["message"]
    if dialect == "anthropic":
        assert body["type"] == "error"
        return body["error"]["type"], body["error"]["message"]
    return body["error"]["status"], body["error"]["message"]


# (vendor knob, expected status and error name per dialect)
FAILURES = [
    (dict(error_status=429), {"openai": (429, "rate_limit_exceeded"),
                              "anthropic": (429, "rate_limit_error"),
                              "gemini": (429, "RESOURCE_EXHAUSTED")}),
    (dict(error_status=529), {"openai": (503, "server_error"),
                              "anthropic": (529, "overloaded_error"),
                              "gemini": (503, "UNAVAILABLE")}),
    (dict(error_status=500), {"openai": (502, "server_error"),
                              "anthropic": (502, "api_error"),
                              "gemini": (502, "UNAVAILABLE")}),
    (dict(html_error=True), {"openai": (502, "server_error"),
                             "anthropic": (502, "api_error"),
                             "gemini": (502, "UNAVAILABLE")}),
    (dict(suspended=True), {"openai": (502, "server_error"),
                            "anthropic": (502, "api_error"),
                            "gemini": (502, "UNAVAILABLE")}),
]


@pytest.mark.parametrize("knob,expected", FAILURES, ids=lambda v: json.dumps(v)[:24])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_vendor_failure_in_the_app_dialect(fresh, dialect, knob, expected):
    fresh.knobs("anthropic", "claude-sonnet-4-5", **knob)
    status, headers, body = call(fresh.base, dialect, "claude")
    want_status, want_name = expected[dialect]
    assert status == want_status, body
    name, message = error_of(dialect, body)
    assert name == want_name
    assert "route `claude`" in message and "tried claude" in message
    # No vendor internals leak: the simulator's key and HTML page stay out.
    assert "sim-key" not in json.dumps(body) and "nginx" not in json.dumps(body)
    assert headers["x-switchyard-route"] == "claude"
    # One attempt per request the vendor saw (a 500 may earn one retry).
    counts = fresh.counts()
    assert list(counts) == ["anthropic/claude-sonnet-4-5"]
    assert headers["x-switchyard-attempts"] == str(counts["anthropic/claude-sonnet-4-5"])
    if want_status in (429, 503, 529):
        assert int(headers["retry-after"]) >= 1


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_target_tried_then_one_error(fresh, dialect):
    # A 502 HTML page from every vendor: a failover reason, never retried
    # on the same target, so each target gets exactly one attempt.
    for vendor, model in BACKENDS.values():
        fresh.knobs(vendor, model, html_error=True)
    status, headers, body = call(fresh.base, dialect, "frontier")
    assert status == 502
    _, message = error_of(dialect, body)
    for target in ["claude", "gpt", "gemini", "local"]:
        assert f"{target}: server_error" in message
    assert message.index("claude:") < message.index("gpt:") < message.index("gemini:") < message.index("local:")
    assert headers["x-switchyard-attempts"] == "4"
    assert sorted(fresh.counts().values()) == [1, 1, 1, 1]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_vendor_400_is_not_retried_and_is_400(fresh, dialect):
    fresh.knobs("anthropic", "claude-sonnet-4-5", error_status=400)
    status, _, body = call(fresh.base, dialect, "frontier")
    assert status == 400
    name, message = error_of(dialect, body)
    assert name in {"invalid_request_error", "INVALID_ARGUMENT"}
    assert "backend rejected" in message
    # A request the vendor calls invalid would be invalid elsewhere too.
    assert fresh.counts() == {"anthropic/claude-sonnet-4-5": 1}


@pytest.mark.parametrize("dialect,name", [
    ("openai", "invalid_request_error"), ("anthropic", "authentication_error"),
    ("gemini", "UNAUTHENTICATED")])
def test_missing_key_is_401(clean, dialect, name):
    path, _, body = request_for(dialect, "gpt")
    req = urllib.request.Request(clean.base + path, method="POST", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 401
    assert error_of(dialect, json.loads(e.value.read()))[0] == name
    assert clean.counts() == {}


def read_broken_stream(base, dialect, route):
    """The raw SSE bytes of a stream, and whether the body ended cleanly."""
    path, headers, body = request_for(dialect, route, stream=True, text="cut")
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("POST", path, body=json.dumps(body),
                 headers={"content-type": "application/json", **headers})
    resp = conn.getresponse()
    assert resp.status == 200
    data, clean_end = b"", True
    try:
        while chunk := resp.read1(65536):
            data += chunk
    except (http.client.IncompleteRead, ConnectionError) as e:
        clean_end = False
        data += getattr(e, "partial", b"") or b""
    conn.close()
    return data.decode(), clean_end


@pytest.mark.parametrize("route", BACKENDS)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_stream_cut_ends_with_an_error_event_and_no_clean_end(fresh, dialect, route):
    vendor, model = BACKENDS[route]
    fresh.knobs(vendor, model, reset_after_tokens=3)
    text, clean_end = read_broken_stream(fresh.base, dialect, route)
    assert not clean_end, "a broken upstream must not look like a complete answer"
    frames = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
    last = json.loads(frames[-1])
    assert " alpha" in text, "the 3 tokens before the cut reached the app"
    if dialect == "openai":
        assert "[DONE]" not in frames
        assert "finish_reason\":\"" not in text
        assert last["error"]["type"] == "server_error"
    elif dialect == "anthropic":
        assert "event: error" in text
        assert "message_stop" not in text and "message_delta" not in text
        assert last["type"] == "error"
    else:
        assert "finishReason" not in text
        assert last["error"]["code"] >= 500
