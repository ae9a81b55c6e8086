#!/usr/bin/env python3
"""The "flat as the work grows" scenario of `make bench` (issue 18), also run
alone by `make bench-scale`:

1. A long drain: N noop jobs (1,000,000; 200,000 with --quick) batch-enqueued,
   then drained by 2 worker processes × 16 loops; the rate of each
   100,000-job slice (20,000 with --quick) against the rate of the first
   20,000 jobs, in the same run. Redis CPU per job and the commands' time
   (INFO commandstats) are read per slice, so a cost that grows shows where.
2. Depth: with 1,000,000 jobs pending in another priority (low), enqueue (wrk)
   and drain against the same with an empty queue, alternately.
"""
import re
import statistics
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the shared helpers: start, stop, Stack, ...)


def enqueue(stack, jobs, priority=None):
    args = ["batch", "--addr", stack.addr, "--queue", "bench", "--batches", jobs // 1000 // 2, "--size", 1000,
            "--connections", 2]
    if priority:
        args += ["--priority", priority]
    bench.bench_tool(*args)


def commandstats(port):
    """usec and calls per command, from INFO commandstats."""
    out = {}
    for m in re.finditer(r"cmdstat_(\w+):calls=(\d+),usec=(\d+)", bench.redis_cli(port, "INFO", "commandstats")):
        out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return out


def long_drain(quick):
    """Three long drains (on a shared machine one run's slices swing by ±10%):
    each slice's median rate and Redis cost, and the median of each run's
    whole-drain rate against its first 20,000 jobs."""
    runs = [long_drain_once(quick) for _ in range(3)]
    n = min(len(r.get("slice_rates") or []) for r in runs)
    slices = []
    for i in range(n):
        rates = [r["slice_rates"][i] / r["first_rate"] for r in runs]
        costs = [r["per_slice"][i] for r in runs if i < len(r["per_slice"]) and r["per_slice"][i]]
        slices.append({"ratio": round(statistics.median(rates), 3), "ratio_min": round(min(rates), 3),
                       "ratio_max": round(max(rates), 3),
                       "redis_cpu_us": statistics.median(c["redis_cpu_us"] for c in costs) if costs else None,
                       "script_us": statistics.median(c["script_us"] for c in costs) if costs else None,
                       "used_memory_mb": statistics.median(c["used_memory_mb"] for c in costs) if costs else None})
    overall = [r["rate"] / r["first_rate"] for r in runs]
    return {"jobs": runs[0]["jobs"], "slice_jobs": runs[0]["slice_jobs"], "runs": runs, "slices": slices,
            "first_rates": [round(r["first_rate"]) for r in runs], "rates": [round(r["rate"]) for r in runs],
            "overall_ratio": round(statistics.median(overall), 3), "overall_min": round(min(overall), 3),
            "overall_max": round(max(overall), 3)}


