"""OpenTelemetry traces leave the server over OTLP/HTTP: a tiny collector here receives them."""

import http.server
import threading

from clients import client, mlp_inputs
from conftest import REPO, SERVE, Server


class Collector(http.server.BaseHTTPRequestHandler):
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Collector.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_spans_are_exported_over_otlp_with_the_request_stages(repository):
    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{collector.server_address[1]}/v1/traces"
    s = Server(
        ["--models", str(repository), "--trace-config", "level=TIMESTAMPS", "--trace-config", "rate=1",
         "--trace-config", f"opentelemetry,url={url}", "--trace-config", "opentelemetry,resource=deployment=ci"] + SERVE,
        cwd=REPO,
    )
    try:
        for protocol in ["http", "grpc"]:
            _, inputs = mlp_inputs(protocol, 1)
            client(s, protocol).infer("mlp", inputs, request_id=f"traced-{protocol}")
    finally:
        assert s.stop() == 0, s.log()  # stopping flushes the exporter
        collector.shutdown()
    assert Collector.received, "no OTLP export arrived"
    path, content_type, _ = Collector.received[0]
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    exported = b"".join(body for _, _, body in Collector.received)
    for text in [b"infer mlp", b"queue", b"compute_input", b"compute_infer", b"compute_output", b"batch.id",
                 b"traced-http", b"traced-grpc", b"deployment", b"batchwise"]:
        assert text in exported, text
