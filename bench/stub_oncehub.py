"""A stand-in for OnceHub's list endpoints (shared/oncehub-api.md section 11), for the backfill
benchmark: GET /v2/bookings and /v2/contacts with limit/after cursor pages (newest first),
last_updated_time.gt/.lt, expand (contact and conversation as objects), the API-Key header, and
both rate limits: at most PER_SECOND requests in any second (per account) and WINDOW_REQUESTS per
WINDOW_SECONDS (per IP), answered 429 `rate_limit_error` beyond, as the real API does.

Usage: stub_oncehub.py PORT BOOKINGS CONTACTS STATS_FILE
Env: API_KEY, PER_SECOND (5), WINDOW_REQUESTS (200), WINDOW_SECONDS (300).
On SIGTERM it writes what it saw to STATS_FILE as JSON: requests, answered_429, max requests in
any second and in any window, first and last arrival.
"""
import bisect
import datetime as dt
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

port, n_bookings, n_contacts, stats_file = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
KEY = os.environ.get("API_KEY", "bench-key")
PER_SECOND = int(os.environ.get("PER_SECOND", "5"))
WINDOW_REQUESTS = int(os.environ.get("WINDOW_REQUESTS", "200"))
WINDOW_SECONDS = float(os.environ.get("WINDOW_SECONDS", "300"))

newest = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)


def iso(t):
    return t.isoformat().replace("+00:00", "Z")


def booking(i):
    updated = newest - dt.timedelta(seconds=20 * i)
    created = updated - dt.timedelta(days=3)
    return {
        "object": "booking", "id": f"BKNG-B{i:07d}", "tracking_id": f"T{i:07d}", "subject": "Intro call",
        "status": "canceled" if i % 7 == 0 else ("completed" if i % 3 == 0 else "scheduled"),
        "in_trash": False, "duration_minutes": 30, "owner": f"USR-{i % 25:03d}",
        "creation_time": iso(created), "last_updated_time": iso(updated),
        "starting_time": iso(created + dt.timedelta(days=7)), "customer_timezone": "Europe/Paris",
        "contact": f"CTC-B{i:07d}", "conversation": f"CVR-B{i:07d}" if i % 4 == 0 else None,
        "utm_params": {"source": "ads", "medium": "cpc", "campaign": "q3", "term": None, "content": None} if i % 2 else None,
        "form_submission": {"name": f"Customer {i}", "email": f"c{i}@example.com", "phone": None,
                            "custom_fields": [{"name": "seats", "value": i % 50}]},
    }


def contact(i):
    updated = newest - dt.timedelta(seconds=30 * i)
    return {
        "object": "contact", "id": f"CTC-B{i:07d}", "email": f"c{i}@example.com",
        "creation_time": iso(updated - dt.timedelta(days=30)), "last_updated_time": iso(updated),
        "last_interacted_time": None, "owner": f"USR-{i % 25:03d}", "status": "Qualified" if i % 4 == 0 else None,
        "first_name": "Carrie", "last_name": f"Customer {i}", "company": "Acme Inc", "employees": 10 + i % 500,
        "has_consent": i % 2 == 0, "phone": None, "timezone": "Europe/Paris",
        "custom_fields": [{"name": "plan", "value": "pro"}],
    }


LISTS = {"/v2/bookings": [booking(i) for i in range(n_bookings)],
         "/v2/contacts": [contact(i) for i in range(n_contacts)]}
INDEX = {path: {o["id"]: i for i, o in enumerate(objs)} for path, objs in LISTS.items()}
lock = threading.Lock()
arrivals = []
refused = [0]


def most_within(span):
    best = 0
    for i, t in enumerate(arrivals):
        best = max(best, bisect.bisect_left(arrivals, t + span, lo=i) - i)
    return best


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        if not url.path.startswith("/v2/"):
            return self.answer(404, {"type": "invalid_request_error", "message": "Unrecognized request URL"})
        now = time.monotonic()
        with lock:
            arrivals.append(now)
            recent_second = len(arrivals) - bisect.bisect_right(arrivals, now - 1.0)
            recent_window = len(arrivals) - bisect.bisect_right(arrivals, now - WINDOW_SECONDS)
            limited = recent_second > PER_SECOND or recent_window > WINDOW_REQUESTS
            if limited:
                refused[0] += 1
        if limited:
            return self.answer(429, {"type": "rate_limit_error", "message": "Request rate limit exceeded"})
        if self.headers.get("API-Key") != KEY:
            return self.answer(401, {"type": "authentication_error", "message": "Invalid API key provided"})
        objs = LISTS.get(url.path)
        if objs is None:
            return self.answer(404, {"type": "invalid_request_error", "message": "Unrecognized request URL"})
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        limit = int(q.get("limit", "10"))
        gt = dt.datetime.fromisoformat(q["last_updated_time.gt"]) if "last_updated_time.gt" in q else None
        lt = dt.datetime.fromisoformat(q["last_updated_time.lt"]) if "last_updated_time.lt" in q else None
        start = INDEX[url.path][q["after"]] + 1 if "after" in q else 0
        page, i = [], start
        while i < len(objs) and len(page) < limit:
            t = dt.datetime.fromisoformat(objs[i]["last_updated_time"])
            if (gt is None or t > gt) and (lt is None or t < lt):
                o = dict(objs[i])
                expand = q.get("expand", "")
                if "contact" in expand and isinstance(o.get("contact"), str):
                    o["contact"] = {"object": "contact", "id": o["contact"], "email": o["form_submission"]["email"]}
                if "conversation" in expand and isinstance(o.get("conversation"), str):
                    o["conversation"] = {"object": "conversation", "id": o["conversation"], "status": "closed"}
                page.append(o)
            i += 1
        self.answer(200, {"object": "list", "data": page, "has_more": i < len(objs)})


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)


def stop(*_):
    with lock:
        stats = {
            "requests": len(arrivals),
            "answered_429": refused[0],
            "max_per_second": most_within(1.0),
            "max_per_window": most_within(WINDOW_SECONDS),
            "window_seconds": WINDOW_SECONDS,
            "seconds": (arrivals[-1] - arrivals[0]) if arrivals else 0,
        }
    with open(stats_file, "w") as f:
        json.dump(stats, f)
    threading.Thread(target=server.shutdown).start()


signal.signal(signal.SIGTERM, stop)
server.serve_forever()
