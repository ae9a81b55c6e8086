#!/usr/bin/env python3
"""The streaming scenario of `make bench` (issue 16), also run alone by
`make bench-streaming`: what event streams cost and how fast they are.

1. Delay: 100 jobs of the built-in `stream` handler, each writing a chunk
   every 100 ms (1,000 chunks/s in all), each followed by one SSE client;
   the delay is the client's wall clock at receipt minus the handler's at
   writing (`sent_us` in the chunk), same machine.
2. 1,000 idle streams on one spool-api: its RSS before and after, its CPU
   while nothing happens, and concurrent enqueue (wrk) beside them against
   the same API without them, in alternating rounds.
3. A flooding handler: a command writing chunk lines as fast as it can on
   fd 3 while a client follows; the handler's line rate, the worker's and the
   API's peak RSS, and what the capped log kept.
4. The memory of a finished job nobody followed (no log) and of a job that
   streamed 100 chunks (its log).
"""
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the shared helpers: start, stop, wrk, ...)


def now_us():
    return time.time_ns() // 1000


async def follow(port, path, on_event, opened=None):
    """One SSE client over a raw socket (chunked body): calls on_event(name,
    data) for each event until the stream ends or the task is cancelled."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    if opened:
        opened()
    pending = b""
    try:
        while True:
            size = int((await reader.readline()).strip() or b"0", 16)
            if size == 0:
                return
            pending += (await reader.readexactly(size + 2))[:-2]
            while b"\n\n" in pending:
                block, pending = pending.split(b"\n\n", 1)
                name, data = None, None
                for line in block.split(b"\n"):
                    if line.startswith(b"event: "):
                        name = line[7:].decode()
                    elif line.startswith(b"data: "):
                        data = line[6:]
                if name and data is not None:
                    on_event(name, data)
    finally:
        writer.close()


def enqueue(addr, queue, jobs):
    """Enqueues in batches of 1,000 (POST .../jobs/batch); returns the ids."""
    import http.client
    host, port = addr.split(":")
    ids = []
    for start in range(0, len(jobs), 1000):
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("POST", f"/v1/queues/{queue}/jobs/batch", body=json.dumps({"jobs": jobs[start:start + 1000]}))
        resp = conn.getresponse()
        body = json.loads(resp.read())
        conn.close()
        assert resp.status == 201, body
        ids += [j["id"] for j in body["jobs"]]
    return ids


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))


def delay_scenario(stack, seconds):
    # Job k starts k ms into the 100 ms interval: one chunk every millisecond in all.
    jobs = [{"type": "stream", "payload": {"chunks": seconds * 10, "interval_ms": 100, "offset_ms": k}} for k in range(100)]
    ids = enqueue(stack.addr, "bench", jobs)
    delays = []
    ended = []

    async def run():
        opened = []
        tasks = []
        for i in ids:
            def on_event(name, data):
                if name == "chunk":
                    delays.append(now_us() - json.loads(data)["chunk"]["sent_us"])
                elif name == "state" and b'"succeeded"' in data:
                    ended.append(1)
            tasks.append(asyncio.create_task(follow(stack.api_port, f"/v1/jobs/{i}/events", on_event,
                                                    lambda: opened.append(1))))
        while len(opened) < len(ids):
            await asyncio.sleep(0.01)
        return tasks

    async def main():
        tasks = await run()
        api_cpu, redis_cpu = bench.cpu_seconds(stack.api.pid), bench.cpu_seconds(stack.redis.pid)
        t0 = time.monotonic()
        w = stack.worker(1, 100)
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 60)
        finally:
            bench.stop(w)
        elapsed = time.monotonic() - t0
        return elapsed, bench.cpu_seconds(stack.api.pid) - api_cpu, bench.cpu_seconds(stack.redis.pid) - redis_cpu

    elapsed, api_cpu, redis_cpu = asyncio.run(main())
    delays.sort()
    expected = 100 * seconds * 10
    assert len(delays) == expected and len(ended) == 100, f"{len(delays)} of {expected} chunks, {len(ended)} of 100 streams ended"
    q = statistics.quantiles(delays, n=100)
    return {"chunks": len(delays), "chunks_per_s": round(len(delays) / elapsed), "p50_ms": round(q[49] / 1000, 2),
            "p99_ms": round(q[98] / 1000, 2), "max_ms": round(delays[-1] / 1000, 2),
            "api_cpu_us_per_chunk": round(api_cpu * 1e6 / len(delays), 1),
            "redis_cpu_us_per_chunk": round(redis_cpu * 1e6 / len(delays), 1)}


def idle_scenario(stack, seconds, rounds, clients=1000):
    ids = enqueue(stack.addr, "idle", [{"type": "noop"} for _ in range(clients)])
    rss_before = bench.rss_kb(stack.api.pid)
    cpu0 = bench.cpu_seconds(stack.api.pid)
    time.sleep(10)
    idle_alone_ms = round((bench.cpu_seconds(stack.api.pid) - cpu0) * 1000, 1)
    plain = [bench.wrk(stack.api_port, "bench", seconds)]
    result = {}

    async def main():
        opened = []
        tasks = [asyncio.create_task(follow(stack.api_port, f"/v1/jobs/{i}/events", lambda n, d: None,
                                            lambda: opened.append(1))) for i in ids]
        while len(opened) < clients:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1)
        result["rss_kb"] = bench.rss_kb(stack.api.pid)
        cpu0 = bench.cpu_seconds(stack.api.pid)
        await asyncio.sleep(10)
        result["idle_cpu_ms_per_10s"] = round((bench.cpu_seconds(stack.api.pid) - cpu0) * 1000, 1)
        beside = []
        loop = asyncio.get_running_loop()
        for r in range(rounds):
            beside.append(await loop.run_in_executor(None, bench.wrk, stack.api_port, "bench", seconds))
            if r < rounds - 1:
                plain.append(await loop.run_in_executor(None, bench.wrk, stack.api_port, "bench", seconds))
        result["open_at_end"] = sum(1 for t in tasks if not t.done())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return beside

    beside = asyncio.run(main())
    p99 = lambda runs: round(statistics.median(r["p99_ms"] for r in runs), 2)  # noqa: E731
    rate = lambda runs: statistics.median(r["rate"] for r in runs)  # noqa: E731
    return {"clients": clients, "rss_before_kb": rss_before, "rss_kb": result["rss_kb"],
            "idle_cpu_ms_per_10s": result["idle_cpu_ms_per_10s"], "idle_cpu_ms_per_10s_without": idle_alone_ms,
            "open_at_end": result["open_at_end"],
            "enqueue_p99_ms": {"without": p99(plain), "with": p99(beside)},
            "enqueue_rate": {"without": round(rate(plain)), "with": round(rate(beside))}}


FLOOD_HANDLER = r"""
import os, sys, time
out = os.fdopen(3, "wb", buffering=1 << 16)
n = int(sys.argv[1])
line = b'{"chunk": "0123456789abcdef"}\n'
t0 = time.monotonic()
for i in range(n):
    out.write(line)
