"""Fault 6 — an API replica is SIGKILLed under load.

Two replicas on different ports; four clients alternate between them. Each
logical job carries an idempotency_key, so a client whose request died with the
replica can send it again to the other one without risking a duplicate (it gets
201, or 200 with the job the first attempt stored). One replica gets SIGKILL; a
replacement is started later and joins the rotation. Every job answered 201/200
completes, and Redis holds exactly one job per logical job.
"""
import itertools
import signal
import threading
import time

import pytest

from harness import wait_for

QUEUE = "replicas"


class Client(threading.Thread):
    def __init__(self, name, replicas):
        super().__init__(daemon=True)
        self.name_ = name
        self.replicas = replicas  # shared list of API objects, may change
        self.stop = threading.Event()
        self.done = {}        # idempotency key -> job id
        self.gave_up = []
        self.failovers = 0
        self.errors = []

    def run(self):
        turn = itertools.count()
        for n in itertools.count():
            if self.stop.is_set():
                return
            key = f"{self.name_}-{n}"
            body = {"type": "noop", "idempotency_key": key}
            deadline = time.monotonic() + 10
            first = next(turn)
            attempt = 0
            while True:
                replicas = list(self.replicas)
                api = replicas[(first + attempt) % len(replicas)]
                attempt += 1
                try:
                    status, _, data = api.post(f"/v1/queues/{QUEUE}/jobs", body, timeout=3)
                    if status in (200, 201):
                        self.done[key] = data["id"]
                        break
                    self.errors.append((api.port, status, data))
                except OSError as e:
                    self.errors.append((api.port, repr(e)))
                self.failovers += 1
                if time.monotonic() > deadline:
                    self.gave_up.append(key)
                    break
                time.sleep(0.01)
            time.sleep(0.01)


@pytest.mark.full
def test_api_replica_killed_under_load(spawn, redis, kit, figures):
    a = spawn.api()
    b = spawn.api()
    for _ in range(2):
        spawn.worker(queues=QUEUE, concurrency=4)
    replicas = [a, b]
    clients = [Client(f"c{i}", replicas) for i in range(4)]
    for c in clients:
        c.start()
    try:
        wait_for(lambda: all(len(c.done) >= 20 for c in clients), timeout=15, what="load on both replicas")
        before = sum(len(c.done) for c in clients)
        a.signal(signal.SIGKILL)
        a.wait(5)
        t_kill = time.monotonic()
        time.sleep(3)
        after_kill = sum(len(c.done) for c in clients)
        c_api = spawn.api()
        replicas[replicas.index(a)] = c_api
        time.sleep(3)
    finally:
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(20)

    gave_up = [k for c in clients for k in c.gave_up]
    assert not gave_up, f"requests that found no live replica: {gave_up[:5]}"
    assert after_kill > before, "no progress after one replica died"
    failovers = sum(c.failovers for c in clients)
    assert failovers >= 1, "the kill did not make any client fail over"
    assert b.alive() and c_api.alive()

    ids = {}
    for c in clients:
        ids.update(c.done)
    rc = kit.RespClient(redis.port)
    job_ids = sorted(set(ids.values()))
    assert len(job_ids) == len(ids), "two keys mapped to one job"
    wait_for(lambda: all(s == "succeeded" for s in rc.states(QUEUE, job_ids).values()), timeout=30, interval=0.3,
             what="every accepted job to succeed")
    stored = rc.call("KEYS", f"spool:{{{QUEUE}}}:job:*") or []
    assert len(stored) == len(job_ids), f"{len(stored)} job hashes for {len(job_ids)} logical jobs"

    figures.record(
        "api_replica_kill",
        replicas=2, clients=len(clients), jobs=len(job_ids), failovers=failovers, gave_up=len(gave_up),
        lost=0, duplicates=len(stored) - len(job_ids),
        client_errors_sample=[str(e)[:120] for c in clients for e in c.errors][:3],
    )
