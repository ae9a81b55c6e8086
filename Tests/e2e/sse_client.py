"""A Python SSE client (httpx-sse from PyPI), as an application would use it:
reads a Spool event stream and prints each event as one JSON line
{"id", "event", "data"} (data parsed), flushed at once, until the stream ends.

    sse_client.py URL [--last-event-id ID] [--max N] [--token T] [--timeout S]

--max N stops after N events (a client that leaves half-way). An answer other
than 200 prints {"status": code, "body": ...} and exits 0.
"""
import argparse
import json
import sys

import httpx
from httpx_sse import connect_sse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--last-event-id")
    ap.add_argument("--max", type=int, default=0)
    ap.add_argument("--token")
    ap.add_argument("--timeout", type=float, default=30)
    a = ap.parse_args()
    headers = {}
    if a.last_event_id:
        headers["Last-Event-ID"] = a.last_event_id
    if a.token:
        headers["Authorization"] = "Bearer " + a.token
    seen = 0
    with httpx.Client(timeout=httpx.Timeout(a.timeout)) as client:
        with connect_sse(client, "GET", a.url, headers=headers) as source:
            if source.response.status_code != 200:
                body = source.response.read().decode("utf-8", "replace")
                print(json.dumps({"status": source.response.status_code, "body": body}), flush=True)
                return
            for sse in source.iter_sse():
                print(json.dumps({"id": sse.id, "event": sse.event, "data": json.loads(sse.data)}), flush=True)
                seen += 1
                if a.max and seen >= a.max:
                    return


if __name__ == "__main__":
    sys.exit(main())