out.flush()
print('{"lines_per_s": %d}' % (n / (time.monotonic() - t0)))
"""


def flood_scenario(stack, lines):
    handler = Path(stack.dir) / "flood.py"
    handler.write_text(FLOOD_HANDLER)
    w = bench.start([str(bench.BIN / "spool-worker"), "--queues", "flood", "--concurrency", "1", "--log-level", "error",
                     "--handler", f"flood={sys.executable} {handler} {lines}"], {"REDIS_URL": stack.url})
    time.sleep(0.5)
    ids = enqueue(stack.addr, "flood", [{"type": "flood", "timeout_ms": 300000}])
    counts = {"chunk": 0, "dropped": 0}
    result = {}

    async def main():
        def on_event(name, data):
            if name in counts:
                counts[name] += 1
            if name == "state" and b'"succeeded"' in data:
                result["result"] = json.loads(data)["result"]
        with bench.PeakRSS(w.pid) as worker_peak, bench.PeakRSS(stack.api.pid) as api_peak:
            await asyncio.wait_for(follow(stack.api_port, f"/v1/jobs/{ids[0]}/events", on_event), timeout=300)
        return worker_peak.peak, api_peak.peak

    worker_peak, api_peak = asyncio.run(main())
    bench.stop(w)
    key = f"spool:{{flood}}:events:{ids[0]}"
    return {"lines": lines, "handler_lines_per_s": result["result"]["lines_per_s"], "worker_peak_rss_kb": worker_peak,
            "api_peak_rss_kb": api_peak, "chunks_kept": counts["chunk"], "dropped_events": counts["dropped"],
            "log_entries": int(bench.redis_cli(stack.redis_port, "XLEN", key)),
            "log_bytes": int(bench.redis_cli(stack.redis_port, "MEMORY", "USAGE", key))}


def memory_scenario(stack):
    ids = enqueue(stack.addr, "mem", [{"type": "noop"}, {"type": "stream", "payload": {"chunks": 100}}])
    w = stack.worker(1, 2, queues="mem")
    bench.bench_tool("wait-processed", "--redis-url", stack.url, "--queue", "mem", "--target", 2)
    bench.stop(w)
    usage = lambda k: int(bench.redis_cli(stack.redis_port, "MEMORY", "USAGE", k) or 0)  # noqa: E731
    plain_keys = [k for k in bench.redis_cli(stack.redis_port, "KEYS", f"spool:*{ids[0]}*").split() if k]
    return {"unfollowed_job_keys": len(plain_keys), "unfollowed_job_bytes": usage(f"spool:{{mem}}:job:{ids[0]}"),
            "streamed_log_bytes_100_chunks": usage(f"spool:{{mem}}:events:{ids[1]}")}


def scenario(quick=False):
    raise_fd_limit()
    stack = bench.Stack()
    def runs(measure):
        """bench.ROUNDS runs of one measurement, Redis emptied after each."""
        out = []
        for _ in range(bench.ROUNDS):
            out.append(measure())
            stack.flush()
        return out
    try:
        # Medians of 3 (by p50, and by the handler's line rate), with the runs.
        out = {"delay": bench.median_of(runs(lambda: delay_scenario(stack, 5 if quick else 15)), "p50_ms",
                                        also=("p99_ms",))}
        out["idle"] = idle_scenario(stack, 3 if quick else 5, 2 if quick else 3)
        stack.flush()
        out["flood"] = bench.median_of(runs(lambda: flood_scenario(stack, 200_000 if quick else 1_000_000)),
                                       "handler_lines_per_s")
        out["memory"] = memory_scenario(stack)
        return out
    finally:
        stack.close()


def render(r):
    if not r:
        return "(not run)"
    d, i, f, m = r["delay"], r["idle"], r["flood"], r["memory"]
    return streaming_text(d, i, f, m) + ab_text()


def ab_text():
    """The last scripts/bench_ab.py run (.spool/bench-ab.json), if any: what
    the event log costs ordinary jobs, old binaries against new, alternately."""
    path = Path(__file__).resolve().parents[1] / ".spool" / "bench-ab.json"
    if not path.exists():
        return ""
    ab = json.loads(path.read_text())
    r, med = ab["new_over_old"], ab["medians"]
    return f"""

