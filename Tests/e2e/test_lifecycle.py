"""A job's life through the real API and worker: enqueue, run, retry, die,
time out, and what the API and the logs show on the way."""
import json
import time

from harness import wait_for
from helpers import TIMESTAMP_RE, log_lines_with, ms_between, raw_http, wait_log, worker_id

FAST = {"backoff_ms": 10}

NESTED_PAYLOAD = {
    "text": "héllo wörld ✓ 日本語 😀 \U0001F9EA",
    "escapes": "quote \" backslash \\ slash / tab \t newline \n cr \r bell \u0007 nul \u0000",
    "big": 12345678901234567890,
    "negative_big": -98765432109876543210,
    "float": 3.14159,
    "tiny": -0.5,
    "exp": 1.5e10,
    "zero": 0,
    "flags": [True, False, None],
    "nested": {"a": [1, [2, [3, {"deep": "yes", "empty_obj": {}, "empty_list": []}]]]},
    "": "empty key",
}


def stats_of(api, queue):
    status, _, data = api.get("/v1/queues")
    assert status == 200, data
    found = [q for q in data["queues"] if q["name"] == queue]
    assert len(found) == 1, data
    return found[0]


def test_clock_job_reports_when_its_handler_began(spawn):
    api = spawn.api()
    spawn.worker()
    before = time.time_ns() // 1000
    job = api.enqueue("default", {"type": "clock"})
    done = api.wait_state(job["id"], "succeeded")
    after = time.time_ns() // 1000
    began = done["result"]["started_us"]
    assert before <= began <= after, (before, began, after)


def test_echo_job_succeeds_with_its_payload_as_result(spawn):
    api = spawn.api()
    spawn.worker()
    status, headers, job = api.post("/v1/queues/default/jobs", {"type": "echo", "payload": NESTED_PAYLOAD})
    assert status == 201, job
    assert headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["state"] in ("queued", "running", "succeeded")
    assert job["queue"] == "default" and job["type"] == "echo" and job["priority"] == "normal"
    assert job["payload"] == NESTED_PAYLOAD
    assert job["max_attempts"] == 5 and job["attempts"] == 0

    done = api.wait_state(job["id"], "succeeded")
    assert done["result"] == NESTED_PAYLOAD
    assert done["payload"] == NESTED_PAYLOAD
    assert done["attempts"] == 1
    assert done["error"] is None
    assert done["worker"]
    for field in ("created_at", "started_at", "finished_at"):
        assert TIMESTAMP_RE.match(done[field]), (field, done[field])
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]

    # The result endpoint answers the result itself; big numbers keep every digit.
    status, headers, raw = api.get(f"/v1/jobs/{job['id']}/result")
    assert status == 200
    assert raw == NESTED_PAYLOAD
    assert headers["content-type"].startswith("application/json")


def test_payload_sent_as_raw_utf8_comes_back_unchanged(spawn):
    api = spawn.api()
    spawn.worker()
    body = json.dumps({"type": "echo", "payload": NESTED_PAYLOAD}, ensure_ascii=False).encode("utf-8")
    status, _, job = api.post("/v1/queues/default/jobs", body)
    assert status == 201, job
    assert api.wait_state(job["id"], "succeeded")["result"] == NESTED_PAYLOAD
    # The big integers are kept as written, not rounded through a double.
    status, _, raw = raw_http(api.port, f"GET /v1/jobs/{job['id']}/result HTTP/1.1\r\nHost: x\r\n"
                                        "Connection: close\r\n\r\n".encode())
    assert status == 200
    assert b"12345678901234567890" in raw and b"-98765432109876543210" in raw, raw


def test_result_endpoint_is_409_while_queued(spawn):
    api = spawn.api()  # no worker: the job stays queued
    job = api.enqueue("default", {"type": "echo", "payload": {"x": 1}})
    status, _, data = api.get(f"/v1/jobs/{job['id']}/result")
    assert status == 409, data
    assert isinstance(data["error"]["code"], str) and data["error"]["message"], data
    assert data["state"] == "queued"
    j = api.job(job["id"])
    assert j["state"] == "queued" and "result" not in j and j["attempts"] == 0 and j["started_at"] is None


