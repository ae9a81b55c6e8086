#!/usr/bin/env python3
"""`make bench`: Spool's benchmark, every scenario in one run, written to
docs/benchmarks.md with each figure as a ratio to a redis-benchmark baseline
measured in the same run (absolute figures drift between runs and machines).

Starts its own redis-server (no persistence) on a free loopback port, uses the
release binaries (spool-api, spool-worker, spool-bench) and wrk, and stops
everything it started, whatever happens.
"""
import datetime
import importlib
import json
import os
import platform
import re
import statistics
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import bench_peers

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("SPOOL_BIN_DIR", ROOT / ".build" / "release"))
QUICK = os.environ.get("BENCH_QUICK") == "1"  # smaller counts, for a smoke run

procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, env=None, log=None):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.Popen(args, env=e, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT)
    procs.append(p)
    return p


def stop(p, sig_timeout=30):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(sig_timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stop_all():
    for p in reversed(procs):
        stop(p, 5)


def wait_port(port, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def rss_kb(pid, field="VmRSS"):
    """Resident kB of a process; field "RssAnon" for its own memory only
    (without the code it maps, which its sibling processes share)."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid):
    """User + system CPU time a process has used so far."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


class CPUMeter:
    """CPU seconds used by some processes (and by this script's finished
    children, e.g. wrk) over a block, per job: where a scenario's cores went."""

    def __init__(self, pids):
        self.pids = pids

    def __enter__(self):
        self.before = {k: cpu_seconds(p) for k, p in self.pids.items()}
        t = os.times()
        self.children_before = t.children_user + t.children_system
        return self

    def __exit__(self, *exc):
        self.used = {k: cpu_seconds(p) - self.before[k] for k, p in self.pids.items()}
        t = os.times()
        self.used["client"] = t.children_user + t.children_system - self.children_before

    def per_job_us(self, jobs):
        return {k: round(v * 1e6 / jobs, 1) for k, v in self.used.items()} if jobs else {}


def children(pid):
    """The child processes of `pid`, read from /proc (no process started:
    running pgrep every 50 ms cost about 11% of a core, which the scenarios
    being measured lost)."""
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


class PeakRSS:
    """Samples the RSS of a process (and its children) every 50 ms; keeps the
    largest single-process figure."""

    def __init__(self, pid):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for p in [self.pid, *children(self.pid)]:
                self.peak = max(self.peak, rss_kb(p))
            time.sleep(0.05)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.t.join()


def sh(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, check=True, **kw).stdout


def bench_tool(*args):
    return json.loads(sh([str(BIN / "spool-bench"), *map(str, args)]).strip().splitlines()[-1])


def redis_cli(port, *args):
    return sh(["redis-cli", "-p", str(port), *map(str, args)]).strip()


def used_memory(port):
    info = redis_cli(port, "INFO", "memory")
    return int(re.search(r"used_memory:(\d+)", info).group(1))


def redis_benchmark(port, pipeline, clients=50):
    n = 100_000 if QUICK else 300_000
    if clients == 1:
        n //= 5
    out = sh(["redis-benchmark", "-p", str(port), "-t", "lpush", "-c", str(clients), "-n", str(n), "-P", str(pipeline),
              "-q"])
    return float(re.search(r"LPUSH: ([\d.]+) requests per second", out).group(1))


def wrk(port, queue, seconds, connections=64):
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.body = \'{"type":"noop"}\'\n'
                      'wrk.headers["Content-Type"] = "application/json"\n')
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
           f"http://127.0.0.1:{port}/v1/queues/{queue}/jobs"]
    out = sh(cmd)
    shutil.rmtree(script.parent, ignore_errors=True)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    return {"rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50_ms": ms("50"),
            "p99_ms": ms("99"), "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else "", "command": " ".join(cmd[:-3] + ["-s post.lua", cmd[-1]])}


class Stack:
    """Redis + spool-api for one scenario."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="spool-bench-")
        self.redis_port = free_port()
        self.api_port = free_port()
        self.redis = start(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", self.dir,
                            "--save", "", "--appendonly", "no", "--daemonize", "no",
                            # DEBUG HTSTATS (settle()) from this machine only.
                            "--enable-debug-command", "local"])
        wait_port(self.redis_port)
        self.url = f"redis://127.0.0.1:{self.redis_port}"
        self.api = start([str(BIN / "spool-api"), "--addr", f"127.0.0.1:{self.api_port}", "--log-level", "warning",
                          "--log-format", "json"], {"REDIS_URL": self.url})
        wait_port(self.api_port)
        time.sleep(0.3)
        self.addr = f"127.0.0.1:{self.api_port}"

    def flush(self):
        redis_cli(self.redis_port, "FLUSHALL")

    def worker(self, processes, concurrency, queues="bench"):
        return start([str(BIN / "spool-worker"), "--queues", queues, "--concurrency", str(concurrency),
                      "--processes", str(processes), "--log-level", "warning", "--log-format", "json"],
                     {"REDIS_URL": self.url})

    def close(self):
        stop(self.api)
        stop(self.redis)
        shutil.rmtree(self.dir, ignore_errors=True)


def settle_text(waits):
    """settle()'s waits for a report: `31.9, –, 33.3` (– where it did not wait)."""
    return ", ".join("–" if x is None else f"{x:g}" for x in waits)


def settle(port, timeout=180):
    """Waits until Redis has finished resizing its key tables. Redis doubles
    a table when its keys reach a power of two and moves the keys over
    bit by bit afterwards, on the commands that follow and 1 ms per cron
    tick: after a million jobs were enqueued, a drain started at once pays
    for what is left of the move (4-6 µs of Redis CPU per drained job while
    it lasts, measured: docs/performance-notes.md),
    which is a one-off of that enqueue, not a cost of draining with depth.
    An idle Redis takes 30-40 s to move a million keys (1 ms per 100 ms).
    Needs Redis 7 (the bench's redis-server allows DEBUG from localhost).
    Returns the seconds waited, or None when Redis refused DEBUG or was
    still moving keys at the timeout (said on the console)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        # redis-cli exits 0 on an error reply: the reply itself says.
        stats = redis_cli(port, "DEBUG", "HTSTATS", 0)
        if stats.startswith("ERR") or "[Dictionary HT]" not in stats:
            print(f"  settle: Redis refused DEBUG HTSTATS ({stats[:80]}); not waited", flush=True)
            return None
        if "rehashing target" not in stats:
            return round(time.monotonic() - t0, 2)
        time.sleep(0.1)
    print(f"  settle: Redis still resizing its key table after {timeout} s; measured anyway", flush=True)
    return None


def drain(stack, processes, concurrency, jobs, extra_low=0, settled=True):
    """Enqueues `jobs` noop jobs first, then (once Redis is at rest: settle,
    unless `settled` is false) starts workers and times until all have
    succeeded (the processed counter in Redis)."""
    stack.flush()
    if extra_low:
        bench_tool("batch", "--addr", stack.addr, "--queue", "bench", "--batches", extra_low // 1000 // 2,
                   "--size", 1000, "--connections", 2, "--priority", "low")
    bench_tool("batch", "--addr", stack.addr, "--queue", "bench", "--batches", jobs // 1000 // 2, "--size", 1000,
               "--connections", 2)
    waited = settle(stack.redis_port) if settled else None
    redis_before = cpu_seconds(stack.redis.pid)
    w = stack.worker(processes, concurrency)
    with PeakRSS(w.pid) as peak:
        r = bench_tool("wait-processed", "--redis-url", stack.url, "--queue", "bench", "--target", jobs)
    # The supervisor's children are the worker processes (and their handler
    # reapers); read before they exit.
    worker_cpu = sum(cpu_seconds(c) for c in children(w.pid)) + cpu_seconds(w.pid)
    r["cpu_us_per_job"] = {"redis": round((cpu_seconds(stack.redis.pid) - redis_before) * 1e6 / jobs, 1),
                           "workers": round(worker_cpu * 1e6 / jobs, 1)}
    stop(w)
    r["peak_rss_kb"] = peak.peak
    r["settle_s"] = waited
    return r


ROUNDS = 3  # every figure of scenarios 2-9 and the peers' is the median of this many runs


def median_of(runs, key="rate", also=()):
    """The run whose `key` is the median of `runs`, with its other figures
    (so that a rate and its p99 come from one run), and every run's `key`
    (and each of `also`) under `runs` / `<name>_runs`: the spread."""
    ordered = sorted(runs, key=lambda x: x[key])
    mid = dict(ordered[(len(ordered) - 1) // 2])
    mid["runs"] = [x[key] for x in runs]
    for name in also:
        mid[f"{name}_runs"] = [x[name] for x in runs]
    return mid


def median_of_runs(fn, key="rate", also=()):
    return median_of([fn() for _ in range(ROUNDS)], key, also)


def peer_medians(fn):
    """A peer's figures (bench_peers.sidekiq / bullmq) from ROUNDS full runs:
    each scenario's median run, with the spread."""
    runs = [fn() for _ in range(ROUNDS)]
    out = dict(runs[0])
    for name in ("seq", "bulk", "bulk4", "drain"):
        out[name] = median_of([r[name] for r in runs])
    return out


class _Scaled:
    """A format for spread(): µs shown as ms, kB as MB."""

    def __init__(self, divisor, text):
        self.divisor, self.text = divisor, text

    def format(self, x):
        return self.text.format(x / self.divisor)


ms = _Scaled(1000, "{:.2f}")
mb = _Scaled(1024, "{:.1f}")


def spread(result, key="runs", fmt="{:,.0f}"):
    """` (runs a, b, c)`: the figures a median was taken from."""
    runs = result.get(key) if isinstance(result, dict) else None
    return f" (runs {', '.join(fmt.format(x) for x in runs)})" if runs else ""


def main():
    results = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    results["machine"] = f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}"
    results["versions"] = {
        "redis": sh(["redis-server", "--version"]).split()[2],
        "swift": sh(["swift", "--version"]).splitlines()[0] if shutil.which("swift") else "?",
        "wrk": (subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines() or ["?"])[0],
        "spool": sh(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]).strip(),
    }
    n_seq = 5_000 if QUICK else 20_000
    n_drain = 20_000 if QUICK else 100_000
    depth = 100_000 if QUICK else 1_000_000
    wrk_s = 5 if QUICK else 10

    stack = Stack()
    try:
        print("1 baseline: redis-benchmark LPUSH", flush=True)
        # The baseline is the median of 3 runs; a run far from the others
        # (another process took the cores) is named in the report.
        results["lpush_runs"] = [redis_benchmark(stack.redis_port, 1) for _ in range(3)]
        results["lpush"] = statistics.median(results["lpush_runs"])
        results["lpush_p16"] = redis_benchmark(stack.redis_port, 16)
        results["lpush_c1"] = redis_benchmark(stack.redis_port, 1, clients=1)
        stack.flush()
        time.sleep(0.5)
        results["idle_rss_api_kb"] = rss_kb(stack.api.pid)

        print("2 sequential enqueue", flush=True)

        def sequential():
            with CPUMeter({"api": stack.api.pid, "redis": stack.redis.pid}) as meter:
                r = bench_tool("sequential", "--addr", stack.addr, "--queue", "bench", "--count", n_seq)
            r["cpu_us_per_job"] = meter.per_job_us(n_seq)
            stack.flush()
            return r
        results["seq"] = median_of_runs(sequential)

        print("3 concurrent enqueue (wrk)", flush=True)

        def concurrent():
            with PeakRSS(stack.api.pid) as peak, CPUMeter({"api": stack.api.pid, "redis": stack.redis.pid}) as meter:
                r = wrk(stack.api_port, "bench", wrk_s)
            r["peak_rss_api_kb"] = peak.peak
            r["cpu_us_per_job"] = meter.per_job_us(r["rate"] * wrk_s)
            stack.flush()
            return r
        results["conc"] = median_of_runs(concurrent)

        print("4 batch enqueue", flush=True)
        # Four clients: with two, Redis idled while both batches were being
        # parsed or rendered by the API; 100 batches each, ~2.5 s.
        n_batches = 25 if QUICK else 100

        def batch():
            with CPUMeter({"api": stack.api.pid, "redis": stack.redis.pid}) as meter:
                r = bench_tool("batch", "--addr", stack.addr, "--queue", "bench",
                               "--batches", n_batches, "--size", 1000, "--connections", 4)
            r["cpu_us_per_job"] = meter.per_job_us(r["jobs"])
            stack.flush()
            return r
        results["batch"] = median_of_runs(batch)

        print("9 Redis memory per pending job", flush=True)

        def memory_per_job():
            bench_tool("sequential", "--addr", stack.addr, "--queue", "mem", "--count", 1)
            before = used_memory(stack.redis_port)
            bench_tool("batch", "--addr", stack.addr, "--queue", "mem", "--batches", 100, "--size", 1000)
            after = used_memory(stack.redis_port)
            stack.flush()
            return {"bytes": (after - before) / 100_000}
        mem = median_of_runs(memory_per_job, "bytes")
        results["mem_per_job"], results["mem_per_job_runs"] = mem["bytes"], mem["runs"]
        results["mem_payload_bytes"] = len("null")

        print("7 idle worker memory", flush=True)

        def idle_worker():
            w = stack.worker(1, 16)
            time.sleep(2)
            kb, anon = rss_kb(w.pid), rss_kb(w.pid, "RssAnon")
            stop(w)
            return {"kb": kb, "anon_kb": anon}
        idle = median_of_runs(idle_worker, "kb")
        results["idle_rss_worker_kb"], results["idle_rss_worker_kb_runs"] = idle["kb"], idle["runs"]
        results["idle_anon_worker_kb"] = idle["anon_kb"]

        print("5 drain 1x16", flush=True)
        results["drain1"] = median_of_runs(lambda: drain(stack, 1, 16, n_drain))
        print("5 drain 2x16", flush=True)
        results["drain2"] = median_of_runs(lambda: drain(stack, 2, 16, n_drain))

        print("6 latency", flush=True)

        def latency():
            stack.flush()
            w = stack.worker(1, 16)
            time.sleep(1.5)
            r = bench_tool("latency", "--addr", stack.addr, "--queue", "bench", "--redis-url", stack.url,
                           "--count", 500 if QUICK else 2000, "--rate", 200)
            stop(w)
            return r
        results["latency"] = median_of_runs(latency, "p50_us", also=("p99_us",))

        for key, name, available, measure, missing in (
                ("sidekiq", "Sidekiq", bench_peers.available, bench_peers.sidekiq,
                 "not installed (apt-get install ruby-sidekiq)"),
                ("bullmq", "BullMQ (Python)", bench_peers.bullmq_available, bench_peers.bullmq,
                 "(pip bullmq) could not be installed")):
            if not available():
                print(f"peer: {name} {missing}; skipped", flush=True)
                continue
            print(f"peer: {name} on this machine", flush=True)
            stack.flush()
            results[key] = peer_medians(lambda: measure(stack.redis_port, n_seq, n_drain, n_drain))

        # Depth is compared with an empty-queue run made just before it: on a
        # shared machine, rates drift over the minutes between scenarios 3/5
        # and this one, and that drift is not what this scenario measures.
        print(f"8 depth: {depth} pending jobs in another priority", flush=True)

        def depth_round():
            r = {"drain2_empty": drain(stack, 2, 16, n_drain)}
            r["drain2"] = drain(stack, 2, 16, n_drain, extra_low=depth)
            # The same, started as soon as the jobs are in, while Redis may
            # still be moving its key table (see settle).
            r["drain2_unsettled"] = drain(stack, 2, 16, n_drain, extra_low=depth, settled=False)
            stack.flush()
            r["conc_empty"] = wrk(stack.api_port, "bench", wrk_s)
            stack.flush()
            bench_tool("batch", "--addr", stack.addr, "--queue", "bench", "--batches", depth // 1000 // 2,
                       "--size", 1000, "--connections", 2)
            settle(stack.redis_port)
            r["conc"] = wrk(stack.api_port, "bench", wrk_s)
            stack.flush()
            r["drain_ratio"] = ratio(r["drain2"]["rate"], r["drain2_empty"]["rate"])
            r["unsettled_ratio"] = ratio(r["drain2_unsettled"]["rate"], r["drain2_empty"]["rate"])
            r["redis_us"] = {k: r[k]["cpu_us_per_job"]["redis"] for k in ("drain2_empty", "drain2", "drain2_unsettled")}
            r["conc_ratio"] = ratio(r["conc"]["rate"], r["conc_empty"]["rate"])
            return r
        rounds = [depth_round() for _ in range(ROUNDS)]
        # Each ratio is the median of the rounds' ratios (each against the
        # empty run just before it); the rates shown are those of that round.
        dd = median_of(rounds, "drain_ratio")
        dc = median_of(rounds, "conc_ratio")
        results["depth_drain2"], results["depth_drain2_empty"] = dd["drain2"], dd["drain2_empty"]
        results["depth_conc"], results["depth_conc_empty"] = dc["conc"], dc["conc_empty"]
        results["depth_drain_ratios"], results["depth_conc_ratios"] = dd["runs"], dc["runs"]
        results["depth_unsettled_ratios"] = [x["unsettled_ratio"] for x in rounds]
        results["depth_redis_us"] = [x["redis_us"] for x in rounds]
        results["depth_settle_s"] = [x["drain2"]["settle_s"] for x in rounds]
    finally:
        stack.close()
        stop_all()

    print("10 Redis Cluster: Redis CPU per job on each primary against one Redis", flush=True)
    import bench_cluster  # its own Redis nodes; imported here, it imports this module
    # Three whole runs; the figures shown are the run with the median phased ratio (the target's).
    results["cluster"] = median_of([bench_cluster.scenario(24_000 if QUICK else 120_000) for _ in range(ROUNDS)],
                                   "phased_worst_primary_ratio", also=("worst_primary_ratio",))

    print("11 security: HTTPS and tokens on concurrent enqueue", flush=True)
    import bench_security
    results["security"] = bench_security.scenario(seconds=3 if QUICK else 5, rounds=2 if QUICK else 3)
    results["security"]["redis_tls"] = bench_security.redis_tls_scenario(
        seconds=3 if QUICK else 5, rounds=2 if QUICK else 3, jobs=20_000 if QUICK else 50_000)
    results["security"]["encryption"] = bench_security.encryption_scenario(
        seconds=3 if QUICK else 5, rounds=2 if QUICK else 3, jobs=20_000 if QUICK else 50_000)

    print("12 streaming: chunk delay, 1,000 idle streams, a flooding handler", flush=True)
    import bench_streaming
    results["streaming"] = bench_streaming.scenario(quick=QUICK)

    print("13 flow control: limits and groups on the drain; one-shot, persistent and HTTP handlers", flush=True)
    import bench_flow
    results["flow"] = bench_flow.scenario(quick=QUICK)

    print("14 flat as the work grows: a long drain per slice; depth", flush=True)
    import bench_scale
    results["scale"] = bench_scale.scenario(quick=QUICK)

    print("15 cost per job against the floors: nginx, a bare LPUSH", flush=True)
    import bench_cost
    results["cost"] = bench_cost.scenario(quick=QUICK)

    print("16 latency: a client's call to the handler's start, against Sidekiq", flush=True)
    import bench_latency
    results["latency_handler"] = bench_latency.scenario(quick=QUICK)

    out = ROOT / "docs" / "benchmarks.md"
    out.parent.mkdir(exist_ok=True)
    (ROOT / ".spool").mkdir(exist_ok=True)
    (ROOT / ".spool" / "bench-results.json").write_text(json.dumps(results, indent=2))
    out.write_text(render(results))
    print(f"wrote {out}")
    print(render_table(results))
    print(render_peer(results))


