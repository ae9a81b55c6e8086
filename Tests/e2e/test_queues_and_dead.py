"""Queue administration: pause and resume, back-pressure (pending limits), the
queue detail with its throughput, and the dead-letter set (list, retry, purge, cap)."""
import time
from datetime import datetime, timezone


from harness import wait_for
from helpers import TIMESTAMP_RE, assert_error, ms_between, redis_snapshot

LISTING_FIELDS = {"name", "pending", "pending_total", "scheduled", "running", "dead",
                  "processed_total", "failed_total", "paused", "missing_total", "waiting_for_limits"}


def listing_entry(api, queue):
    status, _, data = api.get("/v1/queues")
    assert status == 200, data
    found = [q for q in data["queues"] if q["name"] == queue]
    assert len(found) == 1, data
    return found[0]


def detail(api, queue):
    status, _, data = api.get(f"/v1/queues/{queue}")
    assert status == 200, data
    return data


def jobs_snapshot(redis):
    """Everything in Redis but the worker registry (which heartbeats change)."""
    return [e for e in redis_snapshot(redis) if not e[0].startswith(("spool:worker", "spool:workers"))]


def dead_ids(redis, queue="default"):
    return redis.cli("ZRANGE", f"spool:{{{queue}}}:dead", 0, -1).splitlines()


def make_dead(api, n, queue="default", sequential=True, keys=False):
    """n jobs that die at their first failure, each with its own message (and, with
    `keys`, its own idempotency key); in order of death."""
    def body(i):
        b = {"type": "fail", "payload": {"message": f"boom {i}"}, "max_attempts": 1}
        if keys:
            b["idempotency_key"] = f"dead-{i}"
        return b

    if sequential:
        out = []
        for i in range(n):
            job = api.enqueue(queue, body(i))
            out.append(api.wait_state(job["id"], "dead"))
            time.sleep(0.005)  # distinct death times
        return out
    jobs = [api.enqueue(queue, body(i)) for i in range(n)]
    return [api.wait_state(j["id"], "dead") for j in jobs]


def test_a_new_queue_is_known_once_its_first_enqueue_is_answered(spawn):
    # The next request may reach another event loop (another Redis
    # connection) than the enqueue did: the queue must be there already.
    api = spawn.api(env={"SPOOL_API_THREADS": "4"})
    for i in range(200):
        queue = f"fresh-{i}"
        api.enqueue(queue, {"type": "noop"})
        status, _, data = api.get(f"/v1/queues/{queue}")
        assert status == 200, (queue, data)
        assert data["name"] == queue and data["pending_total"] == 1, data


# -- pause / resume -----------------------------------------------------------------

def test_paused_queue_keeps_jobs_queued_until_resumed(spawn):
    api = spawn.api()
    spawn.worker()
    # Only a queue that has had a job can be paused (a typo must not create one).
    api.enqueue("default", {"type": "noop", "delay_ms": 3_600_000})
    status, _, data = api.post("/v1/queues/default/pause")
    assert status == 200, data
    assert data["paused"] is True and data["name"] == "default", data
    assert LISTING_FIELDS <= set(data), data
    jobs = [api.enqueue("default", {"type": "echo", "payload": i}) for i in range(3)]
    time.sleep(1.5)
    for j in jobs:
        assert api.job(j["id"])["state"] == "queued", api.job(j["id"])
    entry = listing_entry(api, "default")
    assert entry["paused"] is True and entry["pending_total"] == 3, entry
    assert detail(api, "default")["paused"] is True

    status, _, data = api.post("/v1/queues/default/resume")
    assert status == 200 and data["paused"] is False, data
    resumed = time.monotonic()
    for i, j in enumerate(jobs):
        assert api.wait_state(j["id"], "succeeded", timeout=5)["result"] == i
    assert time.monotonic() - resumed < 2, "jobs took over 2 s to run after resume"
    assert listing_entry(api, "default")["paused"] is False


