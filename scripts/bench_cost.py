#!/usr/bin/env python3
"""The "cost per job against the floors" scenario of `make bench` (issue 18),
also run alone by `make bench-cost`. On 2 shared cores, wrk, the API and Redis
compete, so a throughput ratio cannot tell the API's cost from the load
generator's; CPU time per request can. In alternating rounds, medians of 3:

- API CPU per enqueue request (wrk, 64 keep-alive connections, the job body)
  against nginx (Debian's) answering the same requests with a static 201 and a
  body of the same size, with as many worker processes as the API has threads;
- Redis CPU per enqueued job against a bare LPUSH of a job id
  (redis-benchmark, 50 connections);
- worker and Redis CPU per drained job (2 processes × 16 loops), against the
  same LPUSH floor.

CPU is user + system time from /proc/<pid>/stat, read before and after.
"""
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the shared helpers: start, stop, Stack, ...)

JOB_ID = "bench~01M8RMSWP24MYACZFTGYEC8C8E"


def api_cost(stack, seconds):
    """wrk against the API: rate, and CPU µs per request of the API and of Redis."""
    with bench.CPUMeter({"api": stack.api.pid, "redis": stack.redis.pid}) as meter:
        r = bench.wrk(stack.api_port, "bench", seconds)
    n = r["rate"] * seconds
    return {"rate": r["rate"], "api_us": meter.used["api"] * 1e6 / n, "redis_us": meter.used["redis"] * 1e6 / n}


def enqueue_reply(stack):
    """The API's 201 body for one enqueue, to size nginx's answer."""
    import http.client
    host, port = stack.addr.split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("POST", "/v1/queues/bench/jobs", '{"type":"noop"}', {"Content-Type": "application/json"})
    r = c.getresponse()
    body = r.read()
    c.close()
    assert r.status == 201, (r.status, body)
    return body.decode()


