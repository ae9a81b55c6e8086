"""Scheduling (delay_ms, run_at, retries in the scheduled set), idempotency keys,
and long polls (GET /v1/jobs/{id}?wait=S), through the real API and worker."""
import http.client
import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from harness import wait_for
from helpers import TIMESTAMP_RE, assert_error, ms_between, redis_snapshot

SCHEDULED_ZSET = "spool:{default}:scheduled"


def rfc3339(dt):
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def queue_stats(api, queue):
    status, _, data = api.get(f"/v1/queues/{queue}")
    assert status == 200, data
    return data


def job_hashes(redis, queue="default"):
    return redis.keys(f"spool:{{{queue}}}:job:*")


def idle_worker(spawn, **kw):
    """A worker whose fetch loops have had time to go idle (blocked waiting for work)."""
    w = spawn.worker(**kw)
    time.sleep(0.3)
    return w


# -- scheduling ---------------------------------------------------------------------

def wait_done(api, job_id, timeout=10):
    """Waits with a long poll rather than polling: an idle system sends Redis
    nothing while a scheduled job comes due, and neither may the test."""
    status, _, data = api.get(f"/v1/jobs/{job_id}?wait={timeout}", timeout=timeout + 5)
    assert status == 200, data
    assert data["state"] == "succeeded", data
    return data


@pytest.mark.parametrize("concurrency", [1, 2])
def test_delayed_jobs_are_scheduled_then_start_on_time(spawn, redis, concurrency):
    api = spawn.api()
    idle_worker(spawn, concurrency=concurrency)
    lateness = {}
    # Several delays: a start that misses by up to Redis' 100 ms timer tick
    # misses by more than 50 ms about half the time, so one delay is not enough.
    for delay_ms in (50, 150, 300, 450, 700, 1200):
        job = api.enqueue("default", {"type": "noop", "delay_ms": delay_ms})
        assert job["state"] == "scheduled", job
        assert TIMESTAMP_RE.match(job["run_at"] or ""), job
        assert ms_between(job["created_at"], job["run_at"]) == delay_ms, job
        if delay_ms >= 300:
            now = api.job(job["id"])
            assert now["state"] == "scheduled" and now["run_at"] == job["run_at"], now
            assert job["id"] in redis.cli("ZRANGE", SCHEDULED_ZSET, 0, -1).splitlines()
            assert queue_stats(api, "default")["scheduled"] == 1
        done = wait_done(api, job["id"])
        lateness[delay_ms] = ms_between(done["run_at"], done["started_at"])
        time.sleep(0.2)  # idle again before the next one
    assert all(0 <= late < 50 for late in lateness.values()), \
        f"ms from run_at to start, by delay (idle worker, concurrency {concurrency}): {lateness}"


def test_overlapping_scheduled_jobs_both_start_on_time(spawn):
    """A job due sooner than one that an idle fetch loop already waits for."""
    api = spawn.api()
    idle_worker(spawn, concurrency=2)
    lateness = {}
    for later_ms, sooner_ms in ((900, 400), (800, 300), (1000, 500), (700, 350)):
        later = api.enqueue("default", {"type": "noop", "delay_ms": later_ms})
        time.sleep(0.05)
        sooner = api.enqueue("default", {"type": "noop", "delay_ms": sooner_ms})
        for delay, job in ((sooner_ms, sooner), (later_ms, later)):
            done = wait_done(api, job["id"])
            lateness[f"{sooner_ms} while {later_ms} waits" if delay == sooner_ms else f"{later_ms}"] = \
                ms_between(done["run_at"], done["started_at"])
        time.sleep(0.1)
    assert all(0 <= late < 50 for late in lateness.values()), f"ms from run_at to start: {lateness}"


def test_run_at_in_the_future_starts_on_time(spawn):
    api = spawn.api()
    idle_worker(spawn)
    at = datetime.now(timezone.utc) + timedelta(milliseconds=800)
    run_at = rfc3339(at)
    job = api.enqueue("default", {"type": "noop", "run_at": run_at})
    assert job["state"] == "scheduled" and job["run_at"] == run_at, job
    assert api.job(job["id"])["state"] == "scheduled"
    done = wait_done(api, job["id"])
    assert done["run_at"] == run_at
    late = ms_between(run_at, done["started_at"])
    assert 0 <= late < 50, f"started {late} ms after run_at"


def test_run_at_with_a_utc_offset(spawn):
    api = spawn.api()
    at = datetime.now(timezone.utc) + timedelta(seconds=30)
    local = at.astimezone(timezone(timedelta(hours=5, minutes=30)))
    text = local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}+05:30"
    job = api.enqueue("default", {"type": "noop", "run_at": text})
    assert job["state"] == "scheduled" and job["run_at"] == rfc3339(at), (text, job)


