"""The HTTP contract as issue 11 tightened it: unknown query parameters, waiting
on /result, Prefer: return=minimal, idempotency conflicts, bounded queues
(limit, paging, delete, pause of an unknown queue), --version."""
import subprocess
import threading
import time

from harness import BIN_DIR
from helpers import assert_error, redis_snapshot


def test_an_unknown_query_parameter_is_a_400_naming_it(spawn, redis):
    api = spawn.api()
    job = api.enqueue("q", {"type": "noop"})
    err = assert_error(api.get(f"/v1/jobs/{job['id']}?wiat=5"), 400, "invalid_field", mentions=["wiat", "wait"])
    assert "unknown query parameter" in err["message"]
    assert_error(api.get("/v1/workers?limit=3"), 400, "invalid_field", mentions=["limit"])
    before = redis_snapshot(redis)
    assert_error(api.post("/v1/queues/q/jobs?priority=high", {"type": "noop"}), 400, "invalid_field", mentions=["priority"])
    assert redis_snapshot(redis) == before, "a refused enqueue changed Redis"
    # The parameters a route takes still work.
    assert api.get(f"/v1/jobs/{job['id']}?wait=0")[0] == 200


def test_result_waits_like_the_job_get(spawn):
    api = spawn.api()
    job = api.enqueue("q", {"type": "echo", "payload": {"answer": 42}})
    got = {}

    def wait():
        t0 = time.monotonic()
        got["resp"] = api.get(f"/v1/jobs/{job['id']}/result?wait=10", timeout=15)
        got["s"] = time.monotonic() - t0

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.5)
    assert "resp" in got or t.is_alive(), "the result answered before the job ran"
    assert t.is_alive(), f"/result?wait= did not wait: {got}"
    spawn.worker(queues="q")
    t.join(15)
    status, _, body = got["resp"]
    assert status == 200 and body == {"answer": 42}, got
    assert 0.4 < got["s"] < 10, got
    # A wait that runs out answers 409 not_finished, like /result without wait.
    other = api.enqueue("idle", {"type": "noop"})
    t0 = time.monotonic()
    err = assert_error(api.get(f"/v1/jobs/{other['id']}/result?wait=0.5"), 409, "not_finished")
    assert time.monotonic() - t0 >= 0.45
    assert "queued" in err["message"]
    assert_error(api.get(f"/v1/jobs/{other['id']}/result?wait=61"), 400, "invalid_field", mentions=["wait"])


def test_result_409_body_has_the_documented_fields(spawn):
    api = spawn.api()
    job = api.enqueue("q", {"type": "noop"})
    status, _, body = api.get(f"/v1/jobs/{job['id']}/result")
    assert status == 409
    assert set(body) == {"error", "state", "job_error"}, body
    assert body["state"] == "queued" and body["job_error"] is None
    readme = (BIN_DIR.parents[1] / "README.md").read_text()
    assert '"job_error"' in readme, "README does not document the job_error field of /result's 409"


def test_prefer_return_minimal_does_not_echo_the_payload(spawn):
    api = spawn.api()
    big = "x" * 300_000
    status, headers, body = api.post("/v1/queues/q/jobs", {"type": "noop", "payload": big},
                                      headers={"Prefer": "return=minimal"})
    assert status == 201, body
    assert set(body) == {"id", "queue", "state"} and body["state"] == "queued", body
    assert int(headers["content-length"]) < 200
    assert headers.get("preference-applied") == "return=minimal"
    assert headers["location"] == f"/v1/jobs/{body['id']}"
    assert api.job(body["id"])["payload"] == big
    status, _, body = api.post("/v1/queues/q/jobs/batch", {"jobs": [{"type": "noop", "payload": big}] * 2},
                               headers={"Prefer": "respond-async, return=minimal"})
    assert status == 201 and [set(j) for j in body["jobs"]] == [{"id", "queue", "state"}] * 2
    # Without the preference the job is echoed as before.
    status, _, body = api.post("/v1/queues/q/jobs", {"type": "noop", "payload": 1})
    assert status == 201 and body["payload"] == 1


def test_the_same_idempotency_key_with_another_request_is_409_and_stores_nothing(spawn, redis):
    api = spawn.api()
    first = api.enqueue("q", {"type": "render", "payload": {"n": 1}, "idempotency_key": "order-7"})
    # The same request again: 200 with the first job.
    status, _, again = api.post("/v1/queues/q/jobs", {"type": "render", "payload": {"n": 1}, "idempotency_key": "order-7"})
    assert status == 200 and again["id"] == first["id"]
    before = redis_snapshot(redis)
    for changed in ({"type": "render", "payload": {"n": 2}}, {"type": "other", "payload": {"n": 1}},
                    {"type": "render", "payload": {"n": 1}, "max_attempts": 2},
                    {"type": "render", "payload": {"n": 1}, "priority": "high"}):
        err = assert_error(api.post("/v1/queues/q/jobs", {**changed, "idempotency_key": "order-7"}), 409,
                           "idempotency_conflict", mentions=["order-7", first["id"]])
        assert "idempotency_key" in err["message"]
    # In a batch: the whole batch is refused, the error names the job.
    resp = api.post("/v1/queues/q/jobs/batch", {"jobs": [{"type": "noop"},
                                                         {"type": "render", "payload": {"n": 3}, "idempotency_key": "order-7"}]})
    assert_error(resp, 409, "idempotency_conflict", mentions=["jobs[1].idempotency_key"])
    # Two different requests with one key inside one batch conflict as well.
    resp = api.post("/v1/queues/q/jobs/batch", {"jobs": [{"type": "a", "idempotency_key": "k2"},
                                                         {"type": "b", "idempotency_key": "k2"}]})
    assert_error(resp, 409, "idempotency_conflict", mentions=["jobs[1]"])
    assert redis_snapshot(redis) == before, "a refused (409) enqueue changed Redis"


