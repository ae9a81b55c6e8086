"""Fixtures of the chaos suite: the e2e harness (real redis-server, spool-api and
spool-worker on loopback), a scale switch, a raw Redis client, process helpers,
and the figure collector.

CHAOS_SCALE=short (default, part of `make test`): shortened faults 1, 2 and 4 and
the fuzz tests. CHAOS_SCALE=full (`make chaos`): every test at full size. Tests
marked `@pytest.mark.full` are skipped in short mode.
"""
import os
import signal
import socket
import subprocess
import sys
import types
from datetime import datetime, timezone
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))
sys.path.insert(0, str(HERE))

from harness import API, Process, Redis, Worker, wait_for, free_port, BIN_DIR  # noqa: E402
from figures import Figures  # noqa: E402
from helpers import percentile, rss_mb  # noqa: E402  (shared with the e2e tests)

SCALE = os.environ.get("CHAOS_SCALE", "short").strip().lower() or "short"
if SCALE not in ("short", "full"):
    raise pytest.UsageError(f"CHAOS_SCALE must be 'short' or 'full', not {SCALE!r}")


def pick(short, full):
    """The short-scale or the full-scale value of a setting."""
    return full if SCALE == "full" else short


# ---------------------------------------------------------------------------
# pytest hooks: the `full` marker, outcomes kept on the item, figures session

def pytest_configure(config):
    config.addinivalue_line("markers", "full: a chaos test that runs only with CHAOS_SCALE=full (make chaos)")


def pytest_collection_modifyitems(config, items):
    if SCALE == "full":
        return
    skip = pytest.mark.skip(reason="full-scale chaos test; run with CHAOS_SCALE=full")
    for item in items:
        if "full" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    figs = _FIGURES.get("session")
    if figs is None:
        return
    if rep.when == "call" or (rep.when == "setup" and (rep.failed or rep.skipped)):
        figs.outcome(_short_id(item.nodeid), rep.outcome, round(rep.duration, 2), _failure_message(rep))


def _short_id(nodeid):
    return nodeid.split("chaos/", 1)[-1]


def _failure_message(rep):
    """The first `E` lines of a failure (what the assertion said), for the report."""
    if not rep.failed:
        return None
    lines = [l[1:].strip() for l in str(rep.longrepr).splitlines() if l.startswith("E ")]
    text = " ".join(l for l in lines[:3] if l) or str(rep.longrepr).splitlines()[-1]
    return text[:500]


_FIGURES = {}


@pytest.fixture(scope="session")
def figures():
    """Where tests write what they measured (see figures.py)."""
    if "session" not in _FIGURES:
        _FIGURES["session"] = Figures(SCALE)
    return _FIGURES["session"]


def pytest_sessionstart(session):
    if "session" not in _FIGURES:
        _FIGURES["session"] = Figures(SCALE)


def pytest_sessionfinish(session, exitstatus):
    figs = _FIGURES.get("session")
    if figs is not None:
        figs.finish(exitstatus)


@pytest.fixture
def scale():
    return SCALE


# ---------------------------------------------------------------------------
# A small RESP client: pipelining thousands of reads through redis-cli would be slow.

class RespError(Exception):
    pass