def test_run_at_in_the_past_runs_at_once(spawn):
    api = spawn.api()
    idle_worker(spawn)
    past = rfc3339(datetime.now(timezone.utc) - timedelta(hours=1))
    job = api.enqueue("default", {"type": "echo", "payload": "past", "run_at": past})
    assert job["state"] != "scheduled", job
    done = api.wait_state(job["id"], "succeeded", timeout=5)
    assert done["result"] == "past"
    assert ms_between(done["created_at"], done["started_at"]) < 200, done


def test_delay_ms_and_run_at_together_are_refused(spawn, redis):
    api = spawn.api()
    api.enqueue("default", {"type": "noop"})
    before = redis_snapshot(redis)
    resp = api.post("/v1/queues/default/jobs",
                    {"type": "noop", "delay_ms": 1000, "run_at": "2030-01-01T00:00:00Z"})
    assert_error(resp, 400, "invalid_field", mentions=["run_at"])
    assert redis_snapshot(redis) == before


def test_retry_waits_in_the_scheduled_set(spawn, redis):
    api = spawn.api()
    spawn.worker()
    job = api.enqueue("default", {"type": "fail", "payload": {"times": 1, "message": "first try fails"},
                                  "backoff_ms": 500, "max_attempts": 2})
    between = wait_for(lambda: (lambda j: j if j["attempts"] == 1 and j["state"] == "scheduled" else None)(api.job(job["id"])),
                       timeout=5, what="the job to wait for its retry")
    assert between["error"]["message"] == "first try fails" and between["error"]["attempt"] == 1, between
    assert TIMESTAMP_RE.match(between["run_at"] or ""), between
    assert job["id"] in redis.cli("ZRANGE", SCHEDULED_ZSET, 0, -1).splitlines()
    stats = queue_stats(api, "default")
    assert stats["scheduled"] == 1 and stats["pending_total"] == 0 and stats["running"] == 0, stats
    # 500 ms ± 25 % after the failure.
    assert 375 - 5 <= ms_between(between["started_at"], between["run_at"]) <= 625 + 200, between
    done = api.wait_state(job["id"], "succeeded", timeout=5)
    assert done["attempts"] == 2
    assert ms_between(between["run_at"], done["started_at"]) >= 0, (between, done)
    assert redis.cli("ZCARD", SCHEDULED_ZSET) == "0"


# -- idempotency --------------------------------------------------------------------

def test_same_idempotency_key_returns_the_first_job_and_stores_nothing(spawn, redis):
    api = spawn.api()
    status, headers, first = api.post("/v1/queues/default/jobs",
                                      {"type": "echo", "payload": "one", "idempotency_key": "order-1"})
    assert status == 201, first
    before = redis_snapshot(redis)
    pending_before = queue_stats(api, "default")["pending_total"]
    status, headers, again = api.post("/v1/queues/default/jobs",
                                      {"type": "echo", "payload": "one", "idempotency_key": "order-1"})
    assert status == 200, again
    assert again["id"] == first["id"] and again["payload"] == "one", again
    assert headers.get("location") == f"/v1/jobs/{first['id']}"
    assert queue_stats(api, "default")["pending_total"] == pending_before == 1
    assert redis_snapshot(redis) == before, "a duplicate enqueue changed Redis"


def test_same_idempotency_key_in_another_queue_is_a_new_job(spawn, redis):
    api = spawn.api()
    a = api.post("/v1/queues/alpha/jobs", {"type": "noop", "idempotency_key": "shared"})
    b = api.post("/v1/queues/beta/jobs", {"type": "noop", "idempotency_key": "shared"})
    assert a[0] == 201 and b[0] == 201, (a, b)
    assert a[2]["id"] != b[2]["id"]
    assert a[2]["queue"] == "alpha" and b[2]["queue"] == "beta"
    assert len(job_hashes(redis, "alpha")) == 1 and len(job_hashes(redis, "beta")) == 1


def test_duplicate_key_inside_one_batch_gives_the_same_job_twice(spawn, redis):
    api = spawn.api()
    status, _, data = api.post("/v1/queues/default/jobs/batch", {"jobs": [
        {"type": "echo", "payload": 1, "idempotency_key": "dup"},
        {"type": "echo", "payload": 2},
        {"type": "echo", "payload": 1, "idempotency_key": "dup"},
    ]})
    assert status == 201, data
    ids = [j["id"] for j in data["jobs"]]
    assert ids[0] == ids[2] != ids[1], ids
    assert data["jobs"][2]["payload"] == 1, data
    assert len(job_hashes(redis)) == 2
    assert queue_stats(api, "default")["pending_total"] == 2
    # A later batch with the same key again answers the stored job.
    status, _, data = api.post("/v1/queues/default/jobs/batch",
                               {"jobs": [{"type": "echo", "payload": 1, "idempotency_key": "dup"}]})
    assert status in (200, 201), data
    assert data["jobs"][0]["id"] == ids[0] and data["jobs"][0]["payload"] == 1
    assert len(job_hashes(redis)) == 2


