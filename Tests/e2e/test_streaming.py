"""Streaming: a job's event log read as server-sent events (GET /v1/jobs/{id}/events,
GET /v1/queues/{queue}/events) by real clients: a Python SSE client from PyPI
(httpx-sse, run from the project's virtualenv) and curl -N. Handlers stream on fd 3."""
import json
import signal
import socket
import subprocess
import sys
import time

from harness import ROOT, wait_for
from helpers import TIMESTAMP_RE, log_lines_with, script

VENV_PY = ROOT / ".spool" / "venv" / "bin" / "python"
CLIENT = ROOT / "Tests" / "e2e" / "sse_client.py"

FAST_LEASE = {"SPOOL_HEARTBEAT_MS": "300", "SPOOL_LEASE_MS": "3000",
              "SPOOL_SHUTDOWN_GRACE_MS": "1000", "SPOOL_KILL_GRACE_MS": "300"}

# A Python handler that streams `n` words as chunks, `pause` seconds apart,
# then prints its result: the README's example, parameterised by the payload.
WORDS_HANDLER = """
    import json, os, sys, time
    job = json.load(sys.stdin)
    out = os.fdopen(3, "w", buffering=1)
    for i in range(job["n"]):
        out.write(json.dumps({"chunk": f"word{i}"}) + "\\n")
        if job.get("pause"):
            time.sleep(job["pause"])
    print(json.dumps({"words": job["n"]}))
"""


