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


def available():
    return shutil.which("sidekiq") is not None and shutil.which("ruby") is not None


def version():
    out = subprocess.run(["ruby", "-e", 'require "sidekiq"; print Sidekiq::VERSION'], capture_output=True, text=True)
    return out.stdout.strip() or "?"


def _llen(port, key):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"LLEN {key}\r\n".encode())
        return int(s.recv(64)[1:].split(b"\r\n")[0])


def _flush(port):
    subprocess.run(["redis-cli", "-p", str(port), "FLUSHALL"], check=True, capture_output=True)


def _client(url, mode, count):
    out = subprocess.run(["ruby", str(JOB_FILE), url, mode, str(count)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _clients(url, mode, count, parallel):
    """`parallel` client processes at once, `count` jobs in all: the total
    over the time from the first push to the last (Ruby's start excluded)."""
    procs = [subprocess.Popen(["ruby", str(JOB_FILE), url, mode, str(count // parallel)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for _ in range(parallel)]
    runs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    seconds = max(r["to"] for r in runs) - min(r["from"] for r in runs)
    jobs = sum(r["jobs"] for r in runs)
    return {"jobs": jobs, "clients": parallel, "seconds": seconds, "rate": jobs / seconds}


def _rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def drain(port, url, jobs, processes=2, threads=10):
    """Enqueues `jobs` with push_bulk, starts the Sidekiq processes and times
    from the first job taken until the list is empty (polled every 5 ms; the
    last ≤ processes × threads jobs are then running, which takes microseconds
    for a no-op). Also returns the processes' RSS once idle."""
    _flush(port)
    _client(url, "bulk", jobs)
    env = dict(os.environ, REDIS_URL=url)
    procs = [subprocess.Popen(["sidekiq", "-r", str(JOB_FILE), "-q", "bench", "-c", str(threads), "-e", "production"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(processes)]
    try:
        deadline = time.monotonic() + 300
        t0 = None
        while time.monotonic() < deadline:
            left = _llen(port, "queue:bench")
            if t0 is None and left < jobs:
                t0, taken_before = time.monotonic(), jobs - left
            if left == 0:
                break
            time.sleep(0.005)
        else:
            raise RuntimeError("sidekiq did not drain its queue within 300 s")
        seconds = time.monotonic() - t0
        time.sleep(2)
        rss = [_rss_mb(p.pid) for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
    rate = (jobs - taken_before) / seconds if seconds > 0 else 0
    return {"jobs": jobs, "processes": processes, "threads": threads, "seconds": seconds, "rate": rate,
            "idle_rss_mb": max(rss)}


def sidekiq(port, n_seq, n_bulk, n_drain):
    """Every Sidekiq figure, against the Redis on `port` (flushed between runs)."""
    url = f"redis://127.0.0.1:{port}/0"
    _flush(port)
    seq = _client(url, "seq", n_seq)
    _flush(port)
    bulk = _clients(url, "bulk", n_bulk, parallel=1)
    _flush(port)
    bulk4 = _clients(url, "bulk", n_bulk, parallel=4)
    result = {"version": version(), "seq": seq, "bulk": bulk, "bulk4": bulk4, "drain": drain(port, url, n_drain)}
    _flush(port)
    return result


# BullMQ's Python port (PyPI `bullmq`, in the venv under .spool/), driven by
# scripts/peers/bullmq_bench.py: the same scenarios as Sidekiq's.
BULLMQ_FILE = Path(__file__).resolve().parent / "peers" / "bullmq_bench.py"
VENV_PY = Path(__file__).resolve().parent.parent / ".spool" / "venv" / "bin" / "python"
BULLMQ_VERSION = "3.4.4"


def bullmq_available():
    """Installs the pinned bullmq into the venv when missing; False when that fails."""
    if not VENV_PY.exists():
        return False
    check = [str(VENV_PY), "-c", "import bullmq"]
    if subprocess.run(check, capture_output=True).returncode != 0:
        subprocess.run([str(VENV_PY), "-m", "pip", "install", "-q", f"bullmq=={BULLMQ_VERSION}"], capture_output=True)
    return subprocess.run(check, capture_output=True).returncode == 0


def bullmq_client(url, mode, count, parallel=1):
    procs = [subprocess.Popen([str(VENV_PY), str(BULLMQ_FILE), url, mode, str(count // parallel)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for _ in range(parallel)]
    runs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    seconds = max(r["to"] for r in runs) - min(r["from"] for r in runs)
    jobs = sum(r["jobs"] for r in runs)
    return {"jobs": jobs, "clients": parallel, "seconds": seconds, "rate": jobs / seconds}


def bullmq_workers(url, processes, concurrency):
    return [subprocess.Popen([str(VENV_PY), str(BULLMQ_FILE), url, "work", str(concurrency)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(processes)]


def stop_procs(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


def _zcard(port, key):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"ZCARD {key}\r\n".encode())
        return int(s.recv(64)[1:].split(b"\r\n")[0])


def bullmq_drain(port, url, jobs, processes=2, concurrency=10):
    """Enqueues `jobs` with addBulk, starts the workers and times from the
    first job taken until every job is in the completed set (BullMQ keeps
    finished jobs, as Spool does). Also returns the processes' RSS once idle."""
    _flush(port)
    bullmq_client(url, "bulk", jobs)
    procs = bullmq_workers(url, processes, concurrency)
    try:
        deadline = time.monotonic() + 300
        t0, taken_before = None, 0
        while time.monotonic() < deadline:
            if t0 is None and _llen(port, "bull:bench:wait") < jobs:
                t0 = time.monotonic()
                taken_before = jobs - _llen(port, "bull:bench:wait")
            if _zcard(port, "bull:bench:completed") >= jobs:
                break
            time.sleep(0.005)
        else:
            raise RuntimeError("bullmq did not drain its queue within 300 s")
        seconds = time.monotonic() - t0
        time.sleep(2)
        rss = [_rss_mb(p.pid) for p in procs]
    finally:
        stop_procs(procs)
    rate = (jobs - taken_before) / seconds if seconds > 0 else 0
    return {"jobs": jobs, "processes": processes, "concurrency": concurrency, "seconds": seconds, "rate": rate,
            "idle_rss_mb": max(rss)}


def bullmq(port, n_seq, n_bulk, n_drain):
    """Every BullMQ figure, against the Redis on `port` (flushed between runs)."""
    url = f"redis://127.0.0.1:{port}/0"
    _flush(port)
    seq = bullmq_client(url, "seq", n_seq)
    _flush(port)
    bulk = bullmq_client(url, "bulk", n_bulk)
    _flush(port)
    bulk4 = bullmq_client(url, "bulk", n_bulk, parallel=4)
    result = {"version": BULLMQ_VERSION, "seq": seq, "bulk": bulk, "bulk4": bulk4, "drain": bullmq_drain(port, url, n_drain)}
    _flush(port)
    return result
