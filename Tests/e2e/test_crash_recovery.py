"""Workers that die or are stopped: leases bring back a killed worker's job,
SIGTERM drains or gives back running jobs, heartbeats keep long jobs leased."""
import signal
import time

from harness import wait_for
from helpers import log_lines_with, wait_log, worker_id

LEASE = {"SPOOL_LEASE_MS": "2000", "SPOOL_HEARTBEAT_MS": "300"}


def test_sigkilled_workers_job_is_recovered_and_runs_again(spawn, redis):
    api = spawn.api()
    first = spawn.worker(concurrency=1, env=LEASE)
    first_id = worker_id(first)
    job = api.enqueue("default", {"type": "sleep", "payload": {"ms": 1500}, "max_attempts": 3})
    running = api.wait_state(job["id"], "running")
    assert running["worker"] == first_id and running["attempts"] == 1

    first.signal(signal.SIGKILL)
    first.wait(5)
    killed_at = time.monotonic()
    assert api.job(job["id"])["state"] == "running"  # nobody knows yet

    second = spawn.worker(concurrency=1, env=LEASE)
    second_id = worker_id(second)
    recovered = wait_log(second, "job recovered after its lease expired; queued again", job["id"], timeout=10)
    assert time.monotonic() - killed_at < 6, "recovery took far longer than the 2 s lease"
    assert recovered[0]["attempt"] == 1

    done = api.wait_state(job["id"], "succeeded", timeout=10)
    assert done["attempts"] == 2
    assert done["worker"] == second_id != first_id
    # The worker logs the success once Redis answered its report, which can be
    # a moment after the API already shows the job succeeded.
    wait_log(second, "job succeeded", job["id"], timeout=5)
    assert len(log_lines_with(second, "job succeeded", job["id"])) == 1
    s = [q for q in api.get("/v1/queues")[2]["queues"] if q["name"] == "default"][0]
    assert s["running"] == 0 and s["pending_total"] == 0 and s["dead"] == 0 and s["processed_total"] == 1


def test_sigkilled_job_on_its_last_attempt_is_dead(spawn):
    api = spawn.api()
    first = spawn.worker(concurrency=1, env=LEASE)
    job = api.enqueue("default", {"type": "sleep", "payload": {"ms": 5000}, "max_attempts": 1})
    api.wait_state(job["id"], "running")
    first.signal(signal.SIGKILL)
    first.wait(5)
    spawn.worker(concurrency=1, env=LEASE)
    dead = api.wait_state(job["id"], "dead", timeout=10)
    assert dead["attempts"] == 1
    assert dead["error"]["message"], dead


def test_sigterm_lets_a_running_job_finish(spawn, redis):
    api = spawn.api()
    w = spawn.worker(concurrency=1, env={"SPOOL_SHUTDOWN_GRACE_MS": "10000"})
    wid = worker_id(w)
    wait_for(lambda: wid in redis.cli("ZRANGE", "spool:workers", "0", "-1").split(), timeout=5,
             what="the worker to register")
    job = api.enqueue("default", {"type": "sleep", "payload": {"ms": 1000}})
    api.wait_state(job["id"], "running")

    w.signal(signal.SIGTERM)
    wait_log(w, "shutting down: no new jobs; waiting for running ones", timeout=5)
    # Enqueued while the worker drains: it must not be taken.
    late = api.enqueue("default", {"type": "noop"})
    assert w.wait(10) == 0, w.output()[-2000:]

    done = api.job(job["id"])
    assert done["state"] == "succeeded" and done["attempts"] == 1, done
    assert len(log_lines_with(w, "job succeeded", job["id"])) == 1
    late_now = api.job(late["id"])
    assert late_now["state"] == "queued" and late_now["attempts"] == 0, late_now
    # Deregistered: gone from the registry of live workers.
    assert wid not in redis.cli("ZRANGE", "spool:workers", "0", "-1").split()
    assert not [k for k in redis.keys("spool:worker:*") if wid in k]


def test_sigterm_gives_back_a_job_that_outlasts_the_grace(spawn):
    api = spawn.api()
    w = spawn.worker(concurrency=1, env={"SPOOL_SHUTDOWN_GRACE_MS": "500"})
    job = api.enqueue("default", {"type": "sleep", "payload": {"ms": 10000}})
    api.wait_state(job["id"], "running")

    w.signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert w.wait(10) == 0, w.output()[-2000:]
    assert time.monotonic() - t0 < 5, "worker ignored its 500 ms shutdown grace"

    back = api.job(job["id"])
    assert back["state"] == "queued", back
    assert back["attempts"] == 0, back
    s = [q for q in api.get("/v1/queues")[2]["queues"] if q["name"] == "default"][0]
    assert s["running"] == 0 and s["pending_total"] == 1 and s["failed_total"] == 0, s
    assert not log_lines_with(w, "job succeeded", job["id"])

    spawn.worker(concurrency=1)
    api.wait_state(job["id"], "running", timeout=5)
    done = api.wait_state(job["id"], "succeeded", timeout=20)
    assert done["attempts"] == 1


def test_heartbeats_keep_a_long_job_leased(spawn):
    api = spawn.api()
    w = spawn.worker(concurrency=2, env=LEASE)
    job = api.enqueue("default", {"type": "sleep", "payload": {"ms": 3000}, "max_attempts": 3})
    done = api.wait_state(job["id"], "succeeded", timeout=15)
    assert done["attempts"] == 1, done
    assert done["error"] is None
    assert not log_lines_with(w, "job recovered after its lease expired; queued again", job["id"])
    assert len(log_lines_with(w, "job started", job["id"])) == 1


def test_sigterm_with_idle_worker_exits_promptly(spawn, redis):
    spawn.api()
    w = spawn.worker(concurrency=4)
    wid = worker_id(w)
    w.signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert w.wait(10) == 0
    assert time.monotonic() - t0 < 4
    assert wid not in redis.cli("ZRANGE", "spool:workers", "0", "-1").split()
    assert log_lines_with(w, "spool-worker stopped")
