"""Small helpers shared by the e2e test files (no fixtures here: see conftest.py)."""
import json
import re
import socket
import subprocess
import textwrap
import time

from harness import wait_for

TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

# Everything Spool stores, type by type, read in one atomic step.
_SNAPSHOT_LUA = """
local out = {}
for _, k in ipairs(redis.call('KEYS', '*')) do
  local t = redis.call('TYPE', k)['ok']
  local v
  if t == 'string' then v = redis.call('GET', k)
  elseif t == 'list' then v = redis.call('LRANGE', k, 0, -1)
  elseif t == 'hash' then v = redis.call('HGETALL', k)
  elseif t == 'set' then v = redis.call('SMEMBERS', k); table.sort(v)
  elseif t == 'zset' then v = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
  else v = t end
  out[#out + 1] = {k, t, v}
end
return cjson.encode(out)
"""


def redis_snapshot(redis):
    """Every key with its type and content, sorted: equal snapshots mean Redis was not changed."""
    text = redis.cli("EVAL", _SNAPSHOT_LUA, "0")
    entries = json.loads(text) if text else []
    if isinstance(entries, dict):  # cjson encodes an empty table as {}
        entries = []
    return sorted((k, t, json.dumps(v, sort_keys=True)) for k, t, v in entries)


def raw_http(port, data, timeout=5.0, shutdown_write=False):
    """Sends raw bytes to the API and returns everything it answers until it closes
    (or until the timeout). Returns (status, headers, body bytes) of the first response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if shutdown_write:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            chunks.append(chunk)
            raw = b"".join(chunks)
            if b"\r\n\r\n" in raw:
                head, _, body = raw.partition(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if m and len(body) >= int(m.group(1)):
                    break
    return parse_response(b"".join(chunks))


def parse_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1]) if lines and lines[0].startswith("HTTP/") else None
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    m = headers.get("content-length")
    if m is not None:
        body = body[: int(m)]
    return status, headers, body


def assert_error(resp, status, code, mentions=()):
    """Checks an error response: status, {"error":{"code","message"}} shape, and
    that the message names each string in `mentions`."""
    got_status, headers, data = resp
    assert got_status == status, f"expected {status} {code}, got {got_status}: {data!r}"
    assert isinstance(data, dict) and isinstance(data.get("error"), dict), f"not an error body: {data!r}"
    err = data["error"]
    assert err.get("code") == code, f"expected code {code}, got {err!r}"
    assert isinstance(err.get("message"), str) and err["message"], f"error without a message: {err!r}"
    for word in mentions:
        assert word in err["message"], f"error message does not mention {word!r}: {err['message']!r}"
    assert headers.get("content-type", "").startswith("application/json"), headers
    return err


def worker_id(worker):
    """The worker id from the worker's "spool-worker started" log line."""
    line = wait_for(lambda: next((l for l in worker.log_lines() if l.get("msg") == "spool-worker started"), None),
                    timeout=5, what="the spool-worker started line")
    return line["worker_id"]


def log_lines_with(proc, msg, job_id=None):
    return [l for l in proc.log_lines()
            if l.get("msg") == msg and (job_id is None or l.get("job_id") == job_id)]


def wait_log(proc, msg, job_id=None, timeout=10):
    return wait_for(lambda: log_lines_with(proc, msg, job_id), timeout=timeout,
                    what=f"log line {msg!r} (job {job_id})\n{proc.output()[-3000:]}")


def script(tmp_path, name, body):
    """Writes an executable handler script (body dedented) and returns its path."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(body).lstrip())
    path.chmod(0o755)
    return path


def pgrep(pattern):
    """Pids of processes whose command line matches `pattern` (pgrep -f never lists itself)."""
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def ms_between(a, b):
    """Milliseconds from RFC 3339 timestamp a to b."""
    from datetime import datetime
    fa = datetime.strptime(a, "%Y-%m-%dT%H:%M:%S.%fZ")
    fb = datetime.strptime(b, "%Y-%m-%dT%H:%M:%S.%fZ")
    return (fb - fa).total_seconds() * 1000


def percentile(values, p):
    """The p-th percentile (nearest rank) of `values`, None when there are none."""
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


def percentile_ms(seconds, q):
    """The q-th percentile of durations given in seconds, in milliseconds."""
    return (percentile(seconds, q) or 0.0) * 1000


def rss_mb(pid):
    """Resident memory of a process in MB, None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def metric_lines(text, name):
    """The sample lines of metric `name` in a Prometheus text exposition."""
    return [l for l in text.splitlines() if l.startswith(name + "{") or l.startswith(name + " ")]


def metric_sum(text, name, label=""):
    """The sum of the samples of `name` whose labels contain `label`."""
    return sum(float(l.split()[-1]) for l in metric_lines(text, name) if label in l)


def enqueue_many(api, queue, jobs):
    """Enqueues `jobs` in batches of 1,000; returns their ids in order."""
    ids = []
    for i in range(0, len(jobs), 1000):
        s, _, data = api.post(f"/v1/queues/{queue}/jobs/batch", {"jobs": jobs[i:i + 1000]})
        assert s == 201, (s, data)
        ids += [j["id"] for j in data["jobs"]]
    return ids