def test_noop_result_is_null(spawn):
    api = spawn.api()
    spawn.worker()
    job = api.enqueue("default", {"type": "noop", "payload": {"ignored": True}})
    done = api.wait_state(job["id"], "succeeded")
    assert "result" in done and done["result"] is None
    status, _, body = api.get(f"/v1/jobs/{job['id']}/result")
    assert status == 200 and body is None  # the body is JSON null


def test_payload_defaults_to_null(spawn):
    api = spawn.api()
    spawn.worker()
    job = api.enqueue("default", {"type": "echo"})
    assert job["payload"] is None
    assert api.wait_state(job["id"], "succeeded")["result"] is None


def test_priorities_run_urgent_high_normal_low(spawn):
    api = spawn.api()
    order = [("low", "low1"), ("normal", "normal1"), ("high", "high1"), ("urgent", "urgent1"),
             ("normal", "normal2"), ("urgent", "urgent2"), ("low", "low2"), ("high", "high2")]
    ids = {}
    for prio, name in order:
        j = api.enqueue("default", {"type": "sleep", "payload": {"ms": 30}, "priority": prio})
        assert j["priority"] == prio
        ids[j["id"]] = name
    spawn.worker(concurrency=1)
    jobs = [api.wait_state(i, "succeeded") for i in ids]
    ran = [ids[j["id"]] for j in sorted(jobs, key=lambda j: j["started_at"])]
    assert ran == ["urgent1", "urgent2", "high1", "high2", "normal1", "normal2", "low1", "low2"]


def test_queues_are_tried_in_the_given_order(spawn):
    api = spawn.api()
    names = {}
    for queue, prio, name in [("b", "normal", "b1"), ("b", "urgent", "b-urgent"), ("a", "low", "a-low"),
                              ("a", "normal", "a1"), ("b", "normal", "b2")]:
        names[api.enqueue(queue, {"type": "sleep", "payload": {"ms": 30}, "priority": prio})["id"]] = name
    spawn.worker(concurrency=1, args=["--queues", "a,b"])
    jobs = [api.wait_state(i, "succeeded") for i in names]
    ran = [names[j["id"]] for j in sorted(jobs, key=lambda j: j["started_at"])]
    assert ran == ["a1", "a-low", "b-urgent", "b1", "b2"]


def test_failing_job_retries_then_is_dead(spawn):
    api = spawn.api()
    w = spawn.worker()
    job = api.enqueue("default", {"type": "fail", "payload": {"times": 10, "message": "kaboom"},
                                  "max_attempts": 3, **FAST})
    dead = api.wait_state(job["id"], "dead")
    assert dead["attempts"] == 3
    assert dead["error"] == {"message": "kaboom", "attempt": 3}
    assert "result" not in dead
    assert dead["finished_at"] and TIMESTAMP_RE.match(dead["finished_at"])
    resp = api.get(f"/v1/jobs/{job['id']}/result")
    assert resp[0] == 409 and resp[2]["state"] == "dead", resp

    s = stats_of(api, "default")
    assert s["dead"] == 1
    assert s["failed_total"] == 3
    assert s["processed_total"] == 0
    assert s["pending_total"] == 0 and s["running"] == 0 and s["scheduled"] == 0

    wait_log(w, "job failed; no attempts left, moved to dead", job["id"])
    retries = log_lines_with(w, "job failed; retry scheduled", job["id"])
    assert sorted(l["attempt"] for l in retries) == [1, 2]
    assert len(log_lines_with(w, "job failed; no attempts left, moved to dead", job["id"])) == 1


def test_job_that_fails_twice_then_succeeds_keeps_last_error(spawn):
    api = spawn.api()
    spawn.worker()
    job = api.enqueue("default", {"type": "fail", "payload": {"times": 2, "message": "flaky"},
                                  "max_attempts": 5, **FAST})
    done = api.wait_state(job["id"], "succeeded")
    assert done["attempts"] == 3
    assert done["error"] == {"message": "flaky", "attempt": 2}
    assert done["result"] is None
    s = stats_of(api, "default")
    assert s["processed_total"] == 1 and s["failed_total"] == 2 and s["dead"] == 0


