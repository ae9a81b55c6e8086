#!/usr/bin/env python3
"""The latency scenario of `make bench` (issue 18), also run alone by
`make bench-latency`: from a client's enqueue call to the moment the job's
handler begins, at 200 jobs per second to idle workers, Spool against Sidekiq
on the same machine and Redis, in alternating rounds (medians of 3).

- Spool: a Python client (http.client, one keep-alive connection) posts
  `{"type": "clock"}` jobs, each stamped with the wall clock just before the
  request; the built-in `clock` handler's result is the wall clock when it
  began. One worker of 16 loops.
- Sidekiq: its Ruby client pushes `ClockJob`s stamped just before the push;
  the job writes (its start − the stamp) to a Redis list
  (scripts/peers/sidekiq_bench.rb). One process of 10 threads.
- BullMQ (Python port): the same with `clock` jobs (scripts/peers/bullmq_bench.py),
  one worker of concurrency 10.
Both clocks are this machine's CLOCK_REALTIME.

`bench_latency.py --ab OLD_DIR NEW_DIR` runs Spool's round alone with two
builds alternately (4 rounds of 1,000 jobs), for a change on this path.
"""
import http.client
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
import bench_peers  # noqa: E402

RATE = 200


def percentiles(samples):
    s = sorted(samples)
    return {"p50_us": s[len(s) // 2], "p99_us": s[min(len(s) - 1, int(len(s) * 0.99))], "max_us": s[-1], "jobs": len(s)}


def spool_round(stack, n):
    stack.flush()
    w = stack.worker(1, 16)
    time.sleep(1.5)
    host, port = stack.addr.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    ids, stamps = [], []
    start = time.monotonic()
    for i in range(n):
        pause = start + i / RATE - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        stamps.append(time.time_ns() // 1000)
        conn.request("POST", "/v1/queues/bench/jobs", '{"type":"clock"}', {"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 201, (resp.status, body[:200])
        ids.append(json.loads(body)["id"])
    samples = []
    for job_id, called in zip(ids, stamps):
        deadline = time.monotonic() + 30
        while True:
            conn.request("GET", f"/v1/jobs/{job_id}")
            resp = conn.getresponse()
            job = json.loads(resp.read())
            if job.get("state") == "succeeded":
                samples.append(job["result"]["started_us"] - called)
                break
            assert time.monotonic() < deadline, f"job {job_id} did not run: {job}"
            time.sleep(0.01)
    conn.close()
    bench.stop(w)
    return {**percentiles(samples), "hops": hops(stack.redis_port, ids, stamps, samples)}


def hops(redis_port, ids, stamps, samples):
    """Where Spool's time goes, from the job hash's own µs stamps: the
    client's call to the enqueue script (`created_at`), the enqueue to the
    claim (`started_at`, set by the fetch script), the claim to the handler.
    Medians, µs."""
    script = "".join(f"HMGET spool:{{bench}}:job:{i} created_at started_at\n" for i in ids)
    out = subprocess.run(["redis-cli", "-p", str(redis_port)], input=script, capture_output=True, text=True,
                         timeout=60).stdout.split()
    created, claimed = [int(x) for x in out[0::2]], [int(x) for x in out[1::2]]
    began = [called + s for called, s in zip(stamps, samples)]
    return {"to_enqueue_us": statistics.median(c - t for c, t in zip(created, stamps)),
            "to_claim_us": statistics.median(c - e for c, e in zip(claimed, created)),
            "to_handler_us": statistics.median(b - c for b, c in zip(began, claimed))}


def peer_round(stack, n, workers, client, start_up_s, who):
    """A peer's workers and client (bench_peers): each job writes how long
    after its stamp it began to the list `bench:latency`."""
    stack.flush()
    url = f"redis://127.0.0.1:{stack.redis_port}/0"
    procs = workers(url)
    try:
        time.sleep(start_up_s)
        bench_peers.clients(client(url), "latency", n)
        deadline = time.monotonic() + 60
        while int(bench.redis_cli(stack.redis_port, "LLEN", "bench:latency")) < n:
            assert time.monotonic() < deadline, f"{who} did not run every job"
            time.sleep(0.05)
        samples = [int(x) for x in bench.redis_cli(stack.redis_port, "LRANGE", "bench:latency", 0, -1).split()]
    finally:
        bench_peers.stop_procs(procs)
    return percentiles(samples)


def sidekiq_round(stack, n):
    # Ruby's and Sidekiq's start-up: 4 s.
    return peer_round(stack, n, lambda url: bench_peers.sidekiq_workers(url, 1, 10), bench_peers.sidekiq_client, 4,
                      "sidekiq")


def bullmq_round(stack, n):
    # Python's and the worker's start-up: 3 s.
    return peer_round(stack, n, lambda url: bench_peers.bullmq_workers(url, 1, 10), bench_peers.bullmq_client, 3,
                      "bullmq")


def scenario(quick=False):
    n = 500 if quick else 2000
    rounds = 3
    with_sidekiq = bench_peers.available()
    with_bullmq = bench_peers.bullmq_available()
    stack = bench.Stack()
    out = {"spool": [], "sidekiq": [], "bullmq": []}
    try:
        for rnd in range(rounds):
            order = ["spool", "sidekiq", "bullmq"] if rnd % 2 == 0 else ["bullmq", "sidekiq", "spool"]
            for kind in order:
                if kind == "spool":
                    out["spool"].append(spool_round(stack, n))
                elif kind == "sidekiq" and with_sidekiq:
                    out["sidekiq"].append(sidekiq_round(stack, n))
                elif kind == "bullmq" and with_bullmq:
                    out["bullmq"].append(bullmq_round(stack, n))
    finally:
        stack.close()
    r = {"jobs": n, "rate": RATE, "rounds": rounds, "runs": out}
    for kind in ("spool", "sidekiq", "bullmq"):
        if out[kind]:
            r[kind] = {k: statistics.median(x[k] for x in out[kind]) for k in ("p50_us", "p99_us", "max_us")}
    if "sidekiq" in r:
        r["sidekiq_version"] = bench_peers.version()
    text = f"Spool p50 {r['spool']['p50_us']} µs, p99 {r['spool']['p99_us']} µs"
    if "sidekiq" in r:
        text += f"; Sidekiq p50 {r['sidekiq']['p50_us']} µs, p99 {r['sidekiq']['p99_us']} µs"
    if "bullmq" in r:
        text += f"; BullMQ p50 {r['bullmq']['p50_us']} µs, p99 {r['bullmq']['p99_us']} µs"
    print("  " + text, flush=True)
    return r


def render(r):
    if not r:
        return "(not run)"

    def row(name, kind):
        if kind not in r:
            return f"| {name} | not installed | | | |"
        m = r[kind]
        spread = ", ".join(f"{x['p50_us']}/{x['p99_us']}" for x in r["runs"][kind])
        return f"| {name} | {m['p50_us'] / 1000:.2f} | {m['p99_us'] / 1000:.2f} | {m['max_us'] / 1000:.2f} | {spread} |"
    verdict = ""
    if "sidekiq" in r:
        ok = r["spool"]["p50_us"] <= r["sidekiq"]["p50_us"] and r["spool"]["p99_us"] <= r["sidekiq"]["p99_us"]
        verdict = f"\nAim (p50 and p99 at or below Sidekiq's): **{'met' if ok else 'not met'}**."
    return f"""From a client's enqueue call to the moment the handler begins, {r['jobs']:,} jobs at
{r['rate']} per second to idle workers, medians of {r['rounds']} alternating rounds, ms:

| system | p50 | p99 | max | each round's p50/p99, µs |
|---|---|---|---|---|
{row("Spool (Python client over HTTP keep-alive; 1 worker × 16, built-in `clock`)", "spool")}
{row(f"Sidekiq {r.get('sidekiq_version', '')} (its Ruby client; 1 process × 10 threads)", "sidekiq")}
{row(f"BullMQ {bench_peers.BULLMQ_VERSION}, Python port (its asyncio client; 1 worker, concurrency 10)", "bullmq")}
{verdict}{hops_text(r)}
How: `scripts/bench_latency.py` (`make bench-latency` alone)."""


def hops_text(r):
    """Spool's path in its median round, hop by hop (older results lack it)."""
    runs = [x for x in r["runs"]["spool"] if "hops" in x]
    if not runs:
        return ""
    h = next((x["hops"] for x in runs if x["p50_us"] == r["spool"]["p50_us"]), runs[len(runs) // 2]["hops"])
    return f"""
Spool's path, medians of its median round, from the job hash's µs stamps: the client's call
to the enqueue script {h['to_enqueue_us']:.0f} µs (the client's send, the API, the script call),
the enqueue to the claim {h['to_claim_us']:.0f} µs (the wake token's `BLPOP` answer and the fetch
sent behind it), the claim to the handler {h['to_handler_us']:.0f} µs (the replies reaching the
worker, its thread waking, the dispatch). Sidekiq's path is the client's `LPUSH` and the
worker's `BRPOP` answer: Spool adds the API between the client and Redis, and the claim that
puts every job under a lease. Why each hop costs what it does, with profiles: "From the
client's call to the handler" in the profile notes (docs/performance-notes.md, quoted below)."""


def ab(old_dir, new_dir, n=1000, rounds=4):
    """`bench_latency.py --ab OLD NEW`: Spool's round alone with two builds'
    binaries (release directories), alternately; medians of p50 and p99, for
    a change on the path from the client's call to the handler."""
    dirs = {"old": Path(old_dir), "new": Path(new_dir)}
    runs = {k: [] for k in dirs}
    for rnd in range(rounds):
        for kind in (list(dirs) if rnd % 2 == 0 else list(reversed(list(dirs)))):
            bench.BIN = dirs[kind]
            stack = bench.Stack()
            try:
                runs[kind].append(spool_round(stack, n))
            finally:
                stack.close()
            print(kind, runs[kind][-1], flush=True)
    for kind, v in runs.items():
        print(f"{kind}: p50 {statistics.median(x['p50_us'] for x in v)} µs, p99 {statistics.median(x['p99_us'] for x in v)} µs")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--ab"]:
        ab(sys.argv[2], sys.argv[3])
    else:
        bench.save_and_render("latency", scenario(quick="--quick" in sys.argv), render)
