"""Fair shares between tenants: jobs with a `group` are served in turn within their queue
and priority, so one tenant's backlog delays another's job by one turn at most; a group's
concurrency is capped by the limit `group:<name>`. Real Redis, API and worker processes."""
import time

from harness import wait_for
from helpers import assert_error, enqueue_many, ms_between

FAST = {"SPOOL_HEARTBEAT_MS": "300", "SPOOL_LEASE_MS": "3000"}


def groups(api, queue, limit=100):
    out, cursor = {}, None
    for _ in range(1000):
        s, _, data = api.get(f"/v1/queues/{queue}/groups?limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        assert s == 200, data
        out.update({g["group"]: g["pending"] for g in data["groups"]})
        cursor = data["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("the cursor never ended")


def test_a_small_tenant_is_not_stuck_behind_a_big_backlog(spawn):
    api = spawn.api()
    api.enqueue("fair", {"type": "noop"})  # the queue exists, so it can be paused
    wait_for(lambda: api.get("/v1/queues/fair")[0] == 200)
    assert api.post("/v1/queues/fair/pause")[0] == 200
    a = enqueue_many(api, "fair", [{"type": "noop", "group": "A"} for _ in range(10000)])
    b = enqueue_many(api, "fair", [{"type": "noop", "group": "B"} for _ in range(10)])
    q = api.get("/v1/queues/fair")[2]
    assert q["pending_total"] == 10011, q
    assert groups(api, "fair", limit=1) == {"A": 10000, "B": 10}
    concurrency = 4
    spawn.worker(queues="fair", concurrency=concurrency)
    assert api.post("/v1/queues/fair/resume")[0] == 200
    done_b = [api.wait_state(i, "succeeded", timeout=30) for i in b]
    last_b = max(j["started_at"] for j in done_b)
    # The A jobs that started before B's last one: B waited one turn per job,
    # not behind 10,000 (claims come a batch per loop, hence the 2 × concurrency).
    before = 0
    for i in a[:200]:
        j = api.job(i)
        if j["state"] == "succeeded" and ms_between(j["started_at"], last_b) > 0:
            before += 1
    assert before <= 10 + 2 * concurrency, before
    for i in a[-5:]:
        api.wait_state(i, "succeeded", timeout=60)
    wait_for(lambda: api.get("/v1/queues/fair")[2]["pending_total"] == 0, what="the queue to drain")
    assert groups(api, "fair") == {}


def test_grouped_jobs_cancel_and_count_and_bad_groups_are_refused(spawn):
    api = spawn.api()
    api.enqueue("g", {"type": "noop"})
    assert api.post("/v1/queues/g/pause")[0] == 200
    ids = enqueue_many(api, "g", [{"type": "noop", "group": "t1", "priority": "high"} for _ in range(3)])
    assert api.post(f"/v1/jobs/{ids[0]}/cancel")[0] == 200
    assert groups(api, "g") == {"t1": 2}
    q = api.get("/v1/queues/g")[2]
    assert q["pending"]["high"] == 2 and q["pending_total"] == 3, q
    for bad in ["a b", "", "x" * 65, 7, "a{b}"]:
        assert_error(api.post("/v1/queues/g/jobs", {"type": "noop", "group": bad}), 400, "invalid_field", ["group"])
    assert_error(api.get("/v1/queues/g/groups?cursor=abc"), 400, "invalid_field", ["cursor"])
    assert_error(api.get("/v1/queues/nope/groups"), 404, "not_found")
    spawn.worker(queues="g", concurrency=2)
    assert api.post("/v1/queues/g/resume")[0] == 200
    for i in ids[1:]:
        api.wait_state(i, "succeeded")
    assert api.job(ids[0])["state"] == "cancelled"
    assert api.job(ids[1])["group"] == "t1"
    # Purging a queue removes grouped jobs too.
    assert api.post("/v1/queues/g/pause")[0] == 200
    enqueue_many(api, "g", [{"type": "noop", "group": f"t{i % 7}"} for i in range(50)])
    s, _, data = api.request("DELETE", "/v1/queues/g?purge=true")
    assert s == 200, data
    assert api.get("/v1/queues/g")[0] == 404


def test_a_groups_concurrency_cap_is_the_limit_named_after_it(spawn):
    api = spawn.api()
    s, _, _ = api.request("PUT", "/v1/limits/group:acme", {"concurrency": 1})
    assert s == 201
    spawn.worker(concurrency=8, env=FAST)
    time.sleep(1)  # workers read the defined limits every heartbeat
    acme = enqueue_many(api, "default", [{"type": "sleep", "group": "acme", "payload": {"ms": 300}} for _ in range(4)])
    other = enqueue_many(api, "default", [{"type": "sleep", "group": "other", "payload": {"ms": 300}} for _ in range(4)])
    samples = []
    t_end = time.time() + 1.0
    while time.time() < t_end:
        samples.append(api.get("/v1/limits/group:acme")[2]["running"])
        time.sleep(0.01)
    assert max(samples) == 1, samples
    for i in other:
        api.wait_state(i, "succeeded", timeout=5)
    for i in acme:
        api.wait_state(i, "succeeded", timeout=10)
    runs = sorted((api.job(i)["started_at"], api.job(i)["finished_at"]) for i in acme)
    # One at a time: each acme job started after the one before it finished
    # (a parked job's start is the claim after the release).
    for (s1, f1), (s2, _) in zip(runs, runs[1:]):
        assert ms_between(f1, s2) >= -5, (f1, s2)