def test_pausing_does_not_stop_a_running_job(spawn):
    api = spawn.api()
    spawn.worker()
    running = api.enqueue("default", {"type": "sleep", "payload": {"ms": 800}})
    api.wait_state(running["id"], "running")
    assert api.post("/v1/queues/default/pause")[0] == 200
    waiting = api.enqueue("default", {"type": "noop"})
    done = api.wait_state(running["id"], "succeeded", timeout=5)
    assert done["attempts"] == 1
    time.sleep(0.5)
    assert api.job(waiting["id"])["state"] == "queued"
    assert api.post("/v1/queues/default/resume")[0] == 200
    api.wait_state(waiting["id"], "succeeded", timeout=5)


def test_pausing_a_queue_without_pending_jobs_lists_it(spawn):
    api = spawn.api()
    assert api.post("/v1/queues/fresh/pause")[0] == 404, "a queue that never had a job cannot be paused"
    api.enqueue("fresh", {"type": "noop", "delay_ms": 3_600_000})
    status, _, data = api.post("/v1/queues/fresh/pause")
    assert status == 200 and data["paused"] is True and data["pending_total"] == 0, data
    assert listing_entry(api, "fresh")["paused"] is True


# -- back-pressure ------------------------------------------------------------------

def test_max_pending_refuses_the_job_over_the_limit(spawn, redis):
    api = spawn.api(env={"SPOOL_MAX_PENDING": "3"})
    for i in range(3):
        api.enqueue("default", {"type": "noop", "idempotency_key": f"k{i}"})
    keys_before = sorted(redis.keys())
    before = redis_snapshot(redis)
    resp = api.post("/v1/queues/default/jobs", {"type": "noop"})
    assert_error(resp, 429, "queue_full")
    assert int(resp[1]["retry-after"]) >= 1, resp[1]
    assert sorted(redis.keys()) == keys_before
    assert redis_snapshot(redis) == before
    assert listing_entry(api, "default")["pending_total"] == 3
    # A duplicate of a stored job adds nothing, so it is answered even when full.
    status, _, data = api.post("/v1/queues/default/jobs", {"type": "noop", "idempotency_key": "k1"})
    assert status == 200, (status, data)
    assert redis_snapshot(redis) == before


def test_batch_crossing_the_limit_is_refused_whole(spawn, redis):
    api = spawn.api(env={"SPOOL_MAX_PENDING": "3"})
    api.enqueue("default", {"type": "noop"})
    before = redis_snapshot(redis)
    resp = api.post("/v1/queues/default/jobs/batch", {"jobs": [{"type": "noop"}] * 3})
    assert_error(resp, 429, "queue_full")
    assert "retry-after" in resp[1]
    assert redis_snapshot(redis) == before
    assert listing_entry(api, "default")["pending_total"] == 1
    status, _, data = api.post("/v1/queues/default/jobs/batch", {"jobs": [{"type": "noop"}] * 2})
    assert status == 201 and len(data["jobs"]) == 2, data
    assert listing_entry(api, "default")["pending_total"] == 3
    assert_error(api.post("/v1/queues/default/jobs", {"type": "noop"}), 429, "queue_full")


def test_queue_max_pending_overrides_per_queue(spawn, redis):
    api = spawn.api(env={"SPOOL_MAX_PENDING": "3", "SPOOL_QUEUE_MAX_PENDING": "small=1,large=5"})
    api.enqueue("small", {"type": "noop"})
    assert_error(api.post("/v1/queues/small/jobs", {"type": "noop"}), 429, "queue_full")
    for _ in range(5):
        api.enqueue("large", {"type": "noop"})
    assert_error(api.post("/v1/queues/large/jobs", {"type": "noop"}), 429, "queue_full")
    for _ in range(3):
        api.enqueue("other", {"type": "noop"})
    assert_error(api.post("/v1/queues/other/jobs", {"type": "noop"}), 429, "queue_full")
    counts = {q["name"]: q["pending_total"] for q in api.get("/v1/queues")[2]["queues"]}
    assert counts == {"small": 1, "large": 5, "other": 3}, counts


def test_running_jobs_free_pending_slots(spawn):
    api = spawn.api(env={"SPOOL_MAX_PENDING": "1"})
    api.enqueue("default", {"type": "noop"})
    assert_error(api.post("/v1/queues/default/jobs", {"type": "noop"}), 429, "queue_full")
    spawn.worker()
    wait_for(lambda: listing_entry(api, "default")["pending_total"] == 0, timeout=5, what="the queue to drain")
    api.enqueue("default", {"type": "noop"})


