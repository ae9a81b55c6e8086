"""Handlers as users write them and as they misbehave (issue 11): commands with
commas and quotes, the kill grace for a script run through sh, noisy progress
output, non-UTF-8 results, chunked request bodies, lease-lost warnings that mean it."""
import json
import socket
import time

from helpers import ms_between, parse_response, script

WORKER_ENV = {"SPOOL_SHUTDOWN_GRACE_MS": "1000", "SPOOL_KILL_GRACE_MS": "300"}


def test_handlers_json_takes_commands_with_commas_and_quotes(spawn, tmp_path):
    api = spawn.api()
    handlers = {"pick": 'python3 -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({k: d[k] for k in (\'a\', \'b\')}))"',
                "plain": "cat"}
    spawn.worker(env={**WORKER_ENV, "SPOOL_HANDLERS_JSON": json.dumps(handlers)})
    job = api.enqueue("default", {"type": "pick", "payload": {"a": 1, "b": 2, "c": 3}})
    assert api.wait_state(job["id"], "succeeded")["result"] == {"a": 1, "b": 2}
    f = tmp_path / "handlers.json"
    f.write_text(json.dumps({"shout": "tr a-z A-Z"}))
    api2_queue = "files"
    spawn.worker(queues=api2_queue, env=WORKER_ENV, args=["--handlers-file", str(f)])
    job = api.enqueue(api2_queue, {"type": "shout", "payload": "hi, there"})
    assert api.wait_state(job["id"], "succeeded")["result"] == "HI, THERE"


def test_bad_handler_settings_name_the_source(redis):
    import os
    import subprocess
    from harness import BIN_DIR
    for env, args, words in (({"SPOOL_HANDLERS_JSON": "{not json"}, [], ["SPOOL_HANDLERS_JSON", "JSON"]),
                             ({"SPOOL_HANDLERS_JSON": '["cat"]'}, [], ["SPOOL_HANDLERS_JSON", "object"]),
                             ({"SPOOL_HANDLERS_JSON": '{"a b": "cat"}'}, [], ["SPOOL_HANDLERS_JSON", "a b"]),
                             ({}, ["--handlers-file", "/nonexistent/h.json"], ["--handlers-file", "/nonexistent/h.json"])):
        out = subprocess.run([str(BIN_DIR / "spool-worker"), *args], capture_output=True, text=True, timeout=10,
                             env={**os.environ, "REDIS_URL": redis.url, **env})
        assert out.returncode == 2, out
        for w in words:
            assert w in out.stderr, (w, out.stderr)


def test_a_script_run_through_sh_gets_its_kill_grace(spawn, tmp_path, marker):
    """`--handler t=sh script.sh`: on timeout the shell dies of SIGTERM at once;
    the script's own SIGTERM clean-up must still get SPOOL_KILL_GRACE_MS."""
    done_flag = tmp_path / "cleaned-up"
    s = script(tmp_path, "graceful.py", f"""
        import signal, sys, time
        def bye(*_):
            time.sleep(0.6)          # clean-up that takes a while
            open({str(done_flag)!r}, "w").write("yes")
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)
        time.sleep(60)  # {marker}
    """)
    wrapper = script(tmp_path, "run.sh", f"python3 {s}\necho after\n")
    api = spawn.api()
    spawn.worker(env={**WORKER_ENV, "SPOOL_KILL_GRACE_MS": "3000"}, args=["--handler", f"slow=sh {wrapper}"])
    job = api.enqueue("default", {"type": "slow", "timeout_ms": 700, "max_attempts": 1})
    dead = api.wait_state(job["id"], "dead", timeout=15)
    assert done_flag.exists(), "the handler was killed before its SIGTERM clean-up finished"
    took = ms_between(dead["started_at"], dead["finished_at"])
    assert 1200 <= took < 3500, took


