"""primes-python: a function with a slow cold start.

At start-up it sieves every prime below LIMIT (a few hundred milliseconds to
a few seconds of real work, like loading a model or a data set) and only then
listens; it then answers "is N prime?" and "the K-th prime" in constant time.
It shows what scale-to-zero costs a function that is slow to start, and what
the autoscaler's keep-alive saves.
"""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

LIMIT = int(os.environ.get("LIMIT", "3000000"))


def sieve(limit):
    flags = bytearray([1]) * (limit + 1)
    flags[0:2] = b"\x00\x00"
    for i in range(2, int(limit ** 0.5) + 1):
        if flags[i]:
            flags[i * i :: i] = bytearray(len(range(i * i, limit + 1, i)))
    return flags


FLAGS = sieve(LIMIT)
PRIMES = [i for i in range(LIMIT + 1) if FLAGS[i]]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        query = parse_qs(urlparse(self.path).query)
        try:
            if "n" in query:
                n = int(query["n"][0])
                if not 0 <= n <= LIMIT:
                    raise ValueError(f"n must be between 0 and {LIMIT}")
                reply = {"n": n, "prime": bool(FLAGS[n])}
            elif "k" in query:
                k = int(query["k"][0])
                if not 1 <= k <= len(PRIMES):
                    raise ValueError(f"k must be between 1 and {len(PRIMES)}")
                reply = {"k": k, "prime": PRIMES[k - 1]}
            else:
                reply = {"primes_below": LIMIT, "count": len(PRIMES), "usage": "?n=97 or ?k=10"}
            status = 200
        except ValueError as err:
            reply, status = {"error": str(err)}, 400
        body = (json.dumps(reply) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    host = "127.0.0.1" if os.environ.get("FLINT_DEV") else "0.0.0.0"
    server = ThreadingHTTPServer((host, int(os.environ.get("PORT", "8080"))), Handler)
    server.daemon_threads = True
    server.serve_forever()