def test_job_over_its_timeout_is_stopped_and_dead(spawn):
    api = spawn.api()
    spawn.worker()
    job = api.enqueue("default", {"type": "sleep", "payload": {"ms": 5000}, "timeout_ms": 300, "max_attempts": 1})
    dead = api.wait_state(job["id"], "dead", timeout=10)
    assert "timed out" in dead["error"]["message"], dead["error"]
    assert dead["error"]["attempt"] == 1 and dead["attempts"] == 1
    took = ms_between(dead["started_at"], dead["finished_at"])
    assert 250 <= took < 3000, f"job ran {took} ms with a 300 ms timeout"


def test_unknown_job_type_fails_with_a_clear_error(spawn):
    api = spawn.api()
    spawn.worker()
    job = api.enqueue("default", {"type": "no.such:type", "max_attempts": 1})
    dead = api.wait_state(job["id"], "dead")
    assert "no.such:type" in dead["error"]["message"], dead["error"]
    assert dead["attempts"] == 1
    # The worker is fine and keeps working.
    ok = api.enqueue("default", {"type": "echo", "payload": "still here"})
    assert api.wait_state(ok["id"], "succeeded")["result"] == "still here"


def test_second_api_process_shows_the_same_job(spawn):
    api1 = spawn.api()
    api2 = spawn.api()
    job = api1.enqueue("shared", {"type": "echo", "payload": {"n": 1}, "priority": "high"})
    assert api2.job(job["id"]) == api1.job(job["id"])
    spawn.worker(queues="shared")
    done = api1.wait_state(job["id"], "succeeded")
    assert api2.job(job["id"]) == done
    assert api2.get(f"/v1/jobs/{job['id']}/result")[2] == {"n": 1}
    assert stats_of(api2, "shared") == stats_of(api1, "shared")


def test_queue_listing_counts(spawn):
    api = spawn.api()
    for prio, n in [("urgent", 2), ("high", 1), ("normal", 3), ("low", 1)]:
        for _ in range(n):
            api.enqueue("counted", {"type": "noop", "priority": prio})
    delayed = api.enqueue("counted", {"type": "noop", "delay_ms": 60000})
    assert delayed["state"] == "scheduled"
    api.enqueue("other", {"type": "noop"})

    s = stats_of(api, "counted")
    assert s["pending"] == {"urgent": 2, "high": 1, "normal": 3, "low": 1}
    assert s["pending_total"] == 7
    assert s["scheduled"] == 1
    assert (s["running"], s["dead"], s["processed_total"], s["failed_total"], s["paused"]) == (0, 0, 0, 0, False)
    assert stats_of(api, "other")["pending_total"] == 1

    spawn.worker(queues="counted")
    wait_for(lambda: stats_of(api, "counted")["processed_total"] == 7, timeout=10, what="7 jobs processed")
    s = stats_of(api, "counted")
    assert s["pending"] == {"urgent": 0, "high": 0, "normal": 0, "low": 0} and s["pending_total"] == 0
    assert s["scheduled"] == 1 and s["running"] == 0
    assert stats_of(api, "other")["pending_total"] == 1  # not a queue of this worker

    running = api.enqueue("counted", {"type": "sleep", "payload": {"ms": 1500}})
    api.wait_state(running["id"], "running")
    assert stats_of(api, "counted")["running"] == 1