def ratio(x, base):
    return x / base if base else 0


TARGETS = [
    # (key, label, value(r), unit, target text, ok(r))
    ("seq", "2 sequential enqueue", lambda r: r["seq"]["rate"], "jobs/s", "≥ 0.16 × LPUSH",
     lambda r: ratio(r["seq"]["rate"], r["lpush"]) >= 0.16),
    ("conc", "3 concurrent enqueue (64 conns)", lambda r: r["conc"]["rate"], "jobs/s", "≥ 0.8 × LPUSH, p99 ≤ 5 ms",
     lambda r: ratio(r["conc"]["rate"], r["lpush"]) >= 0.8 and r["conc"]["p99_ms"] <= 5),
    ("batch", "4 batch enqueue (1,000/request)", lambda r: r["batch"]["rate"], "jobs/s", "≥ 2.1 × LPUSH",
     lambda r: ratio(r["batch"]["rate"], r["lpush"]) >= 2.1),
    ("drain2", "5 drain, 2 processes × 16", lambda r: r["drain2"]["rate"], "jobs/s", "≥ 0.35 × LPUSH",
     lambda r: ratio(r["drain2"]["rate"], r["lpush"]) >= 0.35),
]


def render_table(r):
    base = r["lpush"]
    rows = ["| scenario | figure | ratio to LPUSH | target | met |", "|---|---|---|---|---|"]
    for key, label, value, unit, target, ok in TARGETS:
        v = value(r)
        rows.append(f"| {label} | {v:,.0f} {unit}{spread(r[key])} | {ratio(v, base):.2f} | {target} | "
                    f"{'yes' if ok(r) else '**no**'} |")
    d1 = r["drain1"]["rate"]
    rows.append(f"| 5 drain, 1 process × 16 | {d1:,.0f} jobs/s{spread(r['drain1'])} | {ratio(d1, base):.2f} | – | – |")
    lat = r["latency"]
    lat_ok = lat["p50_us"] <= 500 and lat["p99_us"] <= 1500
    rows.append(f"| 6 enqueue-to-start latency | p50 {lat['p50_us'] / 1000:.2f} ms{spread(lat, 'runs', ms)}, "
                f"p99 {lat['p99_us'] / 1000:.2f} ms{spread(lat, 'p99_us_runs', ms)}, max {lat['max_us'] / 1000:.2f} ms | – | p50 ≤ 0.5 ms, p99 ≤ 1.5 ms | {'yes' if lat_ok else '**no**'} |")
    iw, ia = r["idle_rss_worker_kb"] / 1024, r["conc"]["peak_rss_api_kb"] / 1024
    own = f" (its own memory {r['idle_anon_worker_kb'] / 1024:.1f} MB, the rest mapped code that sibling processes share)" \
        if r.get("idle_anon_worker_kb") else ""
    rows.append(f"| 7 memory | idle worker {iw:.1f} MB{spread(r, 'idle_rss_worker_kb_runs', mb)}{own}, idle API {r['idle_rss_api_kb'] / 1024:.1f} MB, API peak under load "
                f"{ia:.1f} MB, worker peak draining {r['drain2']['peak_rss_kb'] / 1024:.1f} MB | – | idle worker ≤ 10 MB, "
                f"API ≤ 40 MB | {'yes' if iw <= 10 and ia <= 40 else '**no**'} |")
    dc = ratio(r["depth_conc"]["rate"], r["depth_conc_empty"]["rate"])
    dd = ratio(r["depth_drain2"]["rate"], r["depth_drain2_empty"]["rate"])
    rows.append(f"| 8 depth (1M pending) | enqueue {r['depth_conc']['rate']:,.0f}/s ({dc:.2f} × empty"
                f"{spread(r, 'depth_conc_ratios', '{:.2f}')}), drain {r['depth_drain2']['rate']:,.0f}/s ({dd:.2f} × empty"
                f"{spread(r, 'depth_drain_ratios', '{:.2f}')}) | – | ≥ 0.95 × empty | "
                f"{'yes' if dc >= 0.95 and dd >= 0.95 else '**no**'} |")
    extra = r["mem_per_job"] - r["mem_payload_bytes"]
    rows.append(f"| 9 Redis memory per pending job | {r['mem_per_job']:.0f} bytes{spread(r, 'mem_per_job_runs', '{:.0f}')} "
                f"({extra:.0f} beyond the payload) | – | "
                f"≤ 300 bytes beyond payload | {'yes' if extra <= 300 else '**no**'} |")
    return "\n".join(rows)


