#!/usr/bin/env python3
"""What a limit that does not bind, and groups, cost Redis, in instructions (`make bench-ir`).

On a shared machine a drain's jobs/s moves by more than a limit costs, and so
does a script's time per call. Instructions do not: Redis runs under
callgrind (valgrind), and one client replays the worker's complete-and-fetch
calls, 5 completions and 5 claims per call, for 3,000 jobs: plain jobs, jobs
naming a limit defined with concurrency 100,000 (never reached), and jobs
spread over 1,000 groups. The counts are zeroed after the enqueue, so only
the drain's calls are counted. Two runs of the same script agree to within
0.5% (job ids and Redis' hash seeds differ).

The script replayed is the one the worker sends: a real worker drains a few
jobs after SCRIPT FLUSH, and MONITOR shows the complete-and-fetch script's
text when the worker loads it again.

Writes .spool/bench-ir.json; prints instructions per job of each drain and
its ratio to plain.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
import bench_flow  # noqa: E402

JOBS = 3000
PER_CALL = 5


class Resp:
    """A minimal Redis client (RESP2): enough for the replay."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.buf = b""

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n + 2:
            self.buf += self.sock.recv(1 << 16)
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            return None if int(rest) < 0 else self.exact(int(rest))
        if kind == b"*":
            return None if int(rest) < 0 else [self.reply() for _ in range(int(rest))]
        raise RuntimeError(f"unexpected reply {line[:40]!r}")

    def call(self, *args):
        self.send(*args)
        return self.reply()


def monitor_tokens(line):
    """The arguments of one MONITOR line, unescaped (Redis quotes each, with
    C-style escapes and \\xHH for other bytes)."""
    s = line[line.index('] ') + 2:]
    simple = {'n': '\n', 'r': '\r', 't': '\t', 'a': '\a', 'b': '\b'}
    out, i = [], 0
    while i < len(s):
        if s[i] != '"':
            i += 1
            continue
        i += 1
        buf = bytearray()
        while s[i] != '"':
            c = s[i]
            if c == '\\':
                n = s[i + 1]
                if n == 'x':
                    buf.append(int(s[i + 2:i + 4], 16))
                    i += 4
                    continue
                buf += simple.get(n, n).encode('latin-1')
                i += 2
            else:
                buf += c.encode('latin-1')
                i += 1
        i += 1
        out.append(bytes(buf))
    return out


def worker_script():
    """The complete-and-fetch script's text, as the worker sends it."""
    stack = bench.Stack()
    try:
        bench_flow.put_limit(stack.addr, "roomy", {"concurrency": 100_000})
        bench_flow.enqueue(stack.addr, [{"type": "noop", "limit": "roomy"}] * 50)
        mon = Resp(stack.redis_port)
        Resp(stack.redis_port).call("SCRIPT", "FLUSH")
        mon.send("MONITOR")
        mon.reply()
        lines = []
        reader = threading.Thread(target=read_monitor, args=(mon, lines), daemon=True)
        reader.start()
        w = stack.worker(1, 16)
        bench.bench_tool("wait-processed", "--redis-url", stack.url, "--queue", "bench", "--target", 50)
        bench.stop(w)
        time.sleep(0.5)
        for line in list(lines):
            if '"EVAL"' in line[:80] and 'local function admit_in_call' in line:
                return monitor_tokens(line)[1]
        raise RuntimeError("the worker never sent the complete-and-fetch script")
    finally:
        stack.close()


def read_monitor(conn, lines):
    try:
        while True:
            lines.append(conn.line().decode('latin-1'))
    except (OSError, ConnectionError):
        return


def queue_keys(q):
    p = f"spool:{{{q}}}:".encode()
    prefixes = [p + b"job:", p + b"idem:", p + b"throughput:", p + b"waiting:", b"spool:finished"]
    keys = [p + k for k in (b"pending:urgent", b"pending:high", b"pending:normal", b"pending:low", b"scheduled", b"lease",
                            b"dead", b"paused", b"wake", b"stats")] + [p + b"receipt:replay/0"]
    return prefixes, keys


def limit_keys(name):
    return [f"spool:limit:{{{name}}}{s}".encode() for s in ("", ":holders", ":starts", ":waiting")]


