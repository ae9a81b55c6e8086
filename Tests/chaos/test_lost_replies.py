"""Fault 10 — replies lost after Redis ran the call.

A busy worker (4 loops, 10 ms jobs, Redis timeout 150 ms) drains jobs that
allow one attempt only, while Redis is stopped (SIGSTOP) for 0.5 s a few times.
The calls the loops send during a stall time out and their connections close,
but Redis still runs them when it continues: completions are stored and next
jobs claimed for a loop that never sees the reply.

Each loop's claiming calls leave a receipt; after a lost reply the loop settles
the call from it and gives back what it claimed. So every job must succeed on
its first and only attempt, soon, instead of waiting out its 20 s lease and
going dead (lease recovery counts the attempt that never ran).
"""
import os
import signal
import time

from harness import wait_for

QUEUE = "lostreply"
WORKER_ENV = {"SPOOL_REDIS_TIMEOUT_MS": "150", "SPOOL_LEASE_MS": "20000", "SPOOL_HEARTBEAT_MS": "2000"}
GIVEN_BACK = "reply of a claiming call lost after it ran; its claimed jobs were given back"


def test_jobs_claimed_by_a_call_whose_reply_was_lost_run_once(spawn, redis, kit, figures):
    api = spawn.api()
    jobs = kit.pick(300, 1200)
    stalls = kit.pick(4, 8)
    accepted = []
    for start in range(0, jobs, 100):
        status, _, body = api.post(f"/v1/queues/{QUEUE}/jobs/batch",
                                   {"jobs": [{"type": "sleep", "payload": {"ms": 10}, "max_attempts": 1}
                                             for _ in range(min(100, jobs - start))]})
        assert status == 201, body
        accepted += [j["id"] for j in body["jobs"]]
    worker = spawn.worker(queues=QUEUE, concurrency=4, env=WORKER_ENV)
    rc = kit.RespClient(redis.port)
    wait_for(lambda: rc.call("HGET", f"spool:{{{QUEUE}}}:stats", "processed") not in (None, "0"), timeout=10,
             what="the worker to start draining")

    for _ in range(stalls):
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(0.5)
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        time.sleep(0.4)

    t0 = time.monotonic()
    wait_for(lambda: all(s in ("succeeded", "dead") for s in rc.states(QUEUE, accepted).values()), timeout=15,
             interval=0.3, what="every job to finish well within its 20 s lease\n" + worker.output()[-3000:])
    states = rc.states(QUEUE, accepted)
    dead = [i for i, s in states.items() if s != "succeeded"]
    assert not dead, f"{len(dead)} jobs did not succeed (a lost claim cost their only attempt): {dead[:5]}"
    attempts = rc.pipeline([["HGET", f"spool:{{{QUEUE}}}:job:{i}", "attempts"] for i in accepted])
    assert all(a == "1" for a in attempts), sorted(set(attempts))
    assert worker.alive(), worker.output()[-3000:]
    timeouts = kit.log_lines_with([worker], "redis unavailable; retrying with backoff")
    assert timeouts, "the stalls must have made the worker's calls time out"
    given_back = kit.log_lines_with([worker], GIVEN_BACK)
    figures.record(
        "lost_replies",
        jobs=jobs, stalls=stalls, redis_timeout_ms=int(WORKER_ENV["SPOOL_REDIS_TIMEOUT_MS"]),
        settled_with_jobs_given_back=len(given_back),
        jobs_given_back=sum(len(line.get("jobs", "").split(",")) for line in given_back),
        drained_after_last_stall_s=round(time.monotonic() - t0, 2), dead=len(dead),
    )
