"""SPOOL_MIN_REPLICAS (issue 14, part 2): an enqueue, cancel or retry is answered
only once that many replicas hold it (Redis WAIT); fewer in time is a 503
not_replicated naming the jobs, and a retry with the same idempotency key finds
them. Against a real primary and a real replica (redis-server --replicaof)."""
import os
import signal
import subprocess

import pytest

from harness import API, BIN_DIR, Redis, wait_for
from helpers import assert_error


@pytest.fixture
def replica(redis):
    r = Redis(extra_args=["--replicaof", "127.0.0.1", str(redis.port)])
    wait_for(lambda: "master_link_status:up" in r.cli("INFO", "replication"), timeout=15, what="the replica to sync")
    yield r
    os.kill(r.proc.pid, signal.SIGCONT)
    r.cleanup()


# Every API a test starts, stopped when the test ends (pass or fail).
_started = []


@pytest.fixture(autouse=True)
def _stop_apis():
    yield
    while _started:
        _started.pop().stop()


def started(api):
    _started.append(api)
    return api


def acked_api(redis, **env):
    return started(API(redis.url, env={"SPOOL_MIN_REPLICAS": "1", "SPOOL_REPLICA_ACK_TIMEOUT_MS": "300", **env}))


@pytest.mark.single_redis("makes a replica of the one redis-server")
def test_a_201_means_the_replica_holds_the_job(redis, replica):
    api = acked_api(redis)
    for i in range(20):
        job = api.enqueue("acked", {"type": "noop", "payload": {"i": i}})
        # Answered only after WAIT: the replica has it already, no polling.
        assert replica.cli("HGET", f"spool:{{acked}}:job:{job['id']}", "type") == "noop", i
    status, _, body = api.post("/v1/queues/acked/jobs/batch", {"jobs": [{"type": "noop"}] * 50})
    assert status == 201, body
    for j in body["jobs"]:
        assert replica.cli("HGET", f"spool:{{acked}}:job:{j['id']}", "state") == "queued"


@pytest.mark.single_redis("makes a replica of the one redis-server")
def test_too_few_replicas_is_a_503_naming_the_jobs_and_a_retry_finds_them(redis, replica):
    api = acked_api(redis)
    os.kill(replica.proc.pid, signal.SIGSTOP)  # the replica stops acknowledging
    request = {"type": "noop", "idempotency_key": "order-7"}
    err = assert_error(api.post("/v1/queues/acked/jobs", request), 503, "not_replicated",
                       mentions=["0 of the 1 replicas", "idempotency_key", "SPOOL_MIN_REPLICAS"])
    stored = redis.keys("spool:{acked}:job:*")
    assert len(stored) == 1, "the primary stored it"
    job_id = stored[0].split(":job:")[1]
    assert job_id in err["message"], err
    status, _, body = api.post("/v1/queues/acked/jobs/batch", {"jobs": [{"type": "noop"}] * 3})
    err = assert_error((status, {"content-type": "application/json"}, body), 503, "not_replicated")
    assert err["message"].count("acked~") == 3, err

    os.kill(replica.proc.pid, signal.SIGCONT)
    wait_for(lambda: replica.cli("HGET", f"spool:{{acked}}:job:{job_id}", "type") == "noop", timeout=15,
             what="the replica to catch up")
    status, _, again = api.post("/v1/queues/acked/jobs", request)
    assert status == 200 and again["id"] == job_id, (status, again)


@pytest.mark.single_redis("makes a replica of the one redis-server")
def test_cancel_and_retry_wait_for_the_replica_too(redis, replica, spawn):
    api = acked_api(redis)
    job = api.enqueue("acked", {"type": "noop"})
    os.kill(replica.proc.pid, signal.SIGSTOP)
    assert_error(api.post(f"/v1/jobs/{job['id']}/cancel"), 503, "not_replicated", mentions=[job["id"]])
    assert api.job(job["id"])["state"] == "cancelled", "the primary holds the cancel"
    # A call that changed nothing has nothing to lose: not a 503.
    assert_error(api.post(f"/v1/jobs/{job['id']}/cancel"), 409, "conflict")
    os.kill(replica.proc.pid, signal.SIGCONT)

    dead = api.enqueue("acked2", {"type": "fail", "max_attempts": 1})
    spawn.worker(queues="acked2")
    api.wait_state(dead["id"], "dead")
    os.kill(replica.proc.pid, signal.SIGSTOP)
    assert_error(api.post(f"/v1/jobs/{dead['id']}/retry"), 503, "not_replicated", mentions=[dead["id"]])


def test_off_by_default_and_no_replica_needed(redis):
    api = started(API(redis.url))
    api.enqueue("plain", {"type": "noop"})
    metrics = api.get("/metrics")[2]
    assert "spool_writes_not_replicated_total 0" in metrics


@pytest.mark.single_redis("needs a Redis with no replica (the cluster's primaries have one)")
def test_without_any_replica_every_write_is_refused_as_not_replicated(redis):
    api = acked_api(redis)
    assert_error(api.post("/v1/queues/lonely/jobs", {"type": "noop"}), 503, "not_replicated")
    assert "spool_writes_not_replicated_total 1" in api.get("/metrics")[2]


def test_the_wait_must_fit_in_the_redis_timeout(redis):
    proc = subprocess.run([str(BIN_DIR / "spool-api")], capture_output=True, text=True, timeout=10,
                          env={**os.environ, "REDIS_URL": redis.url, "SPOOL_MIN_REPLICAS": "1",
                               "SPOOL_REPLICA_ACK_TIMEOUT_MS": "2000", "SPOOL_REDIS_TIMEOUT_MS": "2000"})
    assert proc.returncode == 2 and "SPOOL_REPLICA_ACK_TIMEOUT_MS" in proc.stderr, proc