def test_idempotency_key_length_limit(spawn, redis):
    api = spawn.api()
    assert api.post("/v1/queues/default/jobs", {"type": "noop", "idempotency_key": "k" * 200})[0] == 201
    before = redis_snapshot(redis)
    resp = api.post("/v1/queues/default/jobs", {"type": "noop", "idempotency_key": "k" * 201})
    assert_error(resp, 400, "invalid_field", mentions=["idempotency_key"])
    assert redis_snapshot(redis) == before


def test_concurrent_duplicate_enqueues_store_one_job(spawn, redis):
    api = spawn.api()
    results = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def enqueue(i):
        start.wait()
        resp = api.post("/v1/queues/default/jobs", {"type": "echo", "payload": "same", "idempotency_key": "race"})
        with lock:
            results.append(resp)

    threads = [threading.Thread(target=enqueue, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(results) == 20
    statuses = sorted(r[0] for r in results)
    assert statuses == [200] * 19 + [201], statuses
    assert len({r[2]["id"] for r in results}) == 1, results
    assert len(job_hashes(redis)) == 1
    assert queue_stats(api, "default")["pending_total"] == 1


# -- waiting ------------------------------------------------------------------------

def timed_get(api, path, timeout=70):
    t0 = time.monotonic()
    resp = api.get(path, timeout=timeout)
    return resp, time.monotonic() - t0


def test_wait_answers_when_the_job_finishes(spawn):
    api = spawn.api()
    spawn.worker()
    job = api.enqueue("default", {"type": "sleep", "payload": {"ms": 500}})
    (status, _, data), took = timed_get(api, f"/v1/jobs/{job['id']}?wait=10")
    assert status == 200 and data["state"] == "succeeded", data
    assert 0.4 <= took <= 1.2, f"wait=10 on a 500 ms job answered after {took:.2f} s"


def test_wait_times_out_with_the_current_state(spawn):
    api = spawn.api()
    job = api.enqueue("default", {"type": "noop"})
    (status, _, data), took = timed_get(api, f"/v1/jobs/{job['id']}?wait=1")
    assert status == 200 and data["state"] == "queued", data
    assert 0.9 <= took <= 1.6, f"wait=1 answered after {took:.2f} s"


def test_wait_on_a_finished_job_answers_at_once(spawn):
    api = spawn.api()
    spawn.worker()
    job = api.enqueue("default", {"type": "echo", "payload": "x"})
    api.wait_state(job["id"], "succeeded")
    (status, _, data), took = timed_get(api, f"/v1/jobs/{job['id']}?wait=60")
    assert status == 200 and data["result"] == "x", data
    assert took < 0.5, took


def test_bad_wait_is_400(spawn):
    api = spawn.api()
    job = api.enqueue("default", {"type": "noop"})
    for value in ["61", "abc", "-1", "60.5", "nan", "inf", ""]:
        resp, took = timed_get(api, f"/v1/jobs/{job['id']}?wait={value}")
        assert_error(resp, 400, "invalid_field", mentions=["wait"])
        assert took < 0.5, (value, took)


def test_wait_on_an_unknown_job_is_404_at_once(spawn):
    api = spawn.api()
    resp, took = timed_get(api, "/v1/jobs/default~01M81Z6DCKPEWCQ0EMEH1QYQ42?wait=10")
    assert_error(resp, 404, "not_found")
    assert took < 0.5, took


def test_300_waiting_clients_all_get_their_answer(spawn):
    api = spawn.api()
    status, _, data = api.post("/v1/queues/default/jobs/batch", {"jobs": [{"type": "echo", "payload": i} for i in range(300)]})
    assert status == 201, data
    ids = [j["id"] for j in data["jobs"]]
    answers = {}
    errors = []
    lock = threading.Lock()

    def waiter(i, job_id):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
            t0 = time.monotonic()
            conn.request("GET", f"/v1/jobs/{job_id}?wait=10")
            resp = conn.getresponse()
            body = json.loads(resp.read())
            conn.close()
            with lock:
                answers[i] = (resp.status, body, time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append((i, repr(e)))

    threads = [threading.Thread(target=waiter, args=(i, job_id), daemon=True) for i, job_id in enumerate(ids)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    with lock:
        early = dict(answers)
    assert not early, f"{len(early)} waiters answered before any worker ran: {list(early.values())[:3]}"
    # While 300 requests wait, the API still answers at once.
    for _ in range(5):
        (status, _, _), took = timed_get(api, "/healthz")
        assert status == 200 and took < 0.2, f"/healthz took {took:.3f} s with 300 waiting clients"

    started = time.monotonic()
    spawn.worker(concurrency=4)
    for t in threads:
        t.join(max(0.1, 15 - (time.monotonic() - started)))
    assert not errors, errors[:5]
    assert len(answers) == 300, f"only {len(answers)} of 300 waiters answered"
    for i, (status, body, took) in answers.items():
        assert status == 200, body
        assert body["id"] == ids[i] and body["state"] == "succeeded" and body["result"] == i, body
        assert took < 10, f"waiter {i} was answered by its timeout ({took:.2f} s), not by the job finishing"
