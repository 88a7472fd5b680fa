"""A real OTLP receiver for the telemetry tests: gRPC (TraceService and
MetricsService on the official protobufs) and HTTP/protobuf (`POST
/v1/traces`, `/v1/metrics`), on loopback ports of its own.

It keeps every span it is sent, and the latest value of every metric data
point (the gateway exports cumulative sums, so the latest is the total).

Run alone to watch what Switchyard exports, one JSON span per line:

    .venv/bin/python tests/python/otlp_receiver.py --grpc 4317 --http 4318
"""

import argparse
import json
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from opentelemetry.proto.trace.v1 import trace_pb2

KINDS = {v: k.removeprefix("SPAN_KIND_").lower() for k, v in trace_pb2.Span.SpanKind.items()}


def any_value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def attrs(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def flatten_span(resource, span):
    return {
        "name": span.name,
        "kind": KINDS.get(span.kind, str(span.kind)),
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "start_ns": span.start_time_unix_nano,
        "end_ns": span.end_time_unix_nano,
        "attributes": attrs(span.attributes),
        "events": [{"name": e.name, "attributes": attrs(e.attributes)} for e in span.events],
        "status_code": trace_pb2.Status.StatusCode.Name(span.status.code),
        "status_message": span.status.message,
        "resource": resource,
    }


def flatten_point(metric, kind, p):
    point = {"attributes": attrs(p.attributes), "unit": metric.unit}
    if kind == "histogram":
        point.update(count=p.count, sum=p.sum, bounds=list(p.explicit_bounds),
                     buckets=list(p.bucket_counts))
    else:
        point["value"] = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
    return point


class Receiver:
    """Collects what arrives; every accessor returns a copy."""

    def __init__(self):
        self.lock = threading.Lock()
        self.spans = []
        self.metrics = {}  # name -> {frozen attributes -> point}
        self.requests = {"grpc": 0, "http": 0}
        self.raw = []  # every request body as received, for secret scans
        self.grpc_server = None
        self.http_server = None
        self.grpc_port = None
        self.http_port = None

    # --- ingest -----------------------------------------------------------
    def take_traces(self, req, transport, raw):
        with self.lock:
            self.requests[transport] += 1
            self.raw.append(raw)
            for rs in req.resource_spans:
                resource = attrs(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        self.spans.append(flatten_span(resource, span))

    def take_metrics(self, req, transport, raw):
        with self.lock:
            self.requests[transport] += 1
            self.raw.append(raw)
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        kind = m.WhichOneof("data")
                        data = getattr(m, kind)
                        series = self.metrics.setdefault(m.name, {})
                        for p in data.data_points:
                            point = flatten_point(m, kind, p)
                            key = tuple(sorted((k, str(v)) for k, v in point["attributes"].items()))
                            series[key] = point

    # --- queries ----------------------------------------------------------
    def all_spans(self):
        with self.lock:
            return list(self.spans)

    def points(self, name):
        with self.lock:
            return list(self.metrics.get(name, {}).values())

    def raw_bytes(self):
        with self.lock:
            return b"".join(self.raw)

    def wait_for(self, predicate, timeout=20.0, what="telemetry"):
        """Polls `predicate()` until it returns something truthy."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = predicate()
            if got:
                return got
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    # --- servers ----------------------------------------------------------
    def start(self, grpc_port=0, http_port=0):
        receiver = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                receiver.take_traces(request, "grpc", request.SerializeToString())
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):
                receiver.take_metrics(request, "grpc", request.SerializeToString())
                return metrics_service_pb2.ExportMetricsServiceResponse()

        self.grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self.grpc_server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.grpc_server)
        self.grpc_port = self.grpc_server.add_insecure_port(f"127.0.0.1:{grpc_port}")
        self.grpc_server.start()

        class Http(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path == "/v1/traces":
                    req = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                    receiver.take_traces(req, "http", body)
                    out = trace_service_pb2.ExportTraceServiceResponse()
                elif self.path == "/v1/metrics":
                    req = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
                    receiver.take_metrics(req, "http", body)
                    out = metrics_service_pb2.ExportMetricsServiceResponse()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = out.SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.http_server = ThreadingHTTPServer(("127.0.0.1", http_port), Http)
        self.http_port = self.http_server.server_address[1]
        threading.Thread(target=self.http_server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.grpc_server:
            self.grpc_server.stop(grace=None)
        if self.http_server:
            self.http_server.shutdown()
            self.http_server.server_close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grpc", type=int, default=4317)
    ap.add_argument("--http", type=int, default=4318)
    args = ap.parse_args()
    r = Receiver().start(args.grpc, args.http)
    print(f"OTLP receiver: grpc 127.0.0.1:{r.grpc_port}, http 127.0.0.1:{r.http_port}", flush=True)
    seen = 0
    try:
        while True:
            spans = r.all_spans()
            for s in spans[seen:]:
                print(json.dumps(s), flush=True)
            seen = len(spans)
            time.sleep(0.2)
    except KeyboardInterrupt:
        r.stop()


if __name__ == "__main__":
    main()