class Nginx:
    """nginx answering every request with a static 201 and `body`."""

    def __init__(self, body, workers):
        self.dir = Path(tempfile.mkdtemp(prefix="spool-bench-nginx-"))
        self.port = bench.free_port()
        escaped = body.replace("\\", "\\\\").replace("'", "\\'")
        (self.dir / "nginx.conf").write_text(f"""daemon off;
worker_processes {workers};
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path {self.dir}/body;
  proxy_temp_path {self.dir}/proxy;
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      default_type application/json;
      return 201 '{escaped}';
    }}
  }}
}}
""")
        self.proc = bench.start(["nginx", "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir)])
        bench.wait_port(self.port)
        time.sleep(0.3)

    def pids(self):
        return [self.proc.pid, *bench.children(self.proc.pid)]

    def close(self):
        bench.stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def nginx_cost(ng, seconds):
    pids = ng.pids()
    before = sum(bench.cpu_seconds(p) for p in pids)
    r = bench.wrk(ng.port, "bench", seconds)
    used = sum(bench.cpu_seconds(p) for p in pids) - before
    return {"rate": r["rate"], "us": used * 1e6 / (r["rate"] * seconds), "non_2xx": r["non_2xx"]}


def lpush_cost(stack, n):
    """Redis CPU µs per bare LPUSH of a job id (redis-benchmark, 50 connections)."""
    before = bench.cpu_seconds(stack.redis.pid)
    t0 = time.monotonic()
    bench.sh(["redis-benchmark", "-p", str(stack.redis_port), "-c", "50", "-n", str(n), "-q", "LPUSH", "floor", JOB_ID])
    seconds = time.monotonic() - t0
    used = bench.cpu_seconds(stack.redis.pid) - before
    stack.flush()
    return {"rate": n / seconds, "us": used * 1e6 / n}


def scenario(quick=False):
    if not shutil.which("nginx"):
        print("  nginx not installed (apt-get install nginx-light); skipped", flush=True)
        return None
    seconds = 5 if quick else 10
    rounds = 3
    drain_jobs = 20_000 if quick else 100_000
    stack = bench.Stack()
    threads = int(os.environ.get("SPOOL_API_THREADS", os.cpu_count() or 2))
    ng = Nginx(enqueue_reply(stack), workers=threads)
    stack.flush()
    out = {"api": [], "nginx": [], "lpush": [], "drain": []}
    try:
        for rnd in range(rounds):
            order = ["api", "nginx", "lpush", "drain"] if rnd % 2 == 0 else ["drain", "lpush", "nginx", "api"]
            for kind in order:
                if kind == "api":
                    out["api"].append(api_cost(stack, seconds))
                    stack.flush()
                elif kind == "nginx":
                    out["nginx"].append(nginx_cost(ng, seconds))
                elif kind == "lpush":
                    out["lpush"].append(lpush_cost(stack, 100_000 if quick else 300_000))
                else:
                    d = bench.drain(stack, 2, 16, drain_jobs)
                    out["drain"].append({"rate": d["rate"], "worker_us": d["cpu_us_per_job"]["workers"],
                                         "redis_us": d["cpu_us_per_job"]["redis"]})
                    stack.flush()
    finally:
        ng.close()
        stack.close()

    def med(kind, field):
        values = [x[field] for x in out[kind]]
        return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}
    r = {"seconds": seconds, "rounds": rounds, "drain_jobs": drain_jobs, "api_threads": threads, "runs": out,
         "api_us": med("api", "api_us"), "api_rate": med("api", "rate"), "nginx_us": med("nginx", "us"),
         "nginx_rate": med("nginx", "rate"), "redis_enqueue_us": med("api", "redis_us"), "lpush_us": med("lpush", "us"),
         "lpush_rate": med("lpush", "rate"), "drain_worker_us": med("drain", "worker_us"),
         "drain_redis_us": med("drain", "redis_us"), "drain_rate": med("drain", "rate")}
    r["api_vs_nginx"] = round(r["api_us"]["median"] / r["nginx_us"]["median"], 2)
    r["redis_enqueue_vs_lpush"] = round(r["redis_enqueue_us"]["median"] / r["lpush_us"]["median"], 2)
    r["redis_drain_vs_lpush"] = round(r["drain_redis_us"]["median"] / r["lpush_us"]["median"], 2)
    r["worker_drain_vs_lpush"] = round(r["drain_worker_us"]["median"] / r["lpush_us"]["median"], 2)
    print(f"  API {r['api_vs_nginx']} × nginx per request; Redis {r['redis_enqueue_vs_lpush']} × LPUSH per enqueue, "
          f"{r['redis_drain_vs_lpush']} × per drained job", flush=True)
    return r


def render(r):
    if not r:
        return "(not run: nginx missing)"

    def f(m):
        return f"{m['median']:.1f} ({m['min']:.1f}–{m['max']:.1f})"
    return f"""CPU time per job, medians of {r['rounds']} alternating rounds (spread in brackets), µs:

| what | Spool | floor | ÷ floor | aim |
|---|---|---|---|---|
| API per enqueue request (wrk, 64 conns, {r['seconds']} s) | {f(r['api_us'])} | nginx static 201, same body: {f(r['nginx_us'])} | {r['api_vs_nginx']:.2f} | ≤ 1.5 |
| Redis per enqueued job (same wrk run) | {f(r['redis_enqueue_us'])} | bare LPUSH of a job id: {f(r['lpush_us'])} | {r['redis_enqueue_vs_lpush']:.2f} | ≤ 3 |
| Redis per drained job (2 × 16, {r['drain_jobs']:,} jobs) | {f(r['drain_redis_us'])} | same LPUSH | {r['redis_drain_vs_lpush']:.2f} | – |
| worker per drained job (both processes) | {f(r['drain_worker_us'])} | same LPUSH | {r['worker_drain_vs_lpush']:.2f} | – |

Rates beside them (medians): API {r['api_rate']['median']:,.0f} requests/s, nginx {r['nginx_rate']['median']:,.0f}
requests/s, LPUSH {r['lpush_rate']['median']:,.0f}/s (redis-benchmark -c 50), drain {r['drain_rate']['median']:,.0f} jobs/s.
nginx runs {r['api_threads']} worker processes, as the API runs {r['api_threads']} event loops. How:
`scripts/bench_cost.py` (`make bench-cost` alone)."""


if __name__ == "__main__":
    bench.save_and_render("cost", scenario(quick="--quick" in sys.argv), render)