Ordinary jobs (nobody follows them, nothing streamed), with the event log against without it:
`python3 scripts/bench_ab.py` on {ab['date']}, {ab['label']}, {ab['rounds']} alternating rounds, medians,
new ÷ old: drain (20,000 noop jobs, 1 worker × 16) **{r['drain']}** ({med['new']['drain']:,}/s against
{med['old']['drain']:,}/s), concurrent enqueue (wrk, 64 connections) **{r['conc']}** ({med['new']['conc']:,}/s
against {med['old']['conc']:,}/s), batch enqueue {r['batch']}, sequential enqueue {r['seq']}; idle RSS API
{r['rss_api']}, worker {r['rss_worker']}."""


def streaming_text(d, i, f, m):
    return f"""Chunk written by a handler to event received by an SSE client, {d['chunks']:,} chunks at
{d['chunks_per_s']:,}/s over 100 jobs, each followed by a client (built-in `stream` handler, 100 worker
threads, one spool-api with 2 loops):

| p50 | p99 | max | API CPU per chunk | Redis CPU per chunk |
|---|---|---|---|---|
| {d['p50_ms']} ms{bench.spread(d, 'runs', '{:g}')} | {d['p99_ms']} ms{bench.spread(d, 'p99_ms_runs', '{:g}')} | {d['max_ms']} ms | {d['api_cpu_us_per_chunk']} µs | {d['redis_cpu_us_per_chunk']} µs |

{i['clients']:,} idle SSE clients on one spool-api (job streams of queued jobs): RSS
{i['rss_before_kb'] / 1024:.1f} MB before, {i['rss_kb'] / 1024:.1f} MB with them; CPU while nothing happens
{i['idle_cpu_ms_per_10s']} ms in 10 s ({i['idle_cpu_ms_per_10s_without']} ms without them: the loops' own timers); {i['open_at_end']:,} still open at the end. Concurrent enqueue
(wrk, 64 connections) beside them: p99 {i['enqueue_p99_ms']['with']} ms against {i['enqueue_p99_ms']['without']} ms
without, {i['enqueue_rate']['with']:,}/s against {i['enqueue_rate']['without']:,}/s (medians of alternating rounds).

A handler flooding fd 3 with {f['lines']:,} chunk lines ({f['handler_lines_per_s']:,} lines/s{bench.spread(f)} as the
handler saw it, slowed by the worker's back-pressure), one client following: worker peak RSS
{f['worker_peak_rss_kb'] / 1024:.1f} MB, API peak RSS {f['api_peak_rss_kb'] / 1024:.1f} MB; the log kept
{f['log_entries']:,} entries ({f['log_bytes'] / 1024:.0f} KiB), the client got {f['chunks_kept']:,} chunks and
{f['dropped_events']} `dropped` event.

Memory: a finished job nobody followed has {m['unfollowed_job_keys']} key ({m['unfollowed_job_bytes']} bytes, no log);
the log of a job that streamed 100 chunks takes {m['streamed_log_bytes_100_chunks']:,} bytes."""


if __name__ == "__main__":
    res = scenario(quick=os.environ.get("SPOOL_BENCH_QUICK") == "1")
    Path(".spool").mkdir(exist_ok=True)
    Path(".spool/bench-streaming.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    print(render(res))