class RespClient:
    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = self.sock.makefile("rb")

    def close(self):
        try:
            self.reader.close()
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def _encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _read(self):
        line = self.reader.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.reader.read(n + 2)[:-2]
            return data.decode("utf-8", "replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ConnectionError(f"bad RESP line {line!r}")

    def call(self, *args):
        self.sock.sendall(self._encode(args))
        reply = self._read()
        if isinstance(reply, RespError):
            raise reply
        return reply

    def pipeline(self, commands, chunk=1000):
        replies = []
        for i in range(0, len(commands), chunk):
            part = commands[i:i + chunk]
            self.sock.sendall(b"".join(self._encode(c) for c in part))
            replies.extend(self._read() for _ in part)
        return replies

    def states(self, queue, ids, prefix="spool"):
        """job id -> state (None when the hash is gone)."""
        replies = self.pipeline([["HGET", f"{prefix}:{{{queue}}}:job:{i}", "state"] for i in ids])
        return dict(zip(ids, replies))

    def running_on(self, queue, worker_id, prefix="spool"):
        """Ids in the queue's lease set whose job hash names `worker_id`."""
        leased = self.call("ZRANGE", f"{prefix}:{{{queue}}}:lease", 0, -1) or []
        owners = self.pipeline([["HGET", f"{prefix}:{{{queue}}}:job:{i}", "worker"] for i in leased]) if leased else []
        return [i for i, w in zip(leased, owners) if w == worker_id]


# ---------------------------------------------------------------------------
# Plain helpers, reached through the `kit` fixture

def parse_ts(ts):
    """RFC 3339 with ms (log `ts`, API timestamps) -> epoch seconds."""
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()



def ms(seconds):
    return None if seconds is None else round(seconds * 1000.0, 1)


def write_script(path, text):
    path = Path(path)
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def log_lines_with(procs, msg, job_id=None, contains=False):
    """Log lines of every process in `procs` whose msg is `msg` (or contains it)."""
    out = []
    for p in procs:
        for line in p.log_lines():
            m = line.get("msg", "")
            if (msg in m if contains else m == msg) and (job_id is None or line.get("job_id") == job_id):
                out.append(line)
    return out


def worker_id(worker, timeout=10):
    line = wait_for(lambda: next((l for l in worker.log_lines() if l.get("msg") == "spool-worker started"), None),
                    timeout=timeout, what="the spool-worker started line")
    return line["worker_id"]


def proc_stat(pid):
    """(state, ppid, pgrp) of a process from /proc, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[2])


def zombies_of(ppid):
    """Pids in state Z whose parent is `ppid`."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            st = proc_stat(d.name)
            if st and st[0] == "Z" and st[1] == ppid:
                out.append(int(d.name))
    return out


def is_handler_reaper(pid):
    """The worker's one long-lived child: the /bin/sh loop that kills handler
    process groups if the worker dies (Sources/Worker/Handlers/HandlerReaper.swift)."""
    try:
        return b"while read -r op pgid" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def children_of(ppid):
    """Child processes of `ppid`, leaving out the worker's handler reaper."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            st = proc_stat(d.name)
            if st and st[1] == ppid and not is_handler_reaper(d.name):
                out.append(int(d.name))
    return out



def pgrep(pattern):
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split() if int(p) != os.getpid()]


def kill_pids(pids, sig=signal.SIGKILL):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def is_spool_worker(pid):
    try:
        return b"spool-worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.fixture
def kit():
    return types.SimpleNamespace(
        pick=pick, scale=SCALE, RespClient=RespClient, RespError=RespError, parse_ts=parse_ts,
        percentile=percentile, ms=ms, write_script=write_script, log_lines_with=log_lines_with,
        worker_id=worker_id, proc_stat=proc_stat, zombies_of=zombies_of, children_of=children_of,
        rss_mb=rss_mb, pgrep=pgrep, kill_pids=kill_pids, wait_for=wait_for, free_port=free_port,
        BIN_DIR=BIN_DIR,
    )


# ---------------------------------------------------------------------------
# Redis and the processes of one test

def _release_redis(r):
    if r.proc and r.proc.poll() is None:
        try:
            os.kill(r.proc.pid, signal.SIGCONT)  # a stall test may have left it stopped
        except ProcessLookupError:
            pass
    r.cleanup()


@pytest.fixture
def redis():
    r = Redis()
    yield r
    _release_redis(r)


@pytest.fixture
def aof_redis():
    """Redis with appendonly yes + appendfsync always: what "accepted means durable" needs."""
    r = Redis(aof=True, appendfsync="always")
    yield r
    _release_redis(r)


def _passed(request):
    rep = getattr(request.node, "rep_call", None)
    return rep is not None and rep.passed


class Spawner:
    """Starts spool processes against one Redis and stops every one of them at the end."""

    def __init__(self, redis_url):
        self.redis_url = redis_url
        self.started = []

    def api(self, env=None, args=()):
        p = API(self.redis_url, env=env, args=args)
        self.started.append(p)
        return p

    def worker(self, queues="default", concurrency=2, env=None, args=()):
        p = Worker(self.redis_url, queues=queues, concurrency=concurrency, env=env, args=args)
        self.started.append(p)
        return p

    def supervisor(self, processes, queues="default", concurrency=2, env=None, args=()):
        """`spool-worker --processes N`; its children log to the same file."""
        e = {"REDIS_URL": self.redis_url, "SPOOL_QUEUES": queues, "SPOOL_CONCURRENCY": str(concurrency)}
        e.update(env or {})
        p = Process([str(BIN_DIR / "spool-worker"), "--processes", str(processes), *args], e, "supervisor")
        self.started.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.started):
            try:
                if p.alive():
                    os.kill(p.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            child_pids = []
            if "supervisor" in p.log_path:
                child_pids = [l.get("pid") for l in p.log_lines() if l.get("msg") == "worker process started"]
            p.stop()
            # Children a killed supervisor left behind (checked to be spool-workers: pids get reused).
            leftovers = [int(c) for c in child_pids if c and is_spool_worker(int(c))]
            kill_pids(leftovers)

    def remove_logs(self):
        for p in self.started:
            try:
                os.unlink(p.log_path)
            except OSError:
                pass


@pytest.fixture
def spawn(request, redis):
    s = Spawner(redis.url)
    yield s
    s.stop_all()
    if _passed(request):
        s.remove_logs()


@pytest.fixture
def aof_spawn(request, aof_redis):
    s = Spawner(aof_redis.url)
    yield s
    s.stop_all()
    if _passed(request):
        s.remove_logs()