def test_batch_enqueue_returns_jobs_in_order_and_all_run(spawn):
    api = spawn.api()
    batch = [{"type": "echo", "payload": {"i": i}, "priority": p}
             for i, p in enumerate(["low", "urgent", "normal", "high", "normal", "low"])]
    status, _, data = api.post("/v1/queues/default/jobs/batch", {"jobs": batch})
    assert status == 201, data
    jobs = data["jobs"]
    assert [j["payload"] for j in jobs] == [b["payload"] for b in batch]
    assert [j["priority"] for j in jobs] == [b["priority"] for b in batch]
    assert len({j["id"] for j in jobs}) == len(batch)
    assert all(j["state"] == "queued" and j["queue"] == "default" for j in jobs)
    for j in jobs:  # each is readable on its own
        assert api.job(j["id"])["payload"] == j["payload"]
    spawn.worker()
    for j in jobs:
        assert api.wait_state(j["id"], "succeeded")["result"] == j["payload"]
    assert stats_of(api, "default")["processed_total"] == len(batch)


def test_logs_are_json_lines_with_job_fields(spawn):
    api = spawn.api()
    w = spawn.worker()
    wid = worker_id(w)
    job = api.enqueue("default", {"type": "echo", "payload": [1, 2, 3]})
    api.wait_state(job["id"], "succeeded")
    succeeded = wait_log(w, "job succeeded", job["id"])

    for proc, service in [(w, "worker"), (api, "api")]:
        lines = [l for l in proc.output().splitlines() if l.strip()]
        assert lines, f"{service} wrote no log lines"
        for line in lines:
            obj = json.loads(line)  # every line is one JSON object
            assert isinstance(obj, dict), line
            assert TIMESTAMP_RE.match(obj["ts"]), line
            assert obj["level"] in ("trace", "debug", "info", "notice", "warning", "error", "critical"), line
            assert isinstance(obj["msg"], str) and obj["msg"], line
            assert obj["service"] == service, line

    assert len(succeeded) == 1, succeeded
    line = succeeded[0]
    assert line["level"] == "info"
    assert line["queue"] == "default" and line["type"] == "echo"
    assert line["attempt"] == 1 and line["worker_id"] == wid
    assert isinstance(line["duration_ms"], int) and 0 <= line["duration_ms"] < 5000, line
    started = log_lines_with(w, "job started", job["id"])
    assert len(started) == 1
    assert {k: started[0][k] for k in ("job_id", "queue", "type", "attempt", "worker_id")} == \
        {"job_id": job["id"], "queue": "default", "type": "echo", "attempt": 1, "worker_id": wid}


JOB_FIELDS = {"id", "queue", "type", "state", "priority", "attempts", "max_attempts", "payload", "progress",
              "error", "created_at", "started_at", "finished_at", "worker"}


def test_job_has_every_documented_field(spawn):
    api = spawn.api()
    queued = api.enqueue("default", {"type": "echo", "payload": 1})
    assert JOB_FIELDS <= set(api.job(queued["id"])), api.job(queued["id"])
    assert "result" not in api.job(queued["id"])
    spawn.worker()
    done = api.wait_state(queued["id"], "succeeded")
    assert JOB_FIELDS | {"result"} <= set(done), done


def test_retry_backoff_grows_exponentially(spawn):
    api = spawn.api()
    w = spawn.worker()
    job = api.enqueue("default", {"type": "fail", "payload": {"times": 2}, "backoff_ms": 200, "max_attempts": 3})
    api.wait_state(job["id"], "succeeded", timeout=10)
    retries = sorted(log_lines_with(w, "job failed; retry scheduled", job["id"]), key=lambda l: l["attempt"])
    delays = [l["retry_in_ms"] for l in retries]
    assert len(delays) == 2, retries
    assert 150 <= delays[0] <= 250, delays      # 200 ms ± 25% jitter
    assert 300 <= delays[1] <= 500, delays      # 400 ms ± 25% jitter
    starts = {l["attempt"]: l["ts"] for l in log_lines_with(w, "job started", job["id"])}
    fails = {l["attempt"]: l["ts"] for l in retries}
    for attempt, delay in [(1, delays[0]), (2, delays[1])]:
        waited = ms_between(fails[attempt], starts[attempt + 1])
        assert waited >= delay - 20, f"attempt {attempt + 1} started {waited} ms after a {delay} ms backoff"