def render(r):
    c = r["conc"]
    return f"""# Spool benchmarks

Generated by `make bench` ({'quick run' if QUICK else 'full run'}) on {r['date']}.

- Machine: {r['machine']}; Redis, the API, the workers and the load generators share these cores.
- Versions: Redis {r['versions']['redis']}; {r['versions']['swift']}; {r['versions']['wrk']}; Spool {r['versions']['spool']}.
- Binaries: `{BIN}` (`make bench` builds them as the container image does: release,
  `--static-swift-stdlib`).
- Baseline (same run): `redis-benchmark -t lpush -c 50 -P 1` = **{r['lpush']:,.0f}** requests/s{lpush_spread(r)};
  with `-P 16` = {r['lpush_p16']:,.0f} requests/s. Every throughput below is also given as a ratio to the
  unpipelined figure, because absolute numbers drift between runs and machines.

## Results

{medians_text(r)}

{render_table(r)}

Details:
- 2: `spool-bench sequential --count {r['seq']['jobs']}` (one keep-alive connection, one job per request):
  {r['seq']['rate']:,.0f} jobs/s. For scale: one client doing bare LPUSH round trips to Redis
  (`redis-benchmark -t lpush -c 1`) managed {r['lpush_c1']:,.0f}/s here; a sequential enqueue makes two round
  trips in a row (client → API, API → Redis), so even with no work at all it could not pass
  {r['lpush_c1'] / 2:,.0f}/s ({ratio(r['lpush_c1'] / 2, r['lpush']):.2f} × LPUSH). CPU per job: {cpu_text(r['seq'])}.
- 3: `{c['command']}` (body `{{"type":"noop"}}`): {c['rate']:,.0f} jobs/s, p50 {c['p50_ms']:.2f} ms,
  p99 {c['p99_ms']:.2f} ms, non-2xx answers {c['non_2xx']}. CPU per job: {cpu_text(c)}; on {os.cpu_count()} cores
  that caps the rate near {cap(c):,.0f}/s ({ratio(cap(c), r['lpush']):.2f} × LPUSH) whatever the scheduling.
- 4: `spool-bench batch --size 1000 --connections 4` ({r['batch']['jobs']:,} jobs from 4 keep-alive clients):
  {r['batch']['rate']:,.0f} jobs/s. CPU per job:
  {cpu_text(r['batch'])}.
- 5: {r['drain1']['jobs']:,} noop jobs enqueued first, then, once Redis has finished resizing its key table
  (`DEBUG HTSTATS`; see 8), `spool-worker --processes P --concurrency 16`;
  time until the queue's processed counter in Redis reached the total: 1 × 16 {r['drain1']['seconds']:.2f} s,
  2 × 16 {r['drain2']['seconds']:.2f} s. Every job is fetched with a lease and completed by a script that
  checks it (reliable fetch), as in production. CPU per job (2 × 16): {cpu_text(r['drain2'])}.
- 6: `spool-bench latency --count {r['latency']['jobs']} --rate 200` to an idle worker (1 × 16):
  started_at − created_at of each job, both stamped by Redis' clock in microseconds.
- 7: RSS from /proc (VmRSS; the idle worker's own memory is its RssAnon); peaks sampled every 50 ms during
  scenarios 3 and 5.
- 8: scenario 5 (2 × 16) with {('100,000' if QUICK else '1,000,000')} low-priority jobs pending in the same queue, and
  scenario 3 with as many jobs already pending in the queue it enqueues to; each compared with the
  same scenario on an empty queue run just before it (drain {r['depth_drain2_empty']['rate']:,.0f}/s,
  enqueue {r['depth_conc_empty']['rate']:,.0f}/s), so that drift over the run does not count.{unsettled_text(r)}
- 9: `INFO memory` before and after 100,000 jobs `{{"type":"noop"}}` (payload `null`, 4 bytes).

{render_cluster(r)}

{scenario_text(r, "bench_security", "security")}

## Streaming (scenario 12; `make bench-streaming` alone)

{scenario_text(r, "bench_streaming", "streaming")}

## Flow control (scenario 13; `make bench-flow` alone)

{scenario_text(r, "bench_flow", "flow")}

## Flat as the work grows (scenario 14; `make bench-scale` alone)

{scenario_text(r, "bench_scale", "scale")}

## Cost per job against the floors (scenario 15; `make bench-cost` alone)

{scenario_text(r, "bench_cost", "cost")}

## From the client's call to the handler (scenario 16; `make bench-latency` alone)

{scenario_text(r, "bench_latency", "latency_handler")}

{render_peer(r)}

{notes()}"""