# -- queue detail -------------------------------------------------------------------

def test_queue_detail_has_the_listing_fields_and_throughput(spawn):
    api = spawn.api()
    spawn.worker(queues="stats")
    ok = [api.enqueue("stats", {"type": "noop"}) for _ in range(3)]
    bad = api.enqueue("stats", {"type": "fail", "max_attempts": 1})
    for j in ok:
        api.wait_state(j["id"], "succeeded")
    api.wait_state(bad["id"], "dead")
    d = detail(api, "stats")
    entry = listing_entry(api, "stats")
    assert set(d) == LISTING_FIELDS | {"throughput"}, d.keys()
    assert {k: d[k] for k in LISTING_FIELDS} == entry
    assert d["processed_total"] == 3 and d["failed_total"] == 1 and d["dead"] == 1, d

    minutes = d["throughput"]
    assert len(minutes) == 60, len(minutes)
    for m in minutes:
        assert set(m) == {"minute", "processed", "failed"}, m
        assert TIMESTAMP_RE.match(m["minute"]) and m["minute"].endswith(":00.000Z"), m
    gaps = {ms_between(a["minute"], b["minute"]) for a, b in zip(minutes, minutes[1:])}
    assert gaps == {60000}, gaps
    now = datetime.now(timezone.utc)
    last = datetime.strptime(minutes[-1]["minute"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert 0 <= (now - last).total_seconds() < 61, (now, minutes[-1])
    # The jobs just run are in the last minute (or the one before, across a minute boundary).
    assert sum(m["processed"] for m in minutes[-2:]) == 3, minutes[-2:]
    assert sum(m["failed"] for m in minutes[-2:]) == 1, minutes[-2:]
    assert sum(m["processed"] + m["failed"] for m in minutes[:-2]) == 0
    assert minutes[-1]["processed"] + minutes[-1]["failed"] > 0 or now.second < 5, minutes[-1]


def test_unknown_queue_detail_is_404(spawn):
    api = spawn.api()
    assert_error(api.get("/v1/queues/nope"), 404, "not_found")


# -- dead letters -------------------------------------------------------------------

def test_dead_list_is_newest_first_and_paginated(spawn):
    api = spawn.api()
    spawn.worker()
    dead = make_dead(api, 5)
    order = [j["id"] for j in sorted(dead, key=lambda j: j["finished_at"], reverse=True)]

    pages, cursor = [], None
    for _ in range(5):
        path = "/v1/queues/default/dead?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, _, data = api.get(path)
        assert status == 200, data
        pages.append(data["jobs"])
        cursor = data["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1], [[j["id"] for j in p] for p in pages]
    got = [j for p in pages for j in p]
    ids = [j["id"] for j in got]
    assert len(set(ids)) == 5, ids
    assert ids == order, (ids, order)
    finished = [j["finished_at"] for j in got]
    assert finished == sorted(finished, reverse=True)
    by_id = {j["id"]: j for j in dead}
    for j in got:
        assert j["state"] == "dead" and j["attempts"] == 1, j
        assert j["error"]["message"] == by_id[j["id"]]["error"]["message"], j
        assert j["error"]["message"].startswith("boom "), j

    # Default page holds all five; the newest first.
    status, _, data = api.get("/v1/queues/default/dead")
    assert status == 200 and [j["id"] for j in data["jobs"]] == order and data["next_cursor"] is None, data


def test_bad_dead_list_query_is_400(spawn):
    api = spawn.api()
    for query in ["limit=0", "limit=1001", "limit=abc", "limit=-1", "cursor=bad", "cursor=1.2.3", "cursor=abc.1",
                  "cursor=-5.0"]:
        assert_error(api.get(f"/v1/queues/default/dead?{query}"), 400, "invalid_field",
                     mentions=[query.split("=")[0]])


def test_retry_a_dead_job(spawn, redis):
    api = spawn.api()
    spawn.worker()
    [job] = make_dead(api, 1)
    # Paused, so that the retried job (which fails at once) is seen queued.
    assert api.post("/v1/queues/default/pause")[0] == 200
    status, _, data = api.post(f"/v1/jobs/{job['id']}/retry")
    assert status == 200, data
    assert data["id"] == job["id"] and data["state"] == "queued", data
    assert data["attempts"] == 0 and data["max_attempts"] == 1, data
    assert data["finished_at"] is None and data["started_at"] is None, data
    assert dead_ids(redis) == []
    assert listing_entry(api, "default")["dead"] == 0
    assert api.job(job["id"])["state"] == "queued"
    assert api.post("/v1/queues/default/resume")[0] == 200
    again = api.wait_state(job["id"], "dead", timeout=5)
    assert again["attempts"] == 1, again
    assert again["finished_at"] > job["finished_at"], (job, again)
    assert dead_ids(redis) == [job["id"]]


def test_retry_of_a_job_that_is_not_dead_is_409(spawn, redis):
    api = spawn.api()
    queued = api.enqueue("default", {"type": "noop"})
    before = api.job(queued["id"])
    assert_error(api.post(f"/v1/jobs/{queued['id']}/retry"), 409, "conflict")
    assert api.job(queued["id"]) == before
    spawn.worker()
    done = api.wait_state(queued["id"], "succeeded")
    snap = jobs_snapshot(redis)
    assert_error(api.post(f"/v1/jobs/{queued['id']}/retry"), 409, "conflict")
    assert api.job(queued["id"]) == done
    assert jobs_snapshot(redis) == snap
    assert_error(api.post("/v1/jobs/default~01M81Z6DCKPEWCQ0EMEH1QYQ42/retry"), 404, "not_found")


def test_retry_all_then_purge_dead(spawn, redis):
    api = spawn.api()
    spawn.worker()
    dead = make_dead(api, 3, sequential=False, keys=True)
    ids = {j["id"] for j in dead}
    status, _, data = api.post("/v1/queues/default/dead/retry")
    assert status == 200 and data == {"retried": 3}, data
    # They run again and die again, each at its first attempt of the new round.
    wait_for(lambda: len(dead_ids(redis)) == 3, timeout=5, what="the retried jobs to die again")
    for j in dead:
        again = api.wait_state(j["id"], "dead")
        assert again["attempts"] == 1 and again["finished_at"] > j["finished_at"], again
    assert listing_entry(api, "default")["dead"] == 3

    status, _, data = api.request("DELETE", "/v1/queues/default/dead")
    assert status == 200 and data == {"deleted": 3}, data
    assert dead_ids(redis) == []
    assert redis.keys("spool:{default}:job:*") == []
    assert redis.keys("spool:{default}:idem:*") == [], "purged jobs left their idempotency keys"
    for job_id in ids:
        assert_error(api.get(f"/v1/jobs/{job_id}"), 404, "not_found")
    assert listing_entry(api, "default")["dead"] == 0
    assert api.get("/v1/queues/default/dead")[2] == {"jobs": [], "next_cursor": None}
    status, _, data = api.post("/v1/queues/default/dead/retry")
    assert status == 200 and data == {"retried": 0}, data


def test_dead_max_keeps_the_newest(spawn, redis):
    api = spawn.api()
    spawn.worker(env={"SPOOL_DEAD_MAX": "3"})
    dead = make_dead(api, 5, keys=True)
    kept = [j["id"] for j in dead[-3:]][::-1]
    data = api.get("/v1/queues/default/dead")[2]
    assert [j["id"] for j in data["jobs"]] == kept, data
    assert sorted(dead_ids(redis)) == sorted(kept)
    assert listing_entry(api, "default")["dead"] == 3
    for j in dead[:2]:
        assert_error(api.get(f"/v1/jobs/{j['id']}"), 404, "not_found")
    assert len(redis.keys("spool:{default}:job:*")) == 3
    # A dropped job is gone for good: nothing in Redis refers to it any more.
    for j in dead[:2]:
        left = [e for e in redis_snapshot(redis) if j["id"] in " ".join(e)]
        assert not left, f"dead job {j['id']} was dropped by SPOOL_DEAD_MAX but Redis still holds: {left}"
