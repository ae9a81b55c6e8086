"""Handlers that stay warm: a persistent process fed jobs as JSON lines (`persistent:`), and
an HTTP service the worker POSTs jobs to, here a real FastAPI app under uvicorn (PyPI, from
the project's virtualenv). Real Redis, API and worker processes."""
import socket
import subprocess
import sys
import time

from harness import ROOT, free_port, wait_for
from helpers import log_lines_with, script

VENV_PY = ROOT / ".spool" / "venv" / "bin" / "python"

# The README's example: code loaded once, then one job per stdin line.
PERSISTENT = """
    import json, os, sys, time
    started = time.time()  # stands for a model loaded once
    for line in sys.stdin:
        job = json.loads(line)
        p = job["payload"]
        if p.get("crash") and job["attempt"] == 1:
            os._exit(3)
        if p.get("sleep"):
            time.sleep(p["sleep"])
        if "chunk" in p:
            print(json.dumps({"id": job["id"], "chunk": p["chunk"]}), flush=True)
        if p.get("fail"):
            print(json.dumps({"id": job["id"], "error": "asked to fail", "retry": False}), flush=True)
            continue
        out = {"echo": p, "pid": os.getpid(), "attempt": job["attempt"], "deadline_ms": job["deadline_ms"]}
        print(json.dumps({"id": job["id"], "result": out}), flush=True)
"""

FASTAPI_APP = """
    import asyncio, json
    from fastapi import FastAPI, Request, Response
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI()
    refused = set()

    @app.post("/echo")
    async def echo(request: Request):
        payload = await request.json()
        h = request.headers
        return JSONResponse({"got": payload, "job": h["spool-job-id"], "attempt": int(h["spool-attempt"]),
                             "deadline_ms": int(h["spool-deadline-ms"])}, headers={"Spool-Usage": "42"})

    @app.post("/busy")
    async def busy(request: Request):
        job = request.headers["spool-job-id"]
        if job not in refused:
            refused.add(job)
            return Response("rate limited", status_code=429, headers={"Retry-After": "2"})
        return {"ok": True}

    @app.post("/boom")
    async def boom():
        return Response("database on fire", status_code=500)

    @app.post("/invalid")
    async def invalid():
        return Response("payload rejected", status_code=422)

    @app.post("/slow")
    async def slow():
        await asyncio.sleep(30)
        return {"late": True}

    @app.post("/stream")
    async def stream():
        async def events():
            for word in ["alpha", "beta", "gamma"]:
                yield "data: " + json.dumps(word) + "\\n\\n"
                await asyncio.sleep(0.05)
            yield "event: result\\ndata: " + json.dumps({"words": 3}) + "\\n\\n"
        return StreamingResponse(events(), media_type="text/event-stream")
"""


def persistent_worker(spawn, tmp_path, env=None, concurrency=2):
    s = script(tmp_path, "model.py", PERSISTENT)
    return spawn.worker(concurrency=concurrency, env=env,
                        args=["--handler", f"model=persistent:exec {sys.executable} {s}"])


def test_a_persistent_handler_serves_many_jobs_from_warm_processes(spawn, tmp_path):
    api = spawn.api()
    w = persistent_worker(spawn, tmp_path, concurrency=2)
    ids = [api.enqueue("default", {"type": "model", "payload": {"n": i}})["id"] for i in range(30)]
    results = [api.wait_state(i, "succeeded")["result"] for i in ids]
    assert [r["echo"]["n"] for r in results] == list(range(30))
    pids = {r["pid"] for r in results}
    assert 1 <= len(pids) <= 2, "one process per loop at most, reused"
    assert all(r["attempt"] == 1 and r["deadline_ms"] > time.time() * 1000 for r in results)
    assert len(log_lines_with(w, "persistent handler started")) == len(pids)
    # Output lines tagged with the job's id are its chunks; a failure it reports is the job's.
    s, _, data = api.post("/v1/queues/default/jobs", {"type": "model", "payload": {"chunk": "partial"}})
    job = api.wait_state(data["id"], "succeeded")
    assert job["result"]["echo"] == {"chunk": "partial"}
    failed = api.enqueue("default", {"type": "model", "payload": {"fail": True}})
    dead = api.wait_state(failed["id"], "dead")
    assert dead["error"]["message"] == "asked to fail" and dead["attempts"] == 1


def test_a_persistent_handler_that_crashes_is_restarted_and_its_job_retried(spawn, tmp_path):
    api = spawn.api()
    w = persistent_worker(spawn, tmp_path, concurrency=1)
    first = api.wait_state(api.enqueue("default", {"type": "model", "payload": {}})["id"], "succeeded")
    crash = api.enqueue("default", {"type": "model", "payload": {"crash": True}, "backoff_ms": 0})
    job = api.wait_state(crash["id"], "succeeded", timeout=20)
    assert job["attempts"] == 2 and job["result"]["pid"] != first["result"]["pid"]
    assert log_lines_with(w, "persistent handler died while running a job; the next job starts a new one")


def test_a_persistent_handler_is_recycled_after_max_jobs(spawn, tmp_path):
    api = spawn.api()
    w = persistent_worker(spawn, tmp_path, concurrency=1, env={"SPOOL_PERSISTENT_MAX_JOBS": "3"})
    ids = [api.enqueue("default", {"type": "model", "payload": {"n": i}})["id"] for i in range(7)]
    pids = [api.wait_state(i, "succeeded")["result"]["pid"] for i in ids]
    # Runs of 3 jobs per process: 3 + 3 + 1.
    assert len(set(pids)) == 3 and pids[0] == pids[2] and pids[3] == pids[5] and pids[2] != pids[3], pids
    assert len(log_lines_with(w, "persistent handler recycled")) >= 2


