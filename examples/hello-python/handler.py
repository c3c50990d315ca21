"""hello-python: a tiny Flint function using only the standard library.

It listens on $PORT and answers every GET or POST with a greeting, echoing the
path and any request body, so it is easy to see routing work.
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GREETING = os.environ.get("GREETING", "Hello")


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
        self._reply(200, f"{GREETING} from Flint! (python, path {self.path})\n")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", errors="replace")
        reply = {"greeting": GREETING, "path": self.path, "echo": body}
        self._reply(200, json.dumps(reply) + "\n", "application/json")

    def log_message(self, fmt, *args):
        # Access logs go to stderr only when asked for; the gateway counts requests.
        if os.environ.get("ACCESS_LOG"):
            sys.stderr.write(fmt % args + "\n")


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