def unsettled_text(r):
    """Scenario 8's drain started as soon as the deep queue was filled."""
    runs = r.get("depth_unsettled_ratios")
    if not runs:
        return ""
    waits = settle_text(r.get("depth_settle_s", []))
    cost = ""
    if r.get("depth_redis_us"):
        def med(k):
            return statistics.median(x[k] for x in r["depth_redis_us"])
        cost = (f" Redis CPU per drained job, medians: empty {med('drain2_empty'):.1f} µs, deep at rest "
                f"{med('drain2'):.1f} µs, deep started at once {med('drain2_unsettled'):.1f} µs.")
    return f"""
  Every drain starts once Redis has finished resizing its key table: the deep queue's jobs take the table
  past a power of two (2^20 for a million), and Redis then moves them to a table twice the size bit by bit
  (it took {waits} s here). The same drain started as soon as the jobs were in ran at
  {statistics.median(runs):.2f} × empty{spread(r, 'depth_unsettled_ratios', '{:.2f}')}.{cost} A drain
  started before the move is done pays for what is left of it, whatever the keys are (docs/performance-notes.md
  measured about 4–5 µs of Redis CPU per job while it lasts); how much is left when the workers start varies
  from run to run. The deep enqueue also starts at rest, but its own 10 s of jobs take the table past 2^20
  again: that run pays for a move."""