def test_delayed_and_run_at_jobs(spawn):
    api = spawn.api()
    spawn.worker()
    delayed = api.enqueue("default", {"type": "noop", "delay_ms": 700})
    assert delayed["state"] == "scheduled"
    assert api.job(delayed["id"])["state"] == "scheduled"
    past = api.enqueue("default", {"type": "noop", "run_at": "2020-01-01T00:00:00Z"})
    assert api.wait_state(past["id"], "succeeded", timeout=5)
    done = api.wait_state(delayed["id"], "succeeded", timeout=10)
    assert ms_between(done["created_at"], done["started_at"]) >= 650, done


def test_idempotency_key_enqueues_once(spawn):
    api = spawn.api()
    first = api.post("/v1/queues/default/jobs", {"type": "echo", "payload": 1, "idempotency_key": "order-42"})
    again = api.post("/v1/queues/default/jobs", {"type": "echo", "payload": 1, "idempotency_key": "order-42"})
    assert first[0] == 201 and again[0] in (200, 201), (first, again)
    assert again[2]["id"] == first[2]["id"]
    assert again[2]["payload"] == 1
    other = api.enqueue("default", {"type": "echo", "payload": 3, "idempotency_key": "order-43"})
    assert other["id"] != first[2]["id"]
    assert stats_of(api, "default")["pending_total"] == 2


def test_finished_job_expires_after_result_ttl(spawn):
    api = spawn.api()
    spawn.worker()
    job = api.enqueue("default", {"type": "echo", "payload": "short-lived", "result_ttl_s": 1})
    assert api.wait_state(job["id"], "succeeded")["result"] == "short-lived"
    wait_for(lambda: api.get(f"/v1/jobs/{job['id']}")[0] == 404, timeout=5, what="the finished job to expire")
    assert api.get(f"/v1/jobs/{job['id']}/result")[0] == 404


def test_keep_alive_connection_serves_many_requests(spawn):
    import http.client
    api = spawn.api()
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=5)
    try:
        ids = []
        for i in range(10):
            conn.request("POST", "/v1/queues/default/jobs", body=json.dumps({"type": "echo", "payload": i}))
            r = conn.getresponse()
            assert r.status == 201
            ids.append(json.loads(r.read())["id"])
            conn.request("POST", "/v1/queues/default/jobs", body=b'{"type": "bad!"}')  # an error keeps the connection
            r = conn.getresponse()
            assert r.status == 400 and json.loads(r.read())["error"]["code"] == "invalid_field"
            conn.request("GET", f"/v1/jobs/{ids[-1]}")
            r = conn.getresponse()
            assert r.status == 200 and json.loads(r.read())["payload"] == i
            conn.request("DELETE", "/v1/queues")
            r = conn.getresponse()
            assert r.status == 405
            r.read()
    finally:
        conn.close()
    assert len(set(ids)) == 10


def test_concurrency_runs_jobs_in_parallel(spawn):
    api = spawn.api()
    spawn.worker(concurrency=3)
    jobs = [api.enqueue("default", {"type": "sleep", "payload": {"ms": 1000}}) for _ in range(4)]
    wait_for(lambda: stats_of(api, "default")["running"] == 3, timeout=5, what="3 jobs running at once")
    assert stats_of(api, "default")["pending_total"] == 1  # the 4th waits for a free slot
    done = [api.wait_state(j["id"], "succeeded", timeout=10) for j in jobs]
    first_three = sorted(done, key=lambda j: j["started_at"])[:3]
    assert ms_between(first_three[0]["started_at"], first_three[2]["started_at"]) < 500
    assert len({j["worker"] for j in done}) == 1


def test_large_payload_round_trip(spawn):
    api = spawn.api()
    spawn.worker()
    payload = {"blob": "ü" * 200_000, "list": list(range(20_000))}  # ~520 KB of UTF-8
    body = json.dumps({"type": "echo", "payload": payload}, ensure_ascii=False).encode()
    assert 500_000 < len(body) < 1 << 20
    status, _, job = api.post("/v1/queues/default/jobs", body)
    assert status == 201, job
    assert api.wait_state(job["id"], "succeeded")["result"] == payload
