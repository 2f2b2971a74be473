"""A webhook receiver for the destination tests: it verifies every request with the Standard
Webhooks reference library and records what it answered.

    webhook_receiver.py SECRET RECORD_FILE FAIL_FIRST [SEGMENT_SECRET]

Prints its port on the first line of stdout, then serves until killed. By path:
  /ok    verified requests are answered 503 for the first FAIL_FIRST, then 200; a request
         that does not verify is answered 401.
  /gone  410.
  /slow  holds the request for 60 s (a receiver that never answers in time), recorded on
         arrival with status null.
Each request is a line of RECORD_FILE: {"path", "status", "webhook_id", "ids", "verified",
"segment_verified"}; the last is whether its X-Signature is the body's HMAC-SHA1 (hex) by
SEGMENT_SECRET, checked with Python's hmac (null without SEGMENT_SECRET).
"""

import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

SECRET, RECORD, FAIL_FIRST = sys.argv[1], sys.argv[2], int(sys.argv[3])
SEGMENT_SECRET = sys.argv[4] if len(sys.argv) > 4 else None
lock = threading.Lock()
state = {"failures_left": FAIL_FIRST}


def message_ids(body):
    try:
        payload = json.loads(body)
    except ValueError:
        return []
    messages = payload["batch"] if isinstance(payload, dict) and "batch" in payload else [payload]
    return [m.get("id") for m in messages if isinstance(m, dict)]


def segment_verified(headers, body):
    if SEGMENT_SECRET is None:
        return None
    want = hmac.new(SEGMENT_SECRET.encode(), body, hashlib.sha1).hexdigest()
    return hmac.compare_digest(want, headers.get("x-signature", ""))


def record(path, status, headers, body, verified):
    line = {"path": path, "status": status, "webhook_id": headers.get("webhook-id"),
            "ids": message_ids(body), "verified": verified,
            "segment_verified": segment_verified(headers, body)}
    with lock, open(RECORD, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            Webhook(SECRET).verify(body, headers)
            verified = True
        except Exception:  # the library's verification errors: answered 401, recorded
            verified = False
        if self.path == "/slow":
            record(self.path, None, headers, body, verified)  # on arrival: it never answers
            time.sleep(60)
            return
        elif self.path == "/gone":
            status = 410
        elif not verified:
            status = 401
        else:
            with lock:
                if state["failures_left"] > 0:
                    state["failures_left"] -= 1
                    status = 503
                else:
                    status = 200
        record(self.path, status, headers, body, verified)
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    do_PUT = do_POST

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
