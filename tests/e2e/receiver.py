"""A stand-in Logging and Monitoring System for the shipping tests: an HTTP server on
loopback that answers 200 to every POST and appends ``{"path", "body"}`` (the JSON body
parsed) as one line to the file it is given; with FAIL_FIRST, the first that many POSTs
answer 503 (and are not recorded). A POST to ``/hang`` makes every later POST hang without
an answer (a receiver that accepts connections and never replies). Prints its port on
stdout once listening.

    python tests/e2e/receiver.py OUT_FILE [FAIL_FIRST]
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
FAILS = [int(sys.argv[2]) if len(sys.argv) > 2 else 0]
HANG = threading.Event()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if HANG.is_set():
            time.sleep(3600)
        if self.path == "/hang":
            HANG.set()
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        with LOCK:
            fail = FAILS[0] > 0
            FAILS[0] -= fail
        if fail:
            self.send_response(503)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        line = json.dumps({"path": self.path, "body": json.loads(body)})
        with LOCK, open(sys.argv[1], "a") as out:
            out.write(line + "\n")
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
