"""Fault 8 — a frozen worker comes back after its job was recovered.

Worker 1 (lease 1.5 s, heartbeat 300 ms) runs a 2 s `sleep` job and is frozen
with SIGSTOP. Worker 2 recovers the job once the lease expires and runs it.
Worker 1 is thawed (SIGCONT) while worker 2 is still running it, or after
worker 2 finished it (then worker 1's own run is over too and it tries to record
it): worker 1's late result must be dropped and logged, the job's final state
comes from worker 2's run (worker = worker 2, attempts = 2), and exactly one
"job succeeded" line exists for the job across both logs. (On waking, worker
1's lease watchdog usually finds the lease deadline passed and stops the job
before it reports, "job stopped: its lease could not be renewed"; otherwise
the complete script drops the result, "job result dropped: lease lost".
Either way nothing of worker 1's run is recorded.)
"""
import signal
import time

import pytest

from harness import wait_for

QUEUE = "race"
ENV = {"SPOOL_LEASE_MS": "1500", "SPOOL_HEARTBEAT_MS": "300"}


@pytest.mark.full
@pytest.mark.parametrize("thaw", ["while_rerunning", "after_rerun_finished"])
def test_late_result_of_a_frozen_worker_is_dropped(spawn, redis, kit, figures, thaw):
    api = spawn.api()
    w1 = spawn.worker(queues=QUEUE, concurrency=1, env=ENV)
    w1_id = kit.worker_id(w1)
    job = api.enqueue(QUEUE, {"type": "sleep", "payload": {"ms": 2000}, "max_attempts": 3})
    running = api.wait_state(job["id"], "running", timeout=10)
    assert running["worker"] == w1_id

    w1.signal(signal.SIGSTOP)
    t_stop = time.monotonic()
    try:
        w2 = spawn.worker(queues=QUEUE, concurrency=1, env=ENV)
        w2_id = kit.worker_id(w2)
        rerun = wait_for(lambda: (lambda j: j if j["state"] == "running" and j["worker"] == w2_id else None)(api.job(job["id"])),
                         timeout=10, what="worker 2 to run the recovered job")
        t_rerun = time.monotonic()
        assert rerun["attempts"] == 2, rerun
        if thaw == "while_rerunning":
            time.sleep(0.3)  # worker 2 is mid-run when worker 1 wakes up
        else:
            finished = api.wait_state(job["id"], "succeeded", timeout=10)
    finally:
        w1.signal(signal.SIGCONT)
    t_cont = time.monotonic()

    dropped = wait_for(lambda: kit.log_lines_with([w1], "job result dropped: lease lost", job["id"], contains=True)
                       + kit.log_lines_with([w1], "job stopped: its lease could not be renewed", job["id"], contains=True),
                       timeout=10, what=f"worker 1 to drop its late result\n{w1.output()[-2000:]}")
    done = api.wait_state(job["id"], "succeeded", timeout=15)
    if thaw == "after_rerun_finished":
        time.sleep(0.5)
        done = api.job(job["id"])
        assert done == finished, (finished, done)
    assert done["worker"] == w2_id, done
    assert done["attempts"] == 2, done
    successes = kit.log_lines_with([w1, w2], "job succeeded", job["id"])
    assert len(successes) == 1 and successes[0]["worker_id"] == w2_id, successes
    assert not kit.log_lines_with([w1], "job succeeded", job["id"])
    assert w1.alive() and w2.alive()
    # Worker 1 keeps working after the episode.
    after = api.enqueue(QUEUE, {"type": "noop"})
    api.wait_state(after["id"], "succeeded", timeout=10)

    figures.record(
        f"lease_race_{thaw}",
        lease_ms=1500, heartbeat_ms=300, frozen_ms=kit.ms(t_cont - t_stop),
        recovered_and_running_after_ms=kit.ms(t_rerun - t_stop), late_results_dropped=len(dropped),
        final_worker_is_live_run=done["worker"] == w2_id, final_attempts=done["attempts"],
        job_succeeded_lines=len(successes),
    )
