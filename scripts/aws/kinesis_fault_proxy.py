"""Fault-injecting HTTP proxy in front of a Kinesis emulator (none of them throttle by themselves).

usage: kinesis_fault_proxy.py PORT UPSTREAM_URL CONTROL_FILE

CONTROL_FILE holds JSON, re-read whenever it changes (write it atomically, e.g. write + rename;
an unreadable or half-written file keeps the previous settings); missing file = no faults:
  {"put_fraction": 0.5}  fraction of the records of each PutRecords call failed with
                         ProvisionedThroughputExceededException (per-record ErrorCode, HTTP 200);
                         those records are NOT forwarded, as with real Kinesis. Which ones fail
                         rotates with a call counter (deterministic: every round(1/f)-th record).
  {"call_every": N}      every Nth call (any operation) -> HTTP 400 ProvisionedThroughputExceededException
  {"fivexx_every": N}    every Nth call -> HTTP 500 InternalFailure
Only JSON-encoded requests (application/x-amz-json-1.1, what the AWS SDKs send to Kinesis) are
rewritten; requests must carry Content-Length (no chunked uploads). GET / answers {} (health)."""
import http.client
import http.server
import itertools
import json
import os
import sys
import threading
import urllib.parse

PORT, UP, CONTROL = int(sys.argv[1]), urllib.parse.urlparse(sys.argv[2]), sys.argv[3]
DEFAULTS = {"put_fraction": 0.0, "call_every": 0, "fivexx_every": 0}
counter = itertools.count(1)
lock = threading.Lock()
_cache = {"key": None, "knobs": dict(DEFAULTS)}


def knobs():
    try:
        st = os.stat(CONTROL)
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
    except FileNotFoundError:
        return dict(DEFAULTS)
    with lock:
        if key != _cache["key"]:
            try:
                with open(CONTROL) as f:
                    k = dict(DEFAULTS, **json.load(f))
                _cache.update(key=key, knobs=k)
            except (OSError, ValueError):
                pass  # half-written: keep the previous settings, look again next request
        return dict(_cache["knobs"])


def err(kind, msg):
    return json.dumps({"__type": kind, "message": msg}).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _send(self, code, body, ctype="application/x-amz-json-1.1"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", "fault-proxy")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        target = self.headers.get("X-Amz-Target", "")
        k = knobs()
        n = next(counter)
        if k["call_every"] and n % int(k["call_every"]) == 0:
            return self._send(400, err("ProvisionedThroughputExceededException",
                                       "Rate exceeded for shard (injected)"))
        if k["fivexx_every"] and n % int(k["fivexx_every"]) == 0:
            return self._send(500, err("InternalFailure", "injected"))
        drop, kept = set(), None
        if (target.endswith(".PutRecords") and float(k["put_fraction"]) > 0
                and "json" in self.headers.get("Content-Type", "")):
            req = json.loads(body)
            recs = req["Records"]
            step = max(1, round(1 / float(k["put_fraction"])))
            drop = {i for i in range(len(recs)) if (i + n) % step == 0}
            req["Records"] = kept = [r for i, r in enumerate(recs) if i not in drop]
            body = json.dumps(req).encode()
        hdrs = {h: v for h, v in self.headers.items() if h.lower() not in ("content-length", "connection")}
        if drop and not kept:  # every record failed: nothing to forward
            out, total = {"FailedRecordCount": 0, "Records": []}, len(drop)
        else:
            try:
                c = http.client.HTTPConnection(UP.hostname, UP.port, timeout=60)
                c.request("POST", self.path, body=body, headers=hdrs)
                r = c.getresponse()
                data = r.read()
                c.close()
            except OSError as e:
                return self._send(500, err("InternalFailure", f"fault proxy: upstream: {e}"))
            if not drop or r.status != 200:
                return self._send(r.status, data, r.getheader("Content-Type", "application/x-amz-json-1.1"))
            out = json.loads(data)
            total = len(drop) + len(out["Records"])
        it = iter(out["Records"])
        out["Records"] = [{"ErrorCode": "ProvisionedThroughputExceededException",
                           "ErrorMessage": "Rate exceeded for shard (injected)"} if i in drop else next(it)
                          for i in range(total)]
        out["FailedRecordCount"] = out.get("FailedRecordCount", 0) + len(drop)
        self._send(200, json.dumps(out).encode())

    def do_GET(self):
        self._send(200, b"{}", "application/json")


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # the default (5) refuses bursts of parallel connections
    daemon_threads = True


Server(("127.0.0.1", PORT), Handler).serve_forever()