def long_drain_once(quick):
    jobs = 200_000 if quick else 1_000_000
    slice_jobs = 20_000 if quick else 100_000
    stack = bench.Stack()
    try:
        enqueue(stack, jobs)
        # Redis at rest first: the enqueue took its key table past 2^19.
        bench.settle(stack.redis_port)
        mem_before = bench.used_memory(stack.redis_port)
        # Redis' cost per slice: CPU and script time sampled as the slices pass.
        samples = []
        stop = threading.Event()

        def sample():
            port = stack.redis_port
            while not stop.is_set():
                processed = int(bench.redis_cli(port, "HGET", "spool:{bench}:stats", "processed") or 0)
                samples.append((processed, bench.cpu_seconds(stack.redis.pid), commandstats(port),
                                bench.used_memory(port)))
                stop.wait(0.25)
        t = threading.Thread(target=sample, daemon=True)
        t.start()
        w = stack.worker(2, 16)
        r = bench.bench_tool("wait-processed", "--redis-url", stack.url, "--queue", "bench", "--target", jobs,
                             "--slice", slice_jobs, "--first", 20_000, "--timeout", 900)
        stop.set()
        t.join()
        bench.stop(w)
    finally:
        stack.close()
    r["slice_jobs"] = slice_jobs
    r["mem_before"] = mem_before
    # Per slice: Redis CPU µs per job and EVALSHA µs per job, from the samples nearest each boundary.
    per_slice = []
    for i in range(jobs // slice_jobs):
        lo, hi = i * slice_jobs, (i + 1) * slice_jobs
        a = next((s for s in samples if s[0] >= lo), None)
        b = next((s for s in samples if s[0] >= hi), samples[-1] if samples else None)
        if not a or not b or b[0] <= a[0]:
            per_slice.append(None)
            continue
        n = b[0] - a[0]
        ev = lambda s: s[2].get("evalsha", (0, 0))[1]  # noqa: E731
        per_slice.append({"redis_cpu_us": round((b[1] - a[1]) * 1e6 / n, 1),
                          "script_us": round((ev(b) - ev(a)) / n, 1), "used_memory_mb": round(b[3] / 2**20)})
    r["per_slice"] = per_slice
    return r


def depth(quick):
    n = 20_000 if quick else 100_000
    deep = 200_000 if quick else 1_000_000
    wrk_s = 5 if quick else 10
    rounds = 2 if quick else 3
    stack = bench.Stack()
    out = {"drain_empty": [], "drain_deep": [], "enqueue_empty": [], "enqueue_deep": []}
    settle_s = []
    try:
        for _ in range(rounds):
            out["drain_empty"].append(bench.drain(stack, 2, 16, n)["rate"])
            d = bench.drain(stack, 2, 16, n, extra_low=deep)
            out["drain_deep"].append(d["rate"])
            settle_s.append(d["settle_s"])
            stack.flush()
            out["enqueue_empty"].append(bench.wrk(stack.api_port, "bench", wrk_s)["rate"])
            stack.flush()
            enqueue(stack, deep, priority="low")
            bench.settle(stack.redis_port)
            out["enqueue_deep"].append(bench.wrk(stack.api_port, "bench", wrk_s)["rate"])
            stack.flush()
    finally:
        stack.close()
    med = {k: statistics.median(v) for k, v in out.items()}
    return {"jobs": n, "depth": deep, "rounds": rounds, "rates": out, "median": med, "settle_s": settle_s,
            "drain_ratio": round(med["drain_deep"] / med["drain_empty"], 3),
            "enqueue_ratio": round(med["enqueue_deep"] / med["enqueue_empty"], 3)}


def scenario(quick=False):
    print("  long drain, 3 runs: the rate of each slice against the first 20,000 jobs", flush=True)
    d = long_drain(quick)
    print(f"  whole drain {d['overall_ratio']} × its first 20,000 (runs {d['overall_min']}–{d['overall_max']}), "
          f"slices {[s['ratio'] for s in d['slices']]}", flush=True)
    print("  depth: 1,000,000 pending in another priority against an empty queue", flush=True)
    p = depth(quick)
    print(f"  drain {p['drain_ratio']} × empty, enqueue {p['enqueue_ratio']} × empty", flush=True)
    return {"long_drain": d, "depth": p}


def render(r):
    if not r:
        return "(not run)"
    d, p = r["long_drain"], r["depth"]
    rows = []
    for i, s in enumerate(d["slices"]):
        rows.append(f"| {i * d['slice_jobs']:,}–{(i + 1) * d['slice_jobs']:,} | {s['ratio']:.2f} "
                    f"({s['ratio_min']:.2f}–{s['ratio_max']:.2f}) | {s['redis_cpu_us']} | {s['script_us']} | "
                    f"{s['used_memory_mb']} |")
    table = "\n".join(rows)
    m = p["median"]
    settled = ""
    if p.get("settle_s"):
        settled = (", each drain started once Redis had finished resizing its key table (`bench.settle`, "
                   f"{bench.settle_text(p['settle_s'])} s; scenario 8 shows a drain "
                   "started before that)")
    return f"""Drain of {d['jobs']:,} noop jobs, batch-enqueued first, by 2 worker processes × 16 loops,
3 runs. The whole drain against the rate of its own first 20,000 jobs: **{d['overall_ratio']:.2f}**
(runs {d['overall_min']:.2f}–{d['overall_max']:.2f}; aim ≥ 0.95); whole-drain rates
{', '.join(f'{x:,}' for x in d['rates'])}/s, first 20,000 at {', '.join(f'{x:,}' for x in d['first_rates'])}/s.
Each slice against its run's first 20,000 (median, runs in brackets), and what Redis spent
per job in it (medians):

| jobs | ÷ first 20,000 | Redis CPU µs/job | script µs/job | Redis used memory MB |
|---|---|---|---|---|
{table}

With {p['depth']:,} jobs pending in another priority (low), against an empty queue,
medians of {p['rounds']} alternating rounds{settled} (aim ≥ 0.95):

| | empty | deep | ÷ empty |
|---|---|---|---|
| drain of {p['jobs']:,} (2 × 16) | {m['drain_empty']:,.0f} | {m['drain_deep']:,.0f} | {p['drain_ratio']:.2f} |
| enqueue (wrk, 64 connections) | {m['enqueue_empty']:,.0f} | {m['enqueue_deep']:,.0f} | {p['enqueue_ratio']:.2f} |

How: `scripts/bench_scale.py` (`make bench-scale` alone)."""


if __name__ == "__main__":
    bench.save_and_render("scale", scenario(quick="--quick" in sys.argv), render)
