"""Sidekiq, measured by `make bench` on the same machine, Redis and run as Spool.

The issue's targets are partly set as multiples of Sidekiq 6.4 (the Debian
package) measured on another machine; how a Ruby client and a Go or Swift
server compare moves with the machine, so the comparison is made here, in the
same run. Sidekiq's own client and server are driven by
scripts/peers/sidekiq_bench.rb: the client enqueues `NoopJob`s straight into
Redis (one push per job from one client; push_bulk from one client, and from
four at once as Spool's batch scenario uses four HTTP clients), and two `sidekiq -c 10`
processes drain 100,000 of them, as in the issue.

Sidekiq's fetch (BRPOP) takes a job off the list with nothing left in Redis:
a crash loses the jobs it was running. Spool's drain figures include leasing
every job and checking the lease when recording it.
"""
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

JOB_FILE = Path(__file__).resolve().parent / "peers" / "sidekiq_bench.rb"
# BullMQ's Python port (PyPI `bullmq`, in the venv under .spool/), driven by
# scripts/peers/bullmq_bench.py: the same scenarios as Sidekiq's.
BULLMQ_FILE = Path(__file__).resolve().parent / "peers" / "bullmq_bench.py"
VENV_PY = Path(__file__).resolve().parent.parent / ".spool" / "venv" / "bin" / "python"
BULLMQ_VERSION = "3.4.4"


def available():
    return shutil.which("sidekiq") is not None and shutil.which("ruby") is not None


def version():
    out = subprocess.run(["ruby", "-e", 'require "sidekiq"; print Sidekiq::VERSION'], capture_output=True, text=True)
    return out.stdout.strip() or "?"


def bullmq_available():
    """Installs the pinned bullmq into the venv when missing; False when that fails."""
    if not VENV_PY.exists():
        return False
    check = [str(VENV_PY), "-c", "import bullmq"]
    if subprocess.run(check, capture_output=True).returncode != 0:
        subprocess.run([str(VENV_PY), "-m", "pip", "install", "-q", f"bullmq=={BULLMQ_VERSION}"], capture_output=True)
    return subprocess.run(check, capture_output=True).returncode == 0


def sidekiq_client(url):
    """The command line of Sidekiq's client (scripts/peers/sidekiq_bench.rb), up to its mode."""
    return ["ruby", str(JOB_FILE), url]


def bullmq_client(url):
    """The command line of BullMQ's client (scripts/peers/bullmq_bench.py), up to its mode."""
    return [str(VENV_PY), str(BULLMQ_FILE), url]


def _redis(port, command):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"{command}\r\n".encode())
        return int(s.recv(64)[1:].split(b"\r\n")[0])


def _llen(port, key):
    return _redis(port, f"LLEN {key}")


def _zcard(port, key):
    return _redis(port, f"ZCARD {key}")


def _flush(port):
    subprocess.run(["redis-cli", "-p", str(port), "FLUSHALL"], check=True, capture_output=True)


def clients(client, mode, count, parallel=1):
    """`parallel` processes of a peer's `client` (sidekiq_client, bullmq_client)
    at once, `count` jobs in all: the total over the time from the first push
    to the last (the interpreter's start excluded)."""
    procs = [subprocess.Popen([*client, mode, str(count // parallel)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for _ in range(parallel)]
    runs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    seconds = max(r["to"] for r in runs) - min(r["from"] for r in runs)
    jobs = sum(r["jobs"] for r in runs)
    return {"jobs": jobs, "clients": parallel, "seconds": seconds, "rate": jobs / seconds}


def sidekiq_workers(url, processes, threads):
    env = dict(os.environ, REDIS_URL=url)
    return [subprocess.Popen(["sidekiq", "-r", str(JOB_FILE), "-q", "bench", "-c", str(threads), "-e", "production"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(processes)]


def bullmq_workers(url, processes, concurrency):
    return [subprocess.Popen([*bullmq_client(url), "work", str(concurrency)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(processes)]


def stop_procs(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


def _rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _timed_drain(port, jobs, procs, waiting, finished, who):
    """Times a peer's workers `procs` from the first job taken (fewer than
    `jobs` left in the list `waiting`, polled every 5 ms) until `finished()`;
    then their RSS once idle. Stops them."""
    try:
        deadline = time.monotonic() + 300
        t0, taken_before = None, 0
        while time.monotonic() < deadline:
            left = _llen(port, waiting)
            if t0 is None and left < jobs:
                t0, taken_before = time.monotonic(), jobs - left
            if finished():
                break
            time.sleep(0.005)
        else:
            raise RuntimeError(f"{who} did not drain its queue within 300 s")
        seconds = time.monotonic() - t0
        time.sleep(2)
        rss = [_rss_mb(p.pid) for p in procs]
    finally:
        stop_procs(procs)
    rate = (jobs - taken_before) / seconds if seconds > 0 else 0
    return {"jobs": jobs, "processes": len(procs), "seconds": seconds, "rate": rate, "idle_rss_mb": max(rss)}


def drain(port, url, jobs, processes=2, threads=10):
    """Enqueues `jobs` with push_bulk, starts the Sidekiq processes and times
    until the list is empty (the last ≤ processes × threads jobs are then
    running, which takes microseconds for a no-op; Sidekiq keeps no per-job
    state in Redis to wait for)."""
    _flush(port)
    clients(sidekiq_client(url), "bulk", jobs)
    procs = sidekiq_workers(url, processes, threads)
    result = _timed_drain(port, jobs, procs, "queue:bench", lambda: _llen(port, "queue:bench") == 0, "sidekiq")
    return dict(result, threads=threads)


def bullmq_drain(port, url, jobs, processes=2, concurrency=10):
    """Enqueues `jobs` with addBulk, starts the workers and times until every
    job is in the completed set (BullMQ keeps finished jobs, as Spool does)."""
    _flush(port)
    clients(bullmq_client(url), "bulk", jobs)
    procs = bullmq_workers(url, processes, concurrency)
    result = _timed_drain(port, jobs, procs, "bull:bench:wait", lambda: _zcard(port, "bull:bench:completed") >= jobs,
                          "bullmq")
    return dict(result, concurrency=concurrency)


def _measure(client, port, n_seq, n_bulk):
    """Sequential, one bulk client and four, against the Redis on `port` (flushed between runs)."""
    out = {}
    for name, mode, count, parallel in (("seq", "seq", n_seq, 1), ("bulk", "bulk", n_bulk, 1), ("bulk4", "bulk", n_bulk, 4)):
        _flush(port)
        out[name] = clients(client, mode, count, parallel)
    return out


def sidekiq(port, n_seq, n_bulk, n_drain):
    """Every Sidekiq figure, against the Redis on `port` (flushed between runs)."""
    url = f"redis://127.0.0.1:{port}/0"
    result = dict(_measure(sidekiq_client(url), port, n_seq, n_bulk), version=version(), drain=drain(port, url, n_drain))
    _flush(port)
    return result


def bullmq(port, n_seq, n_bulk, n_drain):
    """Every BullMQ figure, against the Redis on `port` (flushed between runs)."""
    url = f"redis://127.0.0.1:{port}/0"
    result = dict(_measure(bullmq_client(url), port, n_seq, n_bulk), version=BULLMQ_VERSION,
                  drain=bullmq_drain(port, url, n_drain))
    _flush(port)
    return result