def sse(url, *args, timeout=60):
    """Runs the Python SSE client to the end of the stream; returns its events."""
    out = subprocess.run([str(VENV_PY), str(CLIENT), url, *args], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def start_sse(url, *args):
    return subprocess.Popen([str(VENV_PY), str(CLIENT), url, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def events_url(api, job_id, after=None):
    return f"http://127.0.0.1:{api.port}/v1/jobs/{job_id}/events" + (f"?after={after}" if after else "")


def states(events):
    return [(e["data"]["state"], e["data"]["attempt"]) for e in events if e["event"] == "state"]


def chunks(events):
    return [e["data"]["chunk"] for e in events if e["event"] == "chunk"]


def words_worker(spawn, tmp_path, env=None, concurrency=2):
    s = script(tmp_path, "words.py", WORDS_HANDLER)
    return spawn.worker(env=env, concurrency=concurrency, args=["--handler", f"words={sys.executable} {s}"])


def test_handler_streams_500_chunks_in_order_then_the_result(spawn, tmp_path):
    api = spawn.api()
    job = api.enqueue("default", {"type": "words", "payload": {"n": 500, "pause": 0.001}})
    client = start_sse(events_url(api, job["id"]))
    words_worker(spawn, tmp_path)
    out, err = client.communicate(timeout=60)
    assert client.returncode == 0, err
    events = [json.loads(l) for l in out.splitlines()]
    assert chunks(events) == [f"word{i}" for i in range(500)]
    assert states(events) == [("queued", 0), ("running", 1), ("succeeded", 1)], states(events)
    assert events[-1]["event"] == "state" and events[-1]["data"]["result"] == {"words": 500}, events[-1]
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids) and all(ids), "every event has its own id"
    assert all(TIMESTAMP_RE.match(e["data"]["at"]) for e in events)
    assert all(e["data"]["attempt"] == 1 for e in events if e["event"] == "chunk")

    # A finished job replays the same log and closes at once.
    t0 = time.monotonic()
    again = sse(events_url(api, job["id"]))
    assert again == events
    assert time.monotonic() - t0 < 5


def test_client_resumes_on_another_replica_with_last_event_id(spawn, tmp_path):
    api1, api2 = spawn.api(), spawn.api()
    words_worker(spawn, tmp_path)
    job = api1.enqueue("default", {"type": "words", "payload": {"n": 500, "pause": 0.004}})
    first = sse(events_url(api1, job["id"]), "--max", "150")
    assert len(first) == 150
    # The job is still streaming: the rest comes partly replayed, partly live.
    assert api1.job(job["id"])["state"] == "running"
    rest = sse(events_url(api2, job["id"]), "--last-event-id", first[-1]["id"])
    got = chunks(first + rest)
    assert got == [f"word{i}" for i in range(500)], "no chunk lost or repeated"
    ids = [e["id"] for e in first + rest]
    assert len(ids) == len(set(ids))
    assert states(first + rest)[-1] == ("succeeded", 1)
    # ?after= does the same as the header.
    tail = sse(events_url(api2, job["id"], after=first[-1]["id"]))
    assert tail == rest


def test_retried_job_keeps_each_attempts_chunks_and_says_when_to_start_over(spawn, tmp_path):
    s = script(tmp_path, "flaky.sh", """
        echo '{"chunk": "first try"}' >&3
        echo '{"event": "phase", "data": {"step": 1}}' >&3
        if [ "$SPOOL_ATTEMPT" = "1" ]; then echo 'boom' >&2; exit 3; fi
        echo '{"chunk": "second try"}' >&3
        echo '"ok"'
    """)
    api = spawn.api()
    spawn.worker(env=FAST_LEASE, args=["--handler", f"flaky=sh {s}"])
    job = api.enqueue("default", {"type": "flaky", "backoff_ms": 200, "max_attempts": 3})
    events = sse(events_url(api, job["id"]))
    kinds = [(e["event"], e["data"].get("state") or e["data"].get("chunk") or e["data"].get("data"), e["data"]["attempt"])
             for e in events]
    assert kinds == [
        ("state", "queued", 0), ("state", "running", 1),
        ("chunk", "first try", 1), ("phase", {"step": 1}, 1),
        ("state", "scheduled", 1), ("state", "queued", 1), ("state", "running", 2),
        ("chunk", "first try", 2), ("phase", {"step": 1}, 2), ("chunk", "second try", 2),
        ("state", "succeeded", 2),
    ], kinds
    retry = events[4]["data"]
    assert "boom" in retry["error"]["message"] and retry["error"]["attempt"] == 1, retry
    assert TIMESTAMP_RE.match(retry["run_at"]), retry
    assert events[-1]["data"]["result"] == "ok"


def test_cancelled_job_stream_ends_with_the_cancel(spawn):
    api = spawn.api()
    spawn.worker(env=FAST_LEASE)
    job = api.enqueue("default", {"type": "sleep", "payload": {"ms": 20000}})
    client = start_sse(events_url(api, job["id"]))
    api.wait_state(job["id"], "running")
    # The built-in sleep reports progress every 250 ms: it reaches the stream.
    time.sleep(0.8)
    t0 = time.monotonic()
    assert api.post(f"/v1/jobs/{job['id']}/cancel")[0] == 200
    out, err = client.communicate(timeout=10)
    assert time.monotonic() - t0 < 2, "the stream ends with the cancel"
    events = [json.loads(l) for l in out.splitlines()]
    assert states(events)[-1][0] == "cancelled", events
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[0]["data"]["progress"]["message"] == "sleeping", events


def test_expired_job_has_no_stream_and_leaves_nothing(spawn, redis, tmp_path):
    api = spawn.api()
    words_worker(spawn, tmp_path)
    job = api.enqueue("default", {"type": "words", "payload": {"n": 3}, "result_ttl_s": 1})
    events = sse(events_url(api, job["id"]))
    assert chunks(events) == ["word0", "word1", "word2"]
    assert any(":events:" in k for k in redis.keys("spool:*"))
    wait_for(lambda: api.get(f"/v1/jobs/{job['id']}")[0] == 404, timeout=5, what="the job to expire")
    status, _, body = api.get(f"/v1/jobs/{job['id']}/events")
    assert status == 404 and body["error"]["code"] == "not_found", body
    assert sse(events_url(api, job["id"]))[0]["status"] == 404
    assert not [k for k in redis.keys("spool:*") if ":events:" in k], "the log expires with the job"


def test_curl_follows_a_stream_to_its_end(spawn, tmp_path):
    api = spawn.api()
    words_worker(spawn, tmp_path)
    job = api.enqueue("default", {"type": "words", "payload": {"n": 5, "pause": 0.1}})
    out = subprocess.run(["curl", "-sN", "-D", "-", "--max-time", "20", events_url(api, job["id"])],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition("\n\n")  # text mode: CRLF reads as \\n
    assert head.startswith("HTTP/1.1 200") and "content-type: text/event-stream" in head.lower(), head
    assert "cache-control: no-cache" in head.lower()
    blocks = [b for b in body.strip().split("\n\n") if b]
    assert blocks[0].startswith("id: ") and "\nevent: state\ndata: " in blocks[0], blocks[0]
    assert [json.loads(b.split("data: ", 1)[1])["chunk"] for b in blocks if "event: chunk" in b] == \
        [f"word{i}" for i in range(5)]
    assert '"state":"succeeded"' in blocks[-1]


def test_idle_stream_gets_keepalive_comments(spawn):
    api = spawn.api(env={"SPOOL_STREAM_KEEPALIVE_S": "1"})
    job = api.enqueue("default", {"type": "noop"})  # no worker: stays queued
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as s:
        s.sendall(f"GET /v1/jobs/{job['id']}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = b""
        deadline = time.monotonic() + 4
        while b": keepalive" not in got and time.monotonic() < deadline:
            got += s.recv(4096)
        assert b": keepalive" in got, got
        assert b"Transfer-Encoding: chunked" in got
        metrics = api.get("/metrics")[2]
        assert open_streams(metrics) == 1, [l for l in metrics.splitlines() if "event_streams" in l]
    wait_for(lambda: open_streams(api.get("/metrics")[2]) == 0, timeout=5, what="the closed stream to count off")


def open_streams(metrics):
    return float(next(l.split()[1] for l in metrics.splitlines() if l.startswith("spool_api_event_streams ")))


def test_bad_cursor_and_unknown_job_are_clear_errors(spawn, redis):
    api = spawn.api()
    job = api.enqueue("default", {"type": "noop"})
    before = sorted(redis.keys("spool:*"))
    for path, headers in [(f"/v1/jobs/{job['id']}/events?after=yesterday", {}),
                          (f"/v1/jobs/{job['id']}/events", {"Last-Event-ID": "12-ab"}),
                          ("/v1/queues/default/events?after=-1", {})]:
        status, _, body = api.get(path, headers=headers)
        assert status == 400 and body["error"]["code"] == "invalid_field", (path, body)
        assert "event id" in body["error"]["message"]
    status, _, body = api.get("/v1/jobs/default~01M8Q39YH1BZ3S575BSMBG3CKB/events")
    assert status == 404, body
    status, _, body = api.get("/v1/jobs/default~01M8Q39YH1BZ3S575BSMBG3CKB/events?limit=3")
    assert status == 400, body
    assert sorted(redis.keys("spool:*")) == before, "bad requests change nothing"


def test_full_event_log_keeps_its_start_and_says_what_was_dropped(spawn, tmp_path):
    s = script(tmp_path, "flood.py", """
        import os
        out = os.fdopen(3, "w")
        for i in range(20000):
            out.write('{"chunk": %d}\\n' % i)
        out.flush()
        print('"flooded"')
    """)
    api = spawn.api()
    w = spawn.worker(env={"SPOOL_EVENT_LOG_MAX_EVENTS": "100"}, args=["--handler", f"flood={sys.executable} {s}"])
    job = api.enqueue("default", {"type": "flood"})
    events = sse(events_url(api, job["id"]))
    got = chunks(events)
    # queued and running take two entries of the 100.
    assert got == list(range(98)), got[:5]
    dropped = [e for e in events if e["event"] == "dropped"]
    assert len(dropped) == 1 and "100 entries" in dropped[0]["data"]["reason"], dropped
    assert events[-1]["data"]["state"] == "succeeded" and events[-1]["data"]["result"] == "flooded"
    full = log_lines_with(w, "event log full: later chunks and events of this job are dropped", job["id"])
    assert len(full) == 1 and full[0]["max_events"] == 100, full


def test_queue_stream_shows_every_jobs_state_changes(spawn, tmp_path):
    api = spawn.api()
    words_worker(spawn, tmp_path)
    client = start_sse(f"http://127.0.0.1:{api.port}/v1/queues/default/events", "--max", "9")
    time.sleep(0.5)  # the follower is in place (a new follower starts at now)
    jobs = [api.enqueue("default", {"type": "words", "payload": {"n": 2}})["id"] for _ in range(3)]
    out, err = client.communicate(timeout=20)
    assert client.returncode == 0, err
    events = [json.loads(l) for l in out.splitlines()]
    by_job = {}
    for e in events:
        assert e["event"] == "state" and set(e["data"]) == {"id", "state", "attempt", "at"}, e
        by_job.setdefault(e["data"]["id"], []).append(e["data"]["state"])
    assert by_job == {j: ["queued", "running", "succeeded"] for j in jobs}, by_job


def test_a_job_nobody_follows_has_no_event_log(spawn, redis):
    api = spawn.api()
    spawn.worker()
    job = api.enqueue("default", {"type": "echo", "payload": {"x": 1}})
    api.wait_state(job["id"], "succeeded")
    assert not [k for k in redis.keys("spool:*") if "events" in k]


def readme_stream_handler():
    """The README's streaming example handler (the python block after `streamwords.py`)."""
    text = (ROOT / "README.md").read_text()
    after = text[text.index("(`streamwords.py`):"):]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_streaming_example_works_with_curl(spawn, tmp_path):
    handler = tmp_path / "streamwords.py"
    handler.write_text(readme_stream_handler())
    api = spawn.api()
    spawn.worker(args=["--handler", f"words={sys.executable} {handler}"])
    job = api.enqueue("default", {"type": "words", "payload": {"text": "tokens arrive one by one"}})
    t0 = time.monotonic()
    curl = subprocess.Popen(["curl", "-sN", "--max-time", "20", events_url(api, job["id"])], stdout=subprocess.PIPE,
                            text=True)
    first_chunk_at = None
    lines = []
    for line in curl.stdout:
        lines.append(line)
        if first_chunk_at is None and line.startswith("event: chunk"):
            first_chunk_at = time.monotonic() - t0
    curl.wait(timeout=5)
    body = "".join(lines)
    words = [json.loads(b.split("data: ", 1)[1])["chunk"] for b in body.split("\n\n") if "event: chunk" in b]
    assert words == ["tokens ", "arrive ", "one ", "by ", "one "], body
    assert "event: stats\ndata: " in body and '"data":{"words":5}' in body
    assert '"result":{"words":5}' in body.strip().split("\n\n")[-1]
    # Words arrive as they are written (0.1 s apart), not all at the end.
    assert first_chunk_at is not None and first_chunk_at < 0.45, first_chunk_at


def test_slow_client_is_cut_off_with_where_to_resume_and_loses_nothing(spawn, tmp_path):
    s = script(tmp_path, "big.py", """
        import os
        out = os.fdopen(3, "w")
        pad = "x" * 200
        for i in range(30000):
            out.write('{"chunk": {"i": %d, "pad": "%s"}}\\n' % (i, pad))
        out.flush()
        print('"done"')
    """)
    api = spawn.api(env={"SPOOL_STREAM_MAX_BUFFERED_BYTES": "65536"})
    spawn.worker(env={"SPOOL_EVENT_LOG_MAX_EVENTS": "50000", "SPOOL_EVENT_LOG_MAX_BYTES": "16777216"},
                 args=["--handler", f"big={sys.executable} {s}"])
    job = api.enqueue("default", {"type": "big"})
    api.wait_state(job["id"], "succeeded", timeout=60)
    # A client that reads nothing for a while: small receive buffer, ~7 MB to replay.
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", api.port))
    s.sendall(f"GET /v1/jobs/{job['id']}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    time.sleep(2)
    s.settimeout(10)
    got = b""
    while True:
        data = s.recv(1 << 16)
        if not data or got.endswith(b"0\r\n\r\n"):
            break
        got += data
        if got.endswith(b"0\r\n\r\n"):
            break
    s.close()
    assert b"event: cutoff" in got, got[-500:]
    cutoff = got[got.index(b"event: cutoff"):].split(b"data: ", 1)[1].split(b"\n", 1)[0]
    resume = json.loads(cutoff)["resume_after"]
    # Decode what arrived (chunked framing removed) and resume from the cut.
    body = got.split(b"\r\n\r\n", 1)[1]
    text, rest = b"", body
    while rest:
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            break
        text, rest = text + rest[:size], rest[size + 2:]
    first = [json.loads(b.split(b"data: ", 1)[1])["chunk"]["i"] for b in text.split(b"\n\n") if b"event: chunk" in b]
    assert 0 < len(first) < 30000, len(first)
    rest_events = sse(events_url(api, job["id"]), "--last-event-id", resume, timeout=120)
    assert first + [e["data"]["chunk"]["i"] for e in rest_events if e["event"] == "chunk"] == list(range(30000))


def test_a_dropped_pubsub_connection_loses_no_event(spawn, redis, tmp_path):
    api = spawn.api()
    words_worker(spawn, tmp_path)
    job = api.enqueue("default", {"type": "words", "payload": {"n": 60, "pause": 0.02}})
    client = start_sse(events_url(api, job["id"]))
    time.sleep(0.4)
    # The API's pub/sub connections go; they come back and read what they missed.
    redis.cli("CLIENT", "KILL", "TYPE", "pubsub")
    out, err = client.communicate(timeout=30)
    events = [json.loads(l) for l in out.splitlines()]
    assert chunks(events) == [f"word{i}" for i in range(60)]
    assert states(events)[-1] == ("succeeded", 1)


def test_api_shutdown_ends_streams_and_they_resume_elsewhere(spawn):
    api1, api2 = spawn.api(), spawn.api()
    job = api1.enqueue("default", {"type": "noop"})  # no worker: the stream stays open
    client = start_sse(events_url(api1, job["id"]))
    time.sleep(0.5)
    t0 = time.monotonic()
    api1.signal(signal.SIGTERM)
    out, _ = client.communicate(timeout=10)
    assert time.monotonic() - t0 < 3, "a stream does not hold up the shutdown"
    api1.wait(10)
    events = [json.loads(l) for l in out.splitlines()]
    assert states(events) == [("queued", 0)]
    spawn.worker()
    rest = sse(events_url(api2, job["id"]), "--last-event-id", events[-1]["id"])
    assert states(rest) == [("running", 1), ("succeeded", 1)]


def test_an_overlong_line_is_dropped_whole_and_logged(spawn, tmp_path):
    s = script(tmp_path, "long.py", """
        import os
        out = os.fdopen(3, "w")
        out.write('{"chunk": "before"}\\n')
        out.write('{"chunk": "' + "y" * 70000 + '"}\\n')
        out.write('{"chunk": "after"}\\n')
        out.flush()
        print('"ok"')
    """)
    api = spawn.api()
    w = spawn.worker(args=["--handler", f"long={sys.executable} {s}"])
    job = api.enqueue("default", {"type": "long"})
    assert chunks(sse(events_url(api, job["id"]))) == ["before", "after"]
    assert [l["msg"] for l in w.log_lines() if "fd 3" in l.get("msg", "")] == ["dropped a line on fd 3 longer than 65536 bytes"]


def test_clients_joining_a_live_stream_from_the_start_get_everything(spawn, tmp_path):
    # Streams of one job on one loop share their reads: one that joins from
    # the start while a read for another, further on, is in flight must still
    # get the start. A fast handler keeps reads in flight most of the time.
    api = spawn.api(env={"SPOOL_API_THREADS": "1"})
    words_worker(spawn, tmp_path, env={"SPOOL_EVENT_LOG_MAX_EVENTS": "50000"})
    n = 20000
    job = api.enqueue("default", {"type": "words", "payload": {"n": n}})
    first = start_sse(events_url(api, job["id"]))
    api.wait_state(job["id"], "running")
    late = []
    for _ in range(8):
        time.sleep(0.05)
        late.append(start_sse(events_url(api, job["id"])))
    for client in [first] + late:
        out, err = client.communicate(timeout=60)
        assert client.returncode == 0, err
        events = [json.loads(l) for l in out.splitlines()]
        assert chunks(events) == [f"word{i}" for i in range(n)]
        assert states(events)[-1] == ("succeeded", 1)


def test_a_dead_job_retried_streams_on_past_its_old_end(spawn, tmp_path):
    marker = tmp_path / "ran-once"
    s = script(tmp_path, "once.sh", f"""
        if [ ! -e {marker} ]; then touch {marker}; echo '{{"chunk": "doomed"}}' >&3; exit 1; fi
        echo '{{"chunk": "lucky"}}' >&3
        echo '"ok"'
    """)
    api = spawn.api()
    spawn.worker(args=["--handler", f"once=sh {s}"])
    job = api.enqueue("default", {"type": "once", "max_attempts": 1})
    first = sse(events_url(api, job["id"]))
    assert states(first)[-1] == ("dead", 1) and chunks(first) == ["doomed"]
    # Reconnecting after the end: 204, the SSE way of saying "do not come back".
    status, _, body = api.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": first[-1]["id"]})
    assert status == 204 and not body, (status, body)
    assert api.post(f"/v1/jobs/{job['id']}/retry")[0] == 200
    again = sse(events_url(api, job["id"]))
    assert states(again) == [("queued", 0), ("running", 1), ("dead", 1), ("queued", 0), ("running", 1), ("succeeded", 1)]
    assert chunks(again) == ["doomed", "lucky"]


def test_an_http_1_0_client_gets_the_stream_unchunked_until_close(spawn):
    # nginx proxies with HTTP/1.0 unless told otherwise: no chunked encoding then.
    api = spawn.api()
    spawn.worker()
    job = api.enqueue("default", {"type": "echo", "payload": "x"})
    api.wait_state(job["id"], "succeeded")
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as s:
        s.sendall(f"GET /v1/jobs/{job['id']}/events HTTP/1.0\r\n\r\n".encode())
        got = b""
        while data := s.recv(65536):
            got += data
    head, _, body = got.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head, head
    assert body.startswith(b"id: ") and body.endswith(b'"result":"x"}\n\n'), body
