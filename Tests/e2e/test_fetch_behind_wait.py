"""An idle worker of one queue sends its fetch in the same write as its wait
for a wake token, so a new job is claimed the moment its token arrives (issue
18). What a user relies on must hold around it: a Redis that lost its scripts
still hands new jobs to idle workers at once, and a worker that is stopping
takes no new job."""
import signal
import time

QUEUE = "behindwait"


def errors(proc):
    return [l for l in proc.log_lines() if l.get("level") in ("error", "critical")]


def test_idle_workers_take_new_jobs_at_once_after_redis_lost_its_scripts(spawn, redis):
    api = spawn.api()
    w = spawn.worker(queues=QUEUE, concurrency=2)
    api.wait_state(api.enqueue(QUEUE, {"type": "noop"})["id"], "succeeded", timeout=10)
    time.sleep(0.3)  # both loops wait again, each with a fetch behind its wait
    redis.cli("SCRIPT", "FLUSH")  # what a restarted Redis looks like to a connected worker
    started = time.monotonic()
    job = api.enqueue(QUEUE, {"type": "noop"})
    done = api.wait_state(job["id"], "succeeded", timeout=10)
    # The fetch behind the wait answered NOSCRIPT and changed nothing; the loop
    # fetched as usual at once, rather than backing off as from an outage.
    assert time.monotonic() - started < 1.0, "the job waited for an idle loop's next look"
    assert done["attempts"] == 1
    assert not errors(w), errors(w)


def test_a_job_that_arrives_while_an_idle_worker_stops_is_not_taken(spawn, redis):
    api = spawn.api()
    w = spawn.worker(queues=QUEUE, concurrency=4)
    api.wait_state(api.enqueue(QUEUE, {"type": "noop"})["id"], "succeeded", timeout=10)
    time.sleep(0.3)
    w.signal(signal.SIGTERM)
    time.sleep(0.05)  # the loops are still in their waits (up to a second each)
    job = api.enqueue(QUEUE, {"type": "noop"})
    assert w.wait(15) == 0
    # A loop's fetch behind its wait may have claimed it as the token came;
    # a stopping worker gives such a job back without counting the attempt.
    j = api.job(job["id"])
    assert (j["state"], j["attempts"]) == ("queued", 0), j
    assert redis.cli("ZCARD", f"spool:{{{QUEUE}}}:lease") == "0"
    assert not errors(w), errors(w)
    # And the next worker runs it.
    spawn.worker(queues=QUEUE, concurrency=1)
    assert api.wait_state(job["id"], "succeeded", timeout=10)["attempts"] == 1
