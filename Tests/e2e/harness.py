"""Test harness: throwaway redis-server on a free loopback port, the real
spool-api and spool-worker binaries, and a small HTTP client.

Everything started here is stopped when the test ends, whatever happens.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("SPOOL_BIN_DIR", ROOT / ".build" / "debug"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Polls predicate until it returns a truthy value; fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (ConnectionError, OSError, http.client.HTTPException):
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


class Redis:
    """A redis-server of our own, in a temp dir, on a free port."""

    def __init__(self, aof=False, appendfsync="everysec", extra_args=()):
        self.dir = tempfile.mkdtemp(prefix="spool-redis-")
        self.port = free_port()
        self.aof = aof
        self.appendfsync = appendfsync
        self.extra_args = list(extra_args)
        self.proc = None
        self.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--appendonly", "yes" if self.aof else "no", "--appendfsync", self.appendfsync,
                "--daemonize", "no", "--loglevel", "warning", *self.extra_args]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.ping(), timeout=10, what="redis-server to start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def cli(self, *args):
        """Runs one command with redis-cli; returns its stdout, stripped."""
        out = subprocess.run(["redis-cli", "-p", str(self.port), "--raw", *map(str, args)],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip()

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def keys(self, pattern="*"):
        out = self.cli("--scan", "--pattern", pattern) if False else self.cli("KEYS", pattern)
        return [k for k in out.splitlines() if k]


class Process:
    """A spool binary running in the background, its output captured to a file."""

    def __init__(self, args, env, name):
        self.log_path = tempfile.mktemp(prefix=f"spool-{name}-", suffix=".log")
        self.log_file = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env)
        self.proc = subprocess.Popen(args, stdout=self.log_file, stderr=subprocess.STDOUT, env=full_env)

    @property
    def pid(self):
        return self.proc.pid

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_lines(self):
        """The JSON log lines written so far (non-JSON lines are skipped)."""
        lines = []
        for line in self.output().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
        return lines

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout):
        return self.proc.wait(timeout)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


class API(Process):
    def __init__(self, redis_url, env=None, args=()):
        self.port = free_port()
        # No drain on SIGTERM unless a test asks: it would add seconds to every stop.
        e = {"REDIS_URL": redis_url, "SPOOL_API_ADDR": f"127.0.0.1:{self.port}", "SPOOL_API_THREADS": "2",
             "SPOOL_API_DRAIN_MS": "0"}
        e.update(env or {})
        super().__init__([str(BIN_DIR / "spool-api"), *args], e, "api")
        wait_for(lambda: self.alive() and self.get("/healthz")[0] == 200, timeout=15,
                 what=f"spool-api on port {self.port}\n{self.output()}")

    def request(self, method, path, body=None, headers=None, timeout=10):
        """Returns (status, headers dict with lower-case names, parsed JSON body or raw text)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if body is not None and not isinstance(body, (bytes, str)):
                body = json.dumps(body)
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            raw = resp.read()
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            try:
                data = json.loads(raw) if raw else None
            except ValueError:
                data = raw.decode("utf-8", "replace")
            return resp.status, hdrs, data
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body if body is not None else b"", **kw)

    def enqueue(self, queue, job):
        status, _, data = self.post(f"/v1/queues/{queue}/jobs", job)
        assert status == 201, (status, data)
        return data

    def job(self, job_id):
        status, _, data = self.get(f"/v1/jobs/{job_id}")
        assert status == 200, (status, data)
        return data

    def wait_state(self, job_id, states, timeout=20):
        if isinstance(states, str):
            states = {states}
        return wait_for(lambda: (lambda j: j if j["state"] in states else None)(self.job(job_id)),
                        timeout=timeout, what=f"job {job_id} to reach {states}")


class Worker(Process):
    def __init__(self, redis_url, queues="default", concurrency=2, env=None, args=()):
        e = {"REDIS_URL": redis_url, "SPOOL_QUEUES": queues, "SPOOL_CONCURRENCY": str(concurrency)}
        e.update(env or {})
        super().__init__([str(BIN_DIR / "spool-worker"), *args], e, "worker")
        wait_for(lambda: "spool-worker started" in self.output() or not self.alive(), timeout=15,
                 what="spool-worker to start")
        assert self.alive(), self.output()
