"""The worker registry (GET /v1/workers), the worker's own health port, and
retention: a finished or cancelled job leaves no trace in Redis after its TTL."""
import pytest
import http.client
import json
import signal
import socket
import time
from datetime import datetime, timezone

from harness import free_port, wait_for
from helpers import TIMESTAMP_RE, assert_error, redis_snapshot, worker_id

FAST = {"SPOOL_HEARTBEAT_MS": "200", "SPOOL_LEASE_MS": "1500",
        "SPOOL_SHUTDOWN_GRACE_MS": "1000", "SPOOL_REDIS_TIMEOUT_MS": "500"}


def workers(api):
    status, _, data = api.get("/v1/workers")
    assert status == 200, data
    return data["workers"]


def entry_of(api, wid):
    found = [w for w in workers(api) if w["id"] == wid]
    return found[0] if found else None


def parse_ts(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def http_get(port, path, timeout=3):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None
    finally:
        conn.close()


# -- worker registry ----------------------------------------------------------------

def test_workers_lists_a_live_worker_with_its_running_jobs(spawn):
    api = spawn.api()
    w = spawn.worker(queues="wa,wb", concurrency=3, env=FAST)
    wid = worker_id(w)
    job = api.enqueue("wb", {"type": "sleep", "payload": {"ms": 1500}})
    api.wait_state(job["id"], "running")
    e = wait_for(lambda: (lambda x: x if x and x["jobs"] else None)(entry_of(api, wid)), timeout=3,
                 what="the worker entry to show its running job")
    assert set(e) >= {"id", "host", "pid", "queues", "concurrency", "started_at", "last_heartbeat",
                      "processed", "failed", "jobs"}, e
    assert e["host"] == socket.gethostname() and e["pid"] == w.pid, e
    assert e["host"] in e["id"] and str(w.pid) in e["id"], e
    assert e["queues"] == ["wa", "wb"] and e["concurrency"] == 3, e
    for f in ("started_at", "last_heartbeat"):
        assert TIMESTAMP_RE.match(e[f]), e
    assert e["started_at"] <= e["last_heartbeat"], e
    age = (datetime.now(timezone.utc) - parse_ts(e["last_heartbeat"])).total_seconds()
    assert age < 1.0, f"last heartbeat {age:.2f} s ago with a 200 ms heartbeat"
    assert [j["id"] for j in e["jobs"]] == [job["id"]], e

    api.wait_state(job["id"], "succeeded", timeout=5)
    bad = api.enqueue("wa", {"type": "fail", "max_attempts": 1})
    api.wait_state(bad["id"], "dead")
    e = wait_for(lambda: (lambda x: x if x and x["processed"] == 1 and x["failed"] == 1 and not x["jobs"] else None)
                 (entry_of(api, wid)), timeout=3, what="the worker's counters to update")
    assert e["jobs"] == []


def test_sigkilled_worker_drops_out_of_the_list(spawn):
    api = spawn.api()
    victim = spawn.worker(env=FAST)
    survivor = spawn.worker(env=FAST)
    vid, sid = worker_id(victim), worker_id(survivor)
    wait_for(lambda: {vid, sid} <= {x["id"] for x in workers(api)}, timeout=3, what="both workers to be listed")
    victim.signal(signal.SIGKILL)
    victim.wait(5)
    killed = time.monotonic()
    wait_for(lambda: vid not in {x["id"] for x in workers(api)}, timeout=5, what="the killed worker to drop out")
    assert time.monotonic() - killed < 3, "the killed worker stayed listed for over 3 s"
    assert sid in {x["id"] for x in workers(api)}


def test_stopped_worker_leaves_the_list_at_once(spawn):
    api = spawn.api()
    w = spawn.worker(env=FAST)
    wid = worker_id(w)
    wait_for(lambda: entry_of(api, wid), timeout=3, what="the worker to be listed")
    w.signal(signal.SIGTERM)
    w.wait(10)
    assert entry_of(api, wid) is None


@pytest.mark.single_redis("stops and restarts the redis-server")
def test_worker_health_port(spawn, redis):
    api = spawn.api()
    port = free_port()
    w = spawn.worker(queues="default,extra", env=FAST, args=["--health-port", str(port)])
    wid = worker_id(w)
    wait_for(lambda: http_get(port, "/healthz")[0] == 200, timeout=5, what="the worker's health port")
    job = api.enqueue("default", {"type": "noop"})
    api.wait_state(job["id"], "succeeded")

    status, body = http_get(port, "/readyz")
    assert status == 200, body
    assert body["worker_id"] == wid, body
    assert isinstance(body["uptime_s"], int) and body["uptime_s"] >= 0, body
    assert body["processed"] == 1 and body["failed"] == 0 and body["running"] == 0, body
    assert body["queues"] == ["default", "extra"], body
    assert http_get(port, "/healthz")[1]["worker_id"] == wid

    redis.stop()
    wait_for(lambda: http_get(port, "/readyz")[0] == 503, timeout=5, what="/readyz to answer 503 with Redis down")
    assert http_get(port, "/healthz")[0] == 200
    redis.start()
    wait_for(lambda: http_get(port, "/readyz")[0] == 200, timeout=10, what="/readyz to recover with Redis back")


# -- retention ----------------------------------------------------------------------

def traces(redis, job_id):
    """Every key, list, set, zset or hash entry (value included) that mentions the job."""
    found = [e for e in redis_snapshot(redis) if job_id in " ".join(e)]
    # Also the plain listing of key names, and the members of the queue's lists and sets.
    found += [k for k in redis.keys() if job_id in k]
    q = job_id.split("~")[0]
    for prio in ("urgent", "high", "normal", "low"):
        found += [m for m in redis.cli("LRANGE", f"spool:{{{q}}}:pending:{prio}", 0, -1).splitlines() if m == job_id]
    for z in ("scheduled", "lease", "dead"):
        found += [m for m in redis.cli("ZRANGE", f"spool:{{{q}}}:{z}", 0, -1).splitlines() if m == job_id]
    return found


def gone(api, redis, job_id):
    wait_for(lambda: api.get(f"/v1/jobs/{job_id}")[0] == 404, timeout=3.5, what=f"job {job_id} to expire")
    assert_error(api.get(f"/v1/jobs/{job_id}"), 404, "not_found")
    assert_error(api.get(f"/v1/jobs/{job_id}/result"), 404, "not_found")
    left = traces(redis, job_id)
    assert not left, f"job {job_id} expired from the API but Redis still holds: {left}"


def test_api_result_ttl_setting_expires_succeeded_jobs(spawn, redis):
    api = spawn.api(env={"SPOOL_RESULT_TTL_S": "1"})
    spawn.worker(env=FAST)
    job = api.enqueue("default", {"type": "echo", "payload": "bye", "idempotency_key": "ttl-succeeded"})
    assert job["result_ttl_s"] == 1, job
    done = api.wait_state(job["id"], "succeeded")
    assert done["result"] == "bye"
    finished = time.monotonic()
    gone(api, redis, job["id"])
    assert time.monotonic() - finished < 3.0
    assert redis.keys("*idem*") == []
    # The key is free again: the same idempotency key makes a new job.
    again = api.post("/v1/queues/default/jobs", {"type": "noop", "idempotency_key": "ttl-succeeded"})
    assert again[0] == 201 and again[2]["id"] != job["id"], again


def test_per_job_result_ttl_expires_succeeded_and_cancelled_jobs(spawn, redis):
    api = spawn.api()
    spawn.worker(env=FAST)  # takes jobs from "default" only: "parked" jobs stay queued or scheduled
    keep = api.enqueue("default", {"type": "noop"})
    jobs = {
        "succeeded": api.enqueue("default", {"type": "echo", "payload": 1, "result_ttl_s": 1,
                                             "idempotency_key": "ttl-succeeded"}),
        "cancelled while running": api.enqueue("default", {"type": "sleep", "payload": {"ms": 30000},
                                                           "result_ttl_s": 1, "idempotency_key": "ttl-running"}),
        "cancelled while queued": api.enqueue("parked", {"type": "noop", "result_ttl_s": 1,
                                                         "idempotency_key": "ttl-queued"}),
        "cancelled while scheduled": api.enqueue("parked", {"type": "noop", "result_ttl_s": 1, "delay_ms": 60000,
                                                            "idempotency_key": "ttl-scheduled"}),
    }
    api.wait_state(jobs["succeeded"]["id"], "succeeded")
    api.wait_state(keep["id"], "succeeded")
    api.wait_state(jobs["cancelled while running"]["id"], "running")
    for how, job in jobs.items():
        if how.startswith("cancelled"):
            assert api.job(job["id"])["state"] == how.split()[-1]
            status, _, data = api.post(f"/v1/jobs/{job['id']}/cancel")
            assert status == 200 and data["state"] == "cancelled", (how, data)
    time.sleep(2.5)
    for how, job in jobs.items():
        status, _, data = api.get(f"/v1/jobs/{job['id']}")
        assert status == 404, f"{how} job with result_ttl_s 1 still there after 2.5 s: {data}"
        gone(api, redis, job["id"])
    assert redis.keys("*idem*") == [], "idempotency keys of expired jobs are left"
    assert api.job(keep["id"])["state"] == "succeeded"  # the default TTL (a day) keeps this one