def medians_text(r):
    """What the brackets in the results hold (runs before medians had none)."""
    if not r["seq"].get("runs"):
        return "Each figure of scenarios 2 to 9 is from one run."
    return (f"Scenarios 2 to 9 and the peers ran {ROUNDS} times each: every rate, p50, ratio and memory figure in the\n"
            "table is the median, with the runs in brackets in the order they ran; the figures beside a median (p99,\n"
            "max, peaks, CPU per job) come from the same run as it. The idle API's RSS is one reading.")


def lpush_spread(r):
    """The baseline's 3 runs, and whether one was disturbed (over 15% from the median)."""
    runs = r.get("lpush_runs")
    if not runs:
        return ""
    text = f" (median of {', '.join(f'{x:,.0f}' for x in runs)}"
    off = [x for x in runs if abs(x - r["lpush"]) > 0.15 * r["lpush"]]
    if off:
        text += f"; **disturbed**: {', '.join(f'{x:,.0f}' for x in off)} lies over 15% from the median"
    return text + ")"


def scenario_text(r, module, key):
    """The section of a scenario kept in a script of its own (its `render`),
    from its figures under `key`."""
    return importlib.import_module(module).render(r.get(key))


def render_cluster(r):
    """Scenario 10 (scripts/bench_cluster.py)."""
    c = r.get("cluster")
    if not c:
        return "## Redis Cluster\n\nNot measured in this run."
    def listed(values):
        return ", ".join(f"{v:g}" for v in values)
    return f"""## Redis Cluster

{c['jobs']:,} noop jobs enqueued in batches over {c['queues']} queues (4 per primary), then drained by workers of 16
loops, on a 3-primary cluster (no replicas) and on one redis-server, in the same run. Redis CPU seconds
(`INFO cpu`) per 100,000 jobs; target: the busiest primary ≤ 0.4 × the single Redis (the load splits evenly).
{f"The whole scenario ran {len(c['runs'])} times; the figures are those of the run with the median phased ratio, the ratios of every run in brackets." if c.get('runs') else ""}

- Phased (one primary's queues drained at a time, one Redis busy at a time as in the single run): each primary
  {listed(c['phased_per_primary_cpu_s_per_100k'])}, the single Redis {c['phased_single_cpu_s_per_100k']:g}: the busiest
  primary **{c['phased_worst_primary_ratio']:.2f} ×**{spread(c, 'runs', '{:.2f}')}.
- Mixed (one worker over all 12 queues, all primaries busy at once on the 2 shared cores): each primary
  {listed(c['per_primary_cpu_s_per_100k'])}, the single Redis {c['single_cpu_s_per_100k']:g}: the busiest
  **{c['worst_primary_ratio']:.2f} ×**{spread(c, 'worst_primary_ratio_runs', '{:.2f}')}. The primaries took {listed(c['script_call_share_per_primary'])} of the script
  calls ({c['script_calls_per_job']:g} per job; {c['single_script_calls_per_job']:g} on one Redis), but each call cost
  {c['usec_per_script_call']:g} µs there against {c['single_usec_per_script_call']:g} µs on the single Redis and
  {c['one_node_cluster_usec_per_script_call']:g} µs on a one-node cluster (CPU per 100,000 jobs
  {c['one_node_cluster_cpu_s_per_100k']:g}, {(c['one_node_cluster_cpu_s_per_100k'] / c['single_cpu_s_per_100k'] - 1) * 100:+.0f}% against
  the single Redis): most of the difference is three Redis processes sharing two cores with the load, not
  cluster mode.

Wall time (2 shared cores, not a throughput figure): mixed cluster {c['cluster_seconds']:g} s, single
{c['single_seconds']:g} s."""