def test_queue_count_is_bounded_and_a_refused_enqueue_stores_nothing(spawn, redis):
    api = spawn.api(env={"SPOOL_MAX_QUEUES": "3"})
    for q in ("a", "b", "c"):
        api.enqueue(q, {"type": "noop"})
    before = redis_snapshot(redis)
    err = assert_error(api.post("/v1/queues/d/jobs", {"type": "noop"}), 409, "too_many_queues",
                       mentions=["SPOOL_MAX_QUEUES", "3"])
    assert "queue d" in err["message"]
    assert_error(api.post("/v1/queues/d/jobs/batch", {"jobs": [{"type": "noop"}]}), 409, "too_many_queues")
    assert redis_snapshot(redis) == before
    # Known queues still take jobs; deleting one makes room for a new one.
    api.enqueue("a", {"type": "noop"})
    assert api.request("DELETE", "/v1/queues/c?purge=true")[0] == 200
    api.enqueue("d", {"type": "noop"})


def test_queue_listing_pages_by_name_with_a_prefix(spawn):
    api = spawn.api()
    names = [f"team-{i:02d}" for i in range(7)] + ["other"]
    for q in names:
        api.enqueue(q, {"type": "noop"})
    seen, cursor = [], None
    for _ in range(10):
        path = "/v1/queues?prefix=team-&limit=3" + (f"&cursor={cursor}" if cursor else "")
        status, _, body = api.get(path)
        assert status == 200, body
        assert len(body["queues"]) <= 3
        seen += [q["name"] for q in body["queues"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(n for n in names if n.startswith("team-"))
    # Exactly full last page: next_cursor is null, not a page that comes back empty.
    status, _, body = api.get("/v1/queues?prefix=team-&limit=7")
    assert len(body["queues"]) == 7 and body["next_cursor"] is None
    status, _, body = api.get("/v1/queues")
    assert [q["name"] for q in body["queues"]] == sorted(names) and body["next_cursor"] is None
    assert body["queues"][0]["pending_total"] == 1
    for bad in ("limit=0", "limit=1001", "limit=x", "cursor=a%20b", "prefix=%7B"):
        assert_error(api.get(f"/v1/queues?{bad}"), 400, "invalid_field", mentions=[bad.split("=")[0]])


def test_delete_queue_refuses_a_queue_with_jobs_unless_purged(spawn, redis):
    api = spawn.api()
    for i in range(5):
        api.enqueue("doomed", {"type": "noop", "idempotency_key": f"k{i}"})
    api.enqueue("doomed", {"type": "noop", "delay_ms": 60_000})
    before = redis_snapshot(redis)
    err = assert_error(api.request("DELETE", "/v1/queues/doomed"), 409, "queue_not_empty", mentions=["purge=true"])
    assert "5 pending" in err["message"] and "1 scheduled" in err["message"]
    assert redis_snapshot(redis) == before
    status, _, body = api.request("DELETE", "/v1/queues/doomed?purge=true")
    assert status == 200 and body == {"deleted": "doomed", "jobs_deleted": 6}, body
    assert [k for k in redis.keys("spool:{doomed}*")] == []
    assert "doomed" not in redis.cli("SMEMBERS", "spool:queues").split()
    assert_error(api.get("/v1/queues/doomed"), 404, "not_found")
    assert_error(api.request("DELETE", "/v1/queues/doomed"), 404, "not_found")
    # An empty queue goes without purge.
    api.enqueue("empty", {"type": "noop"})
    spawn.worker(queues="empty")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and api.get("/v1/queues/empty")[2]["processed_total"] < 1:
        time.sleep(0.05)
    assert api.request("DELETE", "/v1/queues/empty")[0] == 200
    assert_error(api.request("DELETE", "/v1/queues/x?purge=yes"), 400, "invalid_field", mentions=["purge"])


def test_pause_and_resume_of_a_queue_that_never_had_a_job_are_404(spawn, redis):
    api = spawn.api()
    before = redis_snapshot(redis)
    assert_error(api.post("/v1/queues/typo/pause"), 404, "not_found", mentions=["typo"])
    assert_error(api.post("/v1/queues/typo/resume"), 404, "not_found")
    assert redis_snapshot(redis) == before, "pause of an unknown queue created it"
    api.enqueue("real", {"type": "noop"})
    status, _, body = api.post("/v1/queues/real/pause")
    assert status == 200 and body["paused"] is True


def test_version_flag(tmp_path):
    for binary in ("spool-api", "spool-worker"):
        out = subprocess.run([str(BIN_DIR / binary), "--version"], capture_output=True, text=True, timeout=10)
        assert out.returncode == 0, out
        words = out.stdout.split()
        assert words[0] == binary and words[1].count(".") == 2, out.stdout
