"""Fault 5 — Redis stalls (SIGSTOP for 5 s) under load.

The process is alive and its socket accepts connections, but nothing answers:
the worst case for a client without timeouts. With SPOOL_REDIS_TIMEOUT_MS=500
every API request must answer 503 within the timeout (asserted < 1.5 s each)
instead of piling up; after SIGCONT everything continues and every job answered
201 succeeds.

A 503 means "outcome unknown", not "not stored": a command the API gave up on may
still run once Redis wakes up. Such jobs are counted (figure `ghost_jobs`) and
must run like any other.
"""
import os
import signal
import threading
import time

import pytest

from harness import wait_for

QUEUE = "stall"
STALL_S = 5.0
API_TIMEOUT_MS = 500
WORKER_ENV = {"SPOOL_LEASE_MS": "3000", "SPOOL_HEARTBEAT_MS": "500", "SPOOL_REDIS_TIMEOUT_MS": "1000"}


class Client(threading.Thread):
    def __init__(self, api, tag):
        super().__init__(daemon=True)
        self.api = api
        self.tag = tag
        self.stop = threading.Event()
        self.records = []  # (sent, answered, status, code, id, error, marker)

    def run(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            marker = f"{self.tag}-{n}"
            t0 = time.monotonic()
            try:
                status, _, data = self.api.post(f"/v1/queues/{QUEUE}/jobs",
                                                {"type": "sleep", "payload": {"ms": 5, "marker": marker}}, timeout=10)
                err = data.get("error") if isinstance(data, dict) and status >= 400 else None
                self.records.append((t0, time.monotonic(), status, err.get("code") if isinstance(err, dict) else None,
                                     data.get("id") if status == 201 else None, None, marker))
            except Exception as e:
                self.records.append((t0, time.monotonic(), None, None, None, repr(e), marker))
            time.sleep(0.02)


@pytest.mark.full
def test_redis_stall_answers_503_within_the_timeout(spawn, redis, kit, figures):
    api = spawn.api(env={"SPOOL_REDIS_TIMEOUT_MS": str(API_TIMEOUT_MS)})
    workers = [spawn.worker(queues=QUEUE, concurrency=2, env=WORKER_ENV) for _ in range(2)]
    clients = [Client(api, f"c{i}") for i in range(4)]
    for c in clients:
        c.start()
    readyz = []
    try:
        wait_for(lambda: sum(1 for c in clients for r in c.records if r[2] == 201) >= 40, timeout=10,
                 what="load to start")
        os.kill(redis.proc.pid, signal.SIGSTOP)
        t_stop = time.monotonic()
        try:
            while time.monotonic() - t_stop < STALL_S:
                t0 = time.monotonic()
                try:
                    readyz.append((api.get("/readyz", timeout=5)[0], time.monotonic() - t0))
                except OSError as e:
                    readyz.append((repr(e), time.monotonic() - t0))
                time.sleep(0.3)
        finally:
            t_cont = time.monotonic()
            os.kill(redis.proc.pid, signal.SIGCONT)
        wait_for(lambda: any(r[2] == 201 and r[0] > t_cont for c in clients for r in c.records), timeout=10,
                 what="an enqueue to succeed after SIGCONT")
        time.sleep(2.0)
    finally:
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(15)

    records = [r for c in clients for r in c.records]
    failures = [r for r in records if r[5] is not None]
    assert not failures, f"requests that got no answer: {failures[:5]}"
    # Sent once Redis was stopped (and its last replies delivered), answered before it continued.
    during = [r for r in records if r[0] >= t_stop + 0.05 and r[1] <= t_cont]
    assert len(during) >= 10, len(during)
    wrong = [r for r in during if (r[2], r[3]) != (503, "redis_unavailable")]
    assert not wrong, f"answers during the stall other than 503 redis_unavailable: {wrong[:5]}"
    lat = [r[1] - r[0] for r in during]
    assert max(lat) < 1.5, f"503 answers slower than 1.5 s with a {API_TIMEOUT_MS} ms Redis timeout: {sorted(lat)[-5:]}"
    assert all(s == 503 and t < 1.5 for s, t in readyz), readyz

    accepted = [r[4] for r in records if r[2] == 201]
    rc = kit.RespClient(redis.port)
    wait_for(lambda: all(s == "succeeded" for s in rc.states(QUEUE, accepted).values()), timeout=40, interval=0.5,
             what="every accepted job to succeed")
    for w in workers:
        assert w.alive(), w.output()[-3000:]

    # Jobs stored although the API answered 503 (commands Redis ran after waking up).
    rejected_markers = {r[6] for r in records if r[2] == 503}
    ghosts = []
    keys = [k for k in (rc.call("KEYS", f"spool:{{{QUEUE}}}:job:*") or [])]
    payloads = rc.pipeline([["HGET", k, "payload"] for k in keys]) if keys else []
    for k, p in zip(keys, payloads):
        for m in rejected_markers:
            if p and f'"{m}"' in p:
                ghosts.append(k)
    ghost_states = rc.pipeline([["HGET", k, "state"] for k in ghosts]) if ghosts else []
    wait_for(lambda: all(s == "succeeded" for s in rc.pipeline([["HGET", k, "state"] for k in ghosts])) if ghosts else True,
             timeout=30, what="ghost jobs to run")

    # Commands whose reply was lost in the stall may have run anyway (a completion, a claim): such jobs
    # run again after their lease. Counted, not asserted: at-least-once allows it.
    attempts = rc.pipeline([["HGET", f"spool:{{{QUEUE}}}:job:{i}", "attempts"] for i in accepted])
    rerun = sum(1 for a in attempts if a and int(a) > 1)
    recovered = len(kit.log_lines_with(workers, "job recovered after its lease expired; queued again"))
    dropped = len(kit.log_lines_with(workers, "lease lost", contains=True))
    first_ok = min(r[1] for r in records if r[2] == 201 and r[0] >= t_cont)
    figures.record(
        "redis_stall",
        stall_s=round(t_cont - t_stop, 2), redis_timeout_ms=API_TIMEOUT_MS, clients=len(clients),
        requests_during_stall=len(during), api_503_ms_p50=kit.ms(kit.percentile(lat, 50)),
        api_503_ms_p99=kit.ms(kit.percentile(lat, 99)), api_503_ms_max=kit.ms(max(lat)),
        readyz_ms_max=kit.ms(max(t for _, t in readyz)), accepted=len(accepted), lost=0,
        ghost_jobs=len(ghosts), ghost_states_at_check=sorted(set(ghost_states)),
        first_enqueue_after_sigcont_ms=kit.ms(first_ok - t_cont), jobs_run_more_than_once=rerun,
        leases_recovered=recovered, lease_lost_log_lines=dropped,
    )