def render_peer(r):
    """The comparison with Sidekiq measured in the same run (bench_peers.py)."""
    sk = r.get("sidekiq")
    if not sk:
        return "## Against Sidekiq on this machine\n\nNot measured in this run: `sidekiq` was not installed."
    d = sk["drain"]
    rows = [
        ("sequential enqueue, one job per call", r["seq"], sk["seq"], "≈ 1.5 ×",
         "Spool: HTTP to the API, which runs a script in Redis; Sidekiq: `Sidekiq::Client.push` straight to Redis"),
        ("batch enqueue, 1,000 jobs per call", r["batch"], sk["bulk"], "≈ 2 ×",
         "Spool: 4 HTTP clients; Sidekiq: one `push_bulk` client (as the issue measured it)"),
        ("batch enqueue, 4 clients each", r["batch"], sk["bulk4"], "–",
         "Spool: 4 HTTP clients; Sidekiq: 4 `push_bulk` client processes at once"),
        ("drain, 2 processes", r["drain2"], d, "≈ 2 ×",
         f"Spool: 2 × 16 loops, leased (reliable) fetch; Sidekiq: 2 × {d['threads']} threads, BRPOP fetch"),
    ]
    lines = ["## Against Sidekiq on this machine", "",
             f"Sidekiq {sk['version']} (Debian's `ruby-sidekiq`), measured in this run against the same Redis "
             "by `scripts/bench_peers.py`. The issue sets some targets as multiples of Sidekiq measured on "
             "another machine; the last column is that aim.", "",
             "| scenario | Spool | Sidekiq | Spool ÷ Sidekiq | aim | how |", "|---|---|---|---|---|---|"]
    for label, spool, peer, aim, how in rows:
        lines.append(f"| {label} | {rate_text(spool)} | {rate_text(peer)} | {ratio(spool['rate'], peer['rate']):.2f} | "
                     f"{aim} | {how} |")
    lines.append(f"| idle worker process RSS | {r['idle_rss_worker_kb'] / 1024:.1f} MB | {d['idle_rss_mb']:.1f} MB | "
                 f"{ratio(r['idle_rss_worker_kb'] / 1024, d['idle_rss_mb']):.2f} | ≤ 10 MB against ≈ 30 MB | "
                 "Spool: 16 loops; Sidekiq: 10 threads, after its drain |")
    bq = r.get("bullmq")
    if bq:
        b = bq["drain"]
        lines += ["", f"BullMQ {bq['version']} (its Python port, PyPI `bullmq`; `scripts/peers/bullmq_bench.py`), same "
                  "Redis, same run:", "", "| scenario | Spool | BullMQ | Spool ÷ BullMQ | how |", "|---|---|---|---|---|"]
        for label, spool, peer, how in [
                ("sequential enqueue, one job per call", r["seq"], bq["seq"], "BullMQ: `Queue.add` from one asyncio client"),
                ("batch enqueue, 1,000 jobs per call", r["batch"], bq["bulk"], "BullMQ: `addBulk` from one client"),
                ("batch enqueue, 4 clients each", r["batch"], bq["bulk4"], "BullMQ: 4 `addBulk` client processes"),
                ("drain, 2 processes", r["drain2"], b,
                 f"BullMQ: 2 workers × concurrency {b['concurrency']}, timed until every job is in its completed set")]:
            lines.append(f"| {label} | {rate_text(spool)} | {rate_text(peer)} | {ratio(spool['rate'], peer['rate']):.2f} | {how} |")
        lines.append(f"| idle worker process RSS | {r['idle_rss_worker_kb'] / 1024:.1f} MB | {b['idle_rss_mb']:.1f} MB | "
                     f"{ratio(r['idle_rss_worker_kb'] / 1024, b['idle_rss_mb']):.2f} | after its drain |")
    lines += ["", f"Sidekiq's LPUSH-relative figures here: sequential {ratio(sk['seq']['rate'], r['lpush']):.2f} ×, "
              f"push_bulk {ratio(sk['bulk']['rate'], r['lpush']):.2f} ×, drain {ratio(d['rate'], r['lpush']):.2f} × "
              "LPUSH (the issue measured 0.10 ×, 1.06 × and 0.17 × on its machine). The Sidekiq drain is timed "
              "from the first job taken until its list is empty (Sidekiq keeps no per-job state in Redis to "
              "wait for); a crash of a Sidekiq process loses the jobs it had taken."]
    return "\n".join(lines)


