"""sidecar-python: a function whose access log a sidecar ships.

It answers GET and POST with a greeting, like hello-python, and appends one
line per request to $LOG_DIR/access.log when that directory exists: on a
cluster it is the emptyDir the `shipper` sidecar reads; under `flint dev`
there is no such directory and nothing is written.
"""
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GREETING = os.environ.get("GREETING", "Hello")
LOG_DIR = os.environ.get("LOG_DIR", "/var/log/app")


def log_request(method, path, status):
    if not os.path.isdir(LOG_DIR):
        return
    line = json.dumps({"ts": time.time(), "method": method, "path": path, "status": status})
    try:
        with open(os.path.join(LOG_DIR, "access.log"), "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError as err:
        sys.stderr.write(f"access log: {err}\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _reply(self, status, body, content_type="text/plain; charset=utf-8"):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/healthz":
            self._reply(200, "ok\n")
            return
        self._reply(200, f"{GREETING} from Flint! (python with a sidecar, path {self.path})\n")
        log_request("GET", self.path, 200)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", errors="replace")
        reply = {"greeting": GREETING, "path": self.path, "echo": body}
        self._reply(200, json.dumps(reply) + "\n", "application/json")
        log_request("POST", self.path, 200)

    def log_message(self, fmt, *args):
        pass


def main():
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer(("127.0.0.1" if os.environ.get("FLINT_DEV") else "0.0.0.0", port), Handler)
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