def test_a_persistent_handler_past_its_timeout_is_killed_and_replaced(spawn, tmp_path):
    api = spawn.api()
    persistent_worker(spawn, tmp_path, concurrency=1, env={"SPOOL_KILL_GRACE_MS": "300"})
    first = api.wait_state(api.enqueue("default", {"type": "model", "payload": {}})["id"], "succeeded")
    slow = api.enqueue("default", {"type": "model", "payload": {"sleep": 30}, "timeout_ms": 500, "max_attempts": 1})
    t0 = time.time()
    dead = api.wait_state(slow["id"], "dead", timeout=10)
    assert "timed out after 500 ms" in dead["error"]["message"]
    assert time.time() - t0 < 5
    after = api.wait_state(api.enqueue("default", {"type": "model", "payload": {}})["id"], "succeeded", timeout=10)
    assert after["result"]["pid"] != first["result"]["pid"]
    wait_for(lambda: subprocess.run(["kill", "-0", str(first["result"]["pid"])], capture_output=True).returncode != 0,
             what="the timed-out process to be gone")


def test_bad_handler_specs_are_refused_at_start():
    from test_config import WORKER, assert_refused, run
    for spec, why in [("x=https://example.com/run", "https is not supported"),
                      ("x=http://127.0.0.1:99999/run", "the port must be 1 to 65535"),
                      ("x=http:///run", "no host"),
                      ("x=persistent:", "'persistent:' needs a command")]:
        proc = run(WORKER, args=["--handler", spec])
        assert_refused(proc, "--handler")
        assert why in proc.stderr, proc.stderr


class Uvicorn:
    def __init__(self, tmp_path):
        script(tmp_path, "app.py", FASTAPI_APP)
        self.port = free_port()
        self.proc = subprocess.Popen([str(VENV_PY), "-m", "uvicorn", "app:app", "--port", str(self.port),
                                      "--log-level", "warning"], cwd=tmp_path, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False
        wait_for(up, timeout=30, what="uvicorn to listen")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=10)


def test_an_http_handler_calls_a_fastapi_app(spawn, tmp_path):
    app = Uvicorn(tmp_path)
    try:
        api = spawn.api()
        api.request("PUT", "/v1/limits/fast", {"units_per_minute": 60000})
        spawn.worker(concurrency=4, args=[
            "--handler", f"echo_http={app.url('/echo')}", "--handler", f"boom={app.url('/boom')}",
            "--handler", f"invalid={app.url('/invalid')}", "--handler", f"slow={app.url('/slow')}",
            "--handler", f"words={app.url('/stream')}"])
        job = api.enqueue("default", {"type": "echo_http", "payload": {"q": "hi"}, "limit": "fast", "cost": 1000})
        done = api.wait_state(job["id"], "succeeded")
        assert done["result"]["got"] == {"q": "hi"} and done["result"]["job"] == job["id"]
        assert done["result"]["attempt"] == 1 and done["result"]["deadline_ms"] > time.time() * 1000
        # Spool-Usage: 42 settled the declared 1000: 958 came back.
        assert api.get("/v1/limits/fast")[2]["units_available"] >= 60000 - 42 - 1
        boom = api.enqueue("default", {"type": "boom", "max_attempts": 2, "backoff_ms": 0})
        dead = api.wait_state(boom["id"], "dead")
        assert dead["attempts"] == 2 and "HTTP 500" in dead["error"]["message"] and "database on fire" in dead["error"]["message"]
        invalid = api.enqueue("default", {"type": "invalid", "max_attempts": 5})
        dead = api.wait_state(invalid["id"], "dead")
        assert dead["attempts"] == 1 and "HTTP 422" in dead["error"]["message"], "a request the app rejects is not retried"
        slow = api.enqueue("default", {"type": "slow", "timeout_ms": 500, "max_attempts": 1})
        dead = api.wait_state(slow["id"], "dead", timeout=10)
        assert "timed out after 500 ms" in dead["error"]["message"]
        words = api.enqueue("default", {"type": "words"})
        done = api.wait_state(words["id"], "succeeded")
        assert done["result"] == {"words": 3}
        from test_streaming import chunks, events_url, sse
        assert chunks(sse(events_url(api, words["id"]))) == ["alpha", "beta", "gamma"]
    finally:
        app.stop()


def test_a_429_from_an_http_handler_pauses_its_limit_on_every_worker(spawn, tmp_path):
    app = Uvicorn(tmp_path)
    try:
        api = spawn.api()
        api.request("PUT", "/v1/limits/provider", {})
        args = ["--handler", f"call={app.url('/busy')}"]
        spawn.worker(queues="a", concurrency=2, args=args)
        spawn.worker(queues="b", concurrency=2, args=args)
        first = api.enqueue("a", {"type": "call", "limit": "provider"})
        j = api.wait_state(first["id"], "scheduled")
        t_pause = time.time()
        assert j["attempts"] == 0 and "HTTP 429" in j["error"]["message"], j
        assert 1000 < api.get("/v1/limits/provider")[2]["paused_for_ms"] <= 2000
        # The other worker's queue waits out the same pause.
        other = api.enqueue("b", {"type": "call", "limit": "provider"})
        time.sleep(0.8)
        assert api.job(other["id"])["state"] == "queued"
        assert api.wait_state(other["id"], "scheduled", timeout=10)  # its own first call is refused too
        done = api.wait_state(first["id"], "succeeded", timeout=15)
        assert done["attempts"] == 1 and time.time() - t_pause >= 1.5
        assert api.wait_state(other["id"], "succeeded", timeout=15)["attempts"] == 1
    finally:
        app.stop()