def rate_text(result):
    """`41,000 jobs/s (runs ...)`: a median rate with its runs."""
    return f"{result['rate']:,.0f} jobs/s{spread(result)}"


def cpu_text(result):
    """`api 27.1 µs, redis 11.9 µs, ...` from a result's cpu_us_per_job."""
    names = {"api": "spool-api", "redis": "Redis", "client": "load generator", "workers": "workers"}
    cpu = result.get("cpu_us_per_job", {})
    return ", ".join(f"{names.get(k, k)} {v:.1f} µs" for k, v in cpu.items()) or "not measured"


def cap(result):
    """Jobs/s the machine's cores could sustain at the measured CPU per job."""
    total = sum(result.get("cpu_us_per_job", {}).values())
    return os.cpu_count() * 1e6 / total if total else 0


def notes():
    """The hand-kept profile notes (docs/performance-notes.md), appended so
    that one document holds the figures and the reasons behind them."""
    path = ROOT / "docs" / "performance-notes.md"
    return path.read_text() if path.exists() else ""


def save_and_render(name, result, render):
    """A scenario run alone (`make bench-<name>`): its figures in
    .spool/bench-<name>.json, its section printed."""
    (ROOT / ".spool").mkdir(exist_ok=True)
    (ROOT / ".spool" / f"bench-{name}.json").write_text(json.dumps(result, indent=2))
    print(render(result))


def render_again():
    """`bench.py --render`: rewrites docs/benchmarks.md from the last run's
    figures (.spool/bench-results.json), e.g. after editing the profile notes."""
    r = json.loads((ROOT / ".spool" / "bench-results.json").read_text())
    (ROOT / "docs" / "benchmarks.md").write_text(render(r))
    print(render_table(r))


if __name__ == "__main__":
    if sys.argv[1:] == ["--render"]:
        render_again()
        sys.exit(0)
    try:
        main()
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
