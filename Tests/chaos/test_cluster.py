"""Redis Cluster under faults (issue 14, part 3): a real cluster of 3 primaries
and 3 replicas on loopback, steady enqueue load on one queue, two workers
draining it (and serving queues on the other primaries too).

- A queue's primary SIGKILLed: one of its two replicas is promoted by the cluster itself;
  with SPOOL_MIN_REPLICAS=1 no job answered 201 is lost, the API answers 503
  (never hangs) until the new primary serves the slot, and every job answered
  201 succeeds. Figures: seconds until the API answers 201 again, until every
  worker runs a job of that queue again.
- A queue's slot migrated to another primary under load (CLUSTER SETSLOT
  IMPORTING/MIGRATING, MIGRATE in batches of 10 keys as `redis-cli --cluster
  reshard` does, then SETSLOT NODE): every job succeeds, and no HTTP caller
  sees an error (Spool follows ASK and MOVED and waits out TRYAGAIN)."""
import os
import signal
import time

import pytest

from harness import Cluster, wait_for
from load import Enqueuer
from test_sentinel import started_after

QUEUE = "clustered"
WORKER_ENV = {"SPOOL_LEASE_MS": "5000", "SPOOL_HEARTBEAT_MS": "500"}


def node_id(node):
    return node.cli("CLUSTER", "MYID")


def other_queues(cluster, queue_node):
    """A queue on each other primary, for the workers to serve as well."""
    names, seen = [], {queue_node.port}
    for i in range(300):
        port = cluster.node_for_key(f"spool:{{o{i}}}:wake").port
        if port not in seen:
            seen.add(port)
            names.append(f"o{i}")
    return names


def test_queue_primary_killed_under_load(kit, figures):
    # Two replicas per primary: once one is promoted, the other can still
    # acknowledge writes (SPOOL_MIN_REPLICAS=1); with one, every write after
    # the failover would be refused until a new replica is added.
    cluster = Cluster(replicas=2, node_timeout_ms=1000)
    spawn = None
    try:
        from conftest import Spawner
        spawn = Spawner(cluster.url)
        primary = cluster.node_for_key(f"spool:{{{QUEUE}}}:wake")
        queues = ",".join([QUEUE, *other_queues(cluster, primary)])
        api = spawn.api(env={"SPOOL_MIN_REPLICAS": "1", "SPOOL_REPLICA_ACK_TIMEOUT_MS": "500"})
        workers = [spawn.worker(queues=queues, concurrency=2, env=WORKER_ENV) for _ in range(2)]
        client = Enqueuer(api, QUEUE, timeout=10)
        client.start()
        time.sleep(kit.pick(1.0, 2.0))

        t_fault, wall_fault = time.monotonic(), time.time()
        os.kill(primary.proc.pid, signal.SIGKILL)
        promoted = wait_for(lambda: (lambda n: n if n and n.port != primary.port else None)(
            cluster.node_for_key(f"spool:{{{QUEUE}}}:wake", required=False)), timeout=30,
            what="the cluster to promote a replica")
        first_201 = client.first_201_after(t_fault)
        wait_for(lambda: all(started_after(w, wall_fault) for w in workers), timeout=30,
                 what="every worker to start a job again after the fault")
        all_fetching = time.monotonic()
        time.sleep(kit.pick(1.0, 2.0))
        accepted, lost = client.finish(kit.RespClient(promoted.port))
        assert not lost, f"{len(lost)} of {len(accepted)} jobs answered 201 were lost, e.g. {lost[:3]}"
        kit.wait_for(lambda: all(s == "succeeded" for s in kit.RespClient(promoted.port).states(QUEUE, accepted).values()),
                     timeout=60, what="every job answered 201 to succeed")
        refused = [r for r in client.records if r[1] == 503]
        figures.record("cluster_primary_sigkill", accepted=len(accepted), lost=len(lost), refused_503=len(refused),
                       s_until_201=round(first_201 - t_fault, 2),
                       s_until_every_worker_fetches=round(all_fetching - t_fault, 2))
    finally:
        if spawn:
            spawn.stop_all()
        cluster.cleanup()