def drain(script, kind):
    """Instructions Redis spent per job replaying the drain's calls: `kind`
    plain, limit (every job names the limit) or groups (1,000 of them)."""
    limited = kind == "limit"
    d = tempfile.mkdtemp(prefix="spool-bench-ir-")
    port, api_port = bench.free_port(), bench.free_port()
    out = f"{d}/callgrind.out"
    redis = bench.start(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "redis-server", "--port", str(port),
                         "--bind", "127.0.0.1", "--dir", d, "--save", "", "--appendonly", "no"])
    bench.wait_port(port, timeout=120)
    api = bench.start([str(bench.BIN / "spool-api"), "--addr", f"127.0.0.1:{api_port}", "--log-level", "warning"],
                      {"REDIS_URL": f"redis://127.0.0.1:{port}"})
    bench.wait_port(api_port, timeout=120)
    addr = f"127.0.0.1:{api_port}"
    try:
        for _ in range(200):  # the API connects to a Redis slowed down by valgrind
            try:
                bench_flow.put_limit(addr, "roomy", {"concurrency": 100_000})
                break
            except AssertionError:
                time.sleep(0.3)
        jobs = {"plain": [{"type": "noop"}] * JOBS, "limit": [{"type": "noop", "limit": "roomy"}] * JOBS,
                "groups": [{"type": "noop", "group": f"tenant{i % 1000}"} for i in range(JOBS)]}[kind]
        bench_flow.enqueue(addr, jobs)
        r = Resp(port)
        sha = r.call("SCRIPT", "LOAD", script)
        prefixes, qkeys = queue_keys("bench")
        ran, token, done = [], 1, 0

        def call():
            nonlocal ran, token
            token += 1
            args = prefixes + [b"30000", b"replay", b"100", str(token).encode(), str(PER_CALL).encode()]
            keys = qkeys + (limit_keys("roomy") if limited else [])
            if limited:
                # One limit, no type mappings; the runs' slots go back as they are.
                args += [b"1", b"bench", b"0", b"0", b"11", b"roomy", str(len(ran)).encode()]
                args += [job_id + b"@" + attempt for job_id, attempt in ran] + [b"0"]
            else:
                args.append(b"0")
            for job_id, attempt in ran:
                args += [job_id, attempt, b"null"]
            reply = r.call("EVALSHA", sha, len(keys), *keys, *args)
            fetched = reply[2:] if limited else reply[1:]
            n = len(ran)
            ran = [(fetched[k], fetched[k + 1]) for k in range(2, len(fetched), 3)] if fetched[0] == b"jobs" else []
            return n

        call()
        subprocess.run(["callgrind_control", "--zero", str(redis.pid)], capture_output=True, check=True)
        while ran:
            done += call()
        subprocess.run(["callgrind_control", "--dump", str(redis.pid)], capture_output=True, check=True)
        time.sleep(0.5)
    finally:
        bench.stop(api)
        bench.stop(redis)
    try:
        if done != JOBS:
            raise RuntimeError(f"the replay ran {done} jobs of {JOBS}")
        dumps = sorted(Path(d).glob("callgrind.out.*"))
        totals = [int(line.split()[1]) for line in dumps[0].read_text().splitlines() if line.startswith("summary:")]
        return round(totals[0] / done)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def measure():
    """Instructions per job of the plain and the limited replay; None
    without valgrind (make bench and make bench-ir install it)."""
    if not shutil.which("valgrind"):
        return None
    source = os.environ.get("SPOOL_IR_SCRIPT")
    script = Path(source).read_bytes() if source else worker_script()
    plain, limit, groups = (drain(script, kind) for kind in ("plain", "limit", "groups"))
    return {"jobs": JOBS, "per_call": PER_CALL, "plain_ir_per_job": plain, "limit_ir_per_job": limit,
            "limit_over_plain": round(limit / plain, 3), "groups_ir_per_job": groups,
            "groups_over_plain": round(groups / plain, 3)}


def main():
    result = measure()
    if result is None:
        sys.exit("valgrind is missing: apt-get install valgrind (make bench-ir does)")
    (bench.ROOT / ".spool").mkdir(exist_ok=True)
    (bench.ROOT / ".spool" / "bench-ir.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"Redis instructions per job: plain {result['plain_ir_per_job']:,}, limit {result['limit_ir_per_job']:,} "
          f"({result['limit_over_plain']} x plain), 1,000 groups {result['groups_ir_per_job']:,} "
          f"({result['groups_over_plain']} x plain)")


if __name__ == "__main__":
    main()