def test_noisy_progress_output_is_truncated_and_rate_limited(spawn, tmp_path):
    s = script(tmp_path, "noisy.py", """
        import os, sys
        fd3 = os.fdopen(3, "wb")
        data = os.urandom(200_000)
        fd3.write(data.replace(b"\\0", b"x"))
        fd3.write(b"\\n" + b"garbage line\\n" * 50)
        fd3.flush()
        print('"ok"')
    """)
    api = spawn.api()
    w = spawn.worker(env=WORKER_ENV, args=["--handler", f"noisy=python3 {s}"])
    job = api.enqueue("default", {"type": "noisy"})
    api.wait_state(job["id"], "succeeded")
    lines = [l for l in w.output().splitlines() if job["id"] in l and "progress" in l]
    assert 1 <= len(lines) <= 5, f"{len(lines)} lines about progress output"
    assert max(len(l) for l in lines) < 1000, max(len(l) for l in lines)
    summary = [json.loads(l) for l in lines if "ignored malformed progress lines" in l]
    assert summary and summary[0]["count"] > 3, lines


def test_non_utf8_stdout_fails_the_job_with_a_clear_error(spawn, tmp_path):
    s = script(tmp_path, "binary.py", """
        import sys
        sys.stdout.buffer.write(b"ok so far \\xff\\xfe binary")
    """)
    api = spawn.api()
    spawn.worker(env=WORKER_ENV, args=["--handler", f"bin=python3 {s}"])
    job = api.enqueue("default", {"type": "bin", "max_attempts": 1})
    dead = api.wait_state(job["id"], "dead")
    assert "not UTF-8" in dead["error"]["message"] and "offset 10" in dead["error"]["message"], dead["error"]
    assert dead.get("result") is None


def _send_chunked(port, path, chunks, extra_headers=b""):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n" + extra_headers + b"\r\n")
        for c in chunks:
            s.sendall(b"%x;ext=1\r\n%s\r\n" % (len(c), c))
            time.sleep(0.01)
        s.sendall(b"0\r\nX-Trailer: yes\r\n\r\n")
        raw = b""
        while b"\r\n\r\n" not in raw or len(raw.partition(b"\r\n\r\n")[2]) < int(
                dict(l.split(b": ", 1) for l in raw.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]).get(b"Content-Length", b"0")):
            chunk = s.recv(65536)
            if not chunk:
                break
            raw += chunk
    status, headers, body = parse_response(raw)
    return status, headers, json.loads(body) if body else None


def test_chunked_request_bodies_are_accepted_with_the_same_limit(spawn):
    api = spawn.api(env={"SPOOL_MAX_BODY_BYTES": "4096"})
    body = json.dumps({"type": "noop", "payload": {"text": "chunked ✓"}}).encode()
    pieces = [body[i:i + 7] for i in range(0, len(body), 7)]
    status, headers, data = _send_chunked(api.port, "/v1/queues/c/jobs", pieces)
    assert status == 201, data
    assert api.job(data["id"])["payload"] == {"text": "chunked ✓"}
    big = json.dumps({"type": "noop", "payload": "x" * 5000}).encode()
    status, _, data = _send_chunked(api.port, "/v1/queues/c/jobs", [big[i:i + 1000] for i in range(0, len(big), 1000)])
    assert status == 413 and data["error"]["code"] == "payload_too_large", data
    # A negative or spaced chunk size is a 400, and the API stays up.
    from helpers import raw_http
    for size in (b"-5", b"1 0", b"+3"):
        status, _, body = raw_http(api.port, b"POST /v1/queues/c/jobs HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   + size + b"\r\nXXXXX\r\n0\r\n\r\n")
        assert status == 400 and b"chunk size" in body, (size, status, body)
    assert api.alive() and api.get("/healthz")[0] == 200
    # Python's http.client sends a body of unknown length chunked, as many clients do.
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=5)
    conn.request("POST", "/v1/queues/c/jobs", body=iter([b'{"type":', b'"noop"}']), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    r = conn.getresponse()
    assert r.status == 201, r.read()


def test_lease_lost_warnings_are_not_raised_for_finished_jobs(spawn):
    """Renewals every 100 ms race a thousand fast completions; none may be called lost."""
    api = spawn.api()
    w = spawn.worker(concurrency=8, env={"SPOOL_LEASE_MS": "1000", "SPOOL_HEARTBEAT_MS": "100"})
    jobs = [api.post("/v1/queues/default/jobs/batch", {"jobs": [{"type": "sleep", "payload": {"ms": 3}}] * 250})[2]["jobs"]
            for _ in range(4)]
    for batch in jobs:
        for j in batch:
            api.wait_state(j["id"], "succeeded", timeout=30)
    false_alarms = [l for l in w.log_lines() if "lease lost" in l.get("msg", "")]
    assert not false_alarms, false_alarms[:3]