def migrate_slot(cluster, slot, source, target, batch=10, pause_s=0.01):
    """Moves one slot from `source` to `target` the way redis-cli --cluster
    reshard does: IMPORTING/MIGRATING, MIGRATE batches of keys, then NODE on
    every primary. Returns how many keys moved."""
    src_id, dst_id = node_id(source), node_id(target)
    assert target.cli("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id) == "OK"
    assert source.cli("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id) == "OK"
    moved = 0
    while True:
        keys = source.cli("CLUSTER", "GETKEYSINSLOT", slot, batch).split()
        if not keys:
            break
        out = source.cli("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        assert out in ("OK", "NOKEY"), out
        moved += len(keys)
        time.sleep(pause_s)
    # The new owner first, then the old one, then the rest (redis-cli's order).
    others = [n for n in cluster.primary_nodes() if n.port not in (source.port, target.port)]
    for node in [target, source, *others]:
        assert node.cli("CLUSTER", "SETSLOT", slot, "NODE", dst_id) == "OK"
    return moved


def test_queue_slot_migrated_under_load(kit, figures):
    cluster = Cluster()
    spawn = None
    try:
        from conftest import Spawner
        spawn = Spawner(cluster.url)
        source = cluster.node_for_key(f"spool:{{{QUEUE}}}:wake")
        target = next(n for n in cluster.primary_nodes() if n.port != source.port)
        queues = ",".join([QUEUE, *other_queues(cluster, source)])
        # While the slot moves, the queue's scripts are answered TRYAGAIN and
        # wait; the Redis timeout must outlast the move (README: keep a slot's
        # move shorter than SPOOL_REDIS_TIMEOUT_MS). Moving ~2,000 keys 10 at a
        # time takes a few seconds here. (Workers keep theirs: a call that
        # gives up is retried after a backoff, and no client sees it.)
        api = spawn.api(env={"SPOOL_REDIS_TIMEOUT_MS": "10000"})
        workers = [spawn.worker(queues=queues, concurrency=2, env=WORKER_ENV) for _ in range(2)]
        # A backlog, so that the slot holds many keys while it moves.
        status, _, _ = api.post(f"/v1/queues/{QUEUE}/jobs/batch",
                                {"jobs": [{"type": "sleep", "payload": {"ms": 2}} for _ in range(kit.pick(300, 1000))]})
        assert status == 201
        client = Enqueuer(api, QUEUE, timeout=10)
        client.start()
        time.sleep(kit.pick(0.5, 1.0))
        slot = int(source.cli("CLUSTER", "KEYSLOT", f"spool:{{{QUEUE}}}:wake"))
        t0 = time.monotonic()
        moved = migrate_slot(cluster, slot, source, target)
        seconds = time.monotonic() - t0
        t1 = time.monotonic()
        assert cluster.node_for_key(f"spool:{{{QUEUE}}}:wake").port == target.port
        time.sleep(kit.pick(1.0, 2.0))
        accepted, lost = client.finish(kit.RespClient(target.port))
        errors = [r for r in client.records if r[1] != 201]
        assert not errors, f"{len(errors)} enqueues were not answered 201 during the move, e.g. {errors[:3]}"
        assert not lost, f"{len(lost)} of {len(accepted)} jobs answered 201 were lost, e.g. {lost[:3]}"
        kit.wait_for(lambda: all(s == "succeeded" for s in kit.RespClient(target.port).states(QUEUE, accepted).values()),
                     timeout=60, what="every job answered 201 to succeed")
        status, _, stats = api.get(f"/v1/queues/{QUEUE}")
        assert status == 200 and stats["missing_total"] == 0, stats
        # One client enqueuing in a loop: the longest gap between two answers
        # around the move is the longest an enqueue waited for it.
        times = [r[0] for r in client.records if t0 - 1 <= r[0] <= t1 + 1]
        longest = max((b - a for a, b in zip(times, times[1:])), default=0)
        figures.record("cluster_slot_migration", accepted=len(accepted), keys_moved=moved,
                       s_migrating=round(seconds, 2), longest_enqueue_wait_s=round(longest, 2))
    finally:
        if spawn:
            spawn.stop_all()
        cluster.cleanup()
