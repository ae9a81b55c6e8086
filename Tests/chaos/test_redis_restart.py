"""Fault 4 — Redis goes away under load and comes back.

Redis runs with appendonly yes + appendfsync always. A client enqueues
continuously while two workers run the jobs (noop and 5 ms sleeps). Redis is
stopped (SIGTERM, or SIGKILL in full mode) for ~2 s while the client keeps
enqueuing, then started again on the same port and directory.

While it is down every answer is 503 redis_unavailable within 1 s (no hang, no
201) and /readyz is 503; each worker logs the outage once and its end once, and
stays up. After it returns, work resumes by itself and every job the API
answered 201 for ends succeeded.
"""
import threading
import time

import pytest

from harness import wait_for

QUEUE = "restart"
WORKER_ENV = {"SPOOL_LEASE_MS": "5000", "SPOOL_HEARTBEAT_MS": "500", "SPOOL_REDIS_TIMEOUT_MS": "1000"}
OUTAGE_S = 2.0


class Client(threading.Thread):
    """Enqueues one job at a time, recording (sent, answered, status, code, id, error)."""

    def __init__(self, api, pause=0.02):
        super().__init__(daemon=True)
        self.api = api
        self.pause = pause
        self.stop = threading.Event()
        self.records = []

    def run(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            job = {"type": "noop"} if n % 2 else {"type": "sleep", "payload": {"ms": 5}}
            t0 = time.monotonic()
            w0 = time.time()
            try:
                status, _, data = self.api.post(f"/v1/queues/{QUEUE}/jobs", job, timeout=5)
                err = data.get("error") if isinstance(data, dict) and status >= 400 else None
                code = err.get("code") if isinstance(err, dict) else None
                jid = data.get("id") if status == 201 else None
                self.records.append((t0, time.monotonic(), status, code, jid, None, w0))
            except Exception as e:  # a hang or a reset is a failure of the test
                self.records.append((t0, time.monotonic(), None, None, None, repr(e), w0))
            time.sleep(self.pause)


@pytest.mark.parametrize("how", ["sigterm", pytest.param("sigkill", marks=pytest.mark.full)])
def test_redis_restart_under_load(aof_spawn, aof_redis, kit, figures, how):
    redis = aof_redis
    api = aof_spawn.api()
    workers = [aof_spawn.worker(queues=QUEUE, concurrency=2, env=WORKER_ENV) for _ in range(2)]
    client = Client(api)
    client.start()
    readyz_down = []
    try:
        wait_for(lambda: sum(1 for r in client.records if r[2] == 201) >= 20, timeout=10, what="load to start")
        time.sleep(kit.pick(1.0, 2.0))
        if how == "sigkill":
            redis.proc.kill()
            redis.proc.wait(10)
        else:
            redis.stop()
        t_down = time.monotonic()
        while time.monotonic() - t_down < OUTAGE_S:
            t0 = time.monotonic()
            status = api.get("/readyz", timeout=5)[0]
            readyz_down.append((status, time.monotonic() - t0))
            time.sleep(0.2)
        t_up_begin = time.monotonic()
        redis.start()
        t_up = time.monotonic()
        w_up = time.time()
        wait_for(lambda: any(r[2] == 201 and r[0] >= t_up for r in client.records), timeout=10,
                 what="an enqueue to succeed after Redis returned")
        time.sleep(kit.pick(1.5, 3.0))
    finally:
        client.stop.set()
        client.join(10)

    records = client.records
    failures = [r for r in records if r[5] is not None]
    assert not failures, f"requests that got no answer: {failures[:5]}"
    during = [r for r in records if r[0] >= t_down and r[1] <= t_up_begin]
    assert len(during) >= 10, f"only {len(during)} requests during the outage"
    wrong = [r for r in during if (r[2], r[3]) != (503, "redis_unavailable")]
    assert not wrong, f"answers while Redis was down other than 503 redis_unavailable: {wrong[:5]}"
    slow = [r for r in during if r[1] - r[0] >= 1.0]
    assert not slow, f"503 answers slower than 1 s: {[round(r[1] - r[0], 3) for r in slow[:5]]}"
    others = [r for r in records if r[2] not in (201, 503)]
    assert not others, others[:5]
    assert readyz_down and all(s == 503 for s, _ in readyz_down), readyz_down
    assert api.get("/readyz")[0] == 200

    accepted = [r[4] for r in records if r[2] == 201]
    rc = kit.RespClient(redis.port)
    try:
        wait_for(lambda: all(s == "succeeded" for s in rc.states(QUEUE, accepted).values()), timeout=30,
                 interval=0.3, what="every accepted job to succeed")
    except AssertionError:
        pass
    states = rc.states(QUEUE, accepted)
    lost = {i: s for i, s in states.items() if s != "succeeded"}
    assert not lost, f"{len(lost)} jobs answered 201 did not succeed: {list(lost.items())[:5]}"

    for w in workers:
        assert w.alive(), w.output()[-3000:]
        down = kit.log_lines_with([w], "redis unavailable; retrying with backoff")
        up = kit.log_lines_with([w], "redis reachable again; resuming")
        assert len(down) == 1, f"outage logged {len(down)} times by one worker: {down}"
        assert len(up) == 1, f"recovery logged {len(up)} times by one worker: {up}"

    first_201 = min(r[1] for r in records if r[2] == 201 and r[0] >= t_up_begin)
    done_after = [kit.parse_ts(l["ts"]) for l in kit.log_lines_with(workers, "job succeeded")
                  if kit.parse_ts(l["ts"]) >= w_up]
    lat_503 = [r[1] - r[0] for r in during]
    figures.record(
        f"redis_restart_{how}",
        stop_signal=how.upper(), outage_s=round(t_up_begin - t_down, 2), redis_start_s=round(t_up - t_up_begin, 2),
        requests=len(records), accepted=len(accepted), lost=len(lost), requests_during_outage=len(during),
        api_503_ms_p50=kit.ms(kit.percentile(lat_503, 50)), api_503_ms_max=kit.ms(max(lat_503)),
        readyz_503_ms_max=kit.ms(max(t for _, t in readyz_down)),
        first_enqueue_after_return_ms=kit.ms(first_201 - t_up),
        first_job_done_after_return_ms=kit.ms(min(done_after) - w_up) if done_after else None,
        outage_log_lines_per_worker=1, appendfsync="always",
    )
