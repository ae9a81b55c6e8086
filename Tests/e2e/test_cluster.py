"""Redis Cluster (issue 14, part 3), against a real cluster of 3 primaries and
3 replicas on loopback that this module starts: Spool given only the seed
nodes' URL serves queues that live on different primaries, wakes idle workers
at once whichever node a job lands on, answers `?wait=` from any node, lists
what spans queues from every node, and loads its scripts on a node that lost
them. The whole e2e suite also runs on a cluster (`make e2e-cluster`)."""
import json
import subprocess
import time

import pytest

from harness import API, Cluster, Worker, BIN_DIR
from helpers import ms_between


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    yield c
    c.cleanup()


@pytest.fixture
def fresh(cluster):
    cluster.flush()
    started = []
    yield cluster, started
    for p in reversed(started):
        p.stop()


def queues_on_each_primary(cluster):
    """Three queue names whose keys live on three different primaries."""
    by_node = {}
    for i in range(200):
        name = f"q{i}"
        port = cluster.node_for_key(f"spool:{{{name}}}:wake").port
        by_node.setdefault(port, name)
        if len(by_node) == 3:
            return list(by_node.values())
    raise AssertionError("could not find queues on three primaries")


def test_the_slot_of_a_key_is_the_one_redis_computes(cluster):
    """Spool routes by the slot it computes itself: it must be Redis' own,
    hash tags included (the job and queue keys' `{queue}`)."""
    keys = ["foo", "spool:{default}:pending:normal", "spool:{q7}:job:q7~01ABC", "{}", "{}x", "a{b}c{d}", "{{x}}",
            "spool:{}:x", "ééé{ü}"]
    out = subprocess.run([str(BIN_DIR / "spool-bench"), "slots", *keys], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    ours = [int(x) for x in out.stdout.split()]
    theirs = [int(cluster.alive_nodes()[0].cli("CLUSTER", "KEYSLOT", k)) for k in keys]
    assert ours == theirs


def test_jobs_on_every_primary_run_and_idle_workers_wake_at_once(fresh):
    cluster, started = fresh
    queues = queues_on_each_primary(cluster)
    api = API(cluster.url)
    worker = Worker(cluster.url, queues=",".join(queues), concurrency=2)
    started += [api, worker]
    # Idle long enough that a worker polling each node in turn (or waiting
    # out a 1 s block) would show in the delays below.
    time.sleep(1.5)
    delays = []
    for round_ in range(3):
        for q in queues:
            job = api.enqueue(q, {"type": "echo", "payload": {"round": round_, "queue": q}})
            done = api.wait_state(job["id"], "succeeded", timeout=10)
            assert done["result"] == {"round": round_, "queue": q}
            delays.append(ms_between(done["created_at"], done["started_at"]))
            time.sleep(0.3)
    assert max(delays) < 250, f"ms from enqueue to start, per job: {delays}"

    status, _, listing = api.get("/v1/queues")
    assert status == 200
    assert {q["name"]: q["processed_total"] for q in listing["queues"]} == {q: 3 for q in queues}
    status, _, workers = api.get("/v1/workers")
    assert status == 200 and [w["queues"] for w in workers["workers"]] == [queues]
    status, _, metrics = api.get("/metrics")
    assert status == 200
    for q in queues:
        assert f'queue="{q}"' in metrics
    assert not cluster.keys("*slot-guard*"), "the slot guard key must never exist"


def test_wait_answers_for_a_job_on_any_node(fresh):
    cluster, started = fresh
    queues = queues_on_each_primary(cluster)
    api = API(cluster.url)
    started.append(api)
    ids = [api.enqueue(q, {"type": "sleep", "payload": {"ms": 300}})["id"] for q in queues]
    worker = Worker(cluster.url, queues=",".join(queues), concurrency=3)
    started.append(worker)
    for job_id in ids:
        t = time.monotonic()
        status, _, job = api.get(f"/v1/jobs/{job_id}?wait=5")
        assert status == 200 and job["state"] == "succeeded", job
        assert time.monotonic() - t < 3


def test_scripts_are_loaded_again_on_a_node_that_lost_them(fresh):
    cluster, started = fresh
    queues = queues_on_each_primary(cluster)
    api = API(cluster.url)
    worker = Worker(cluster.url, queues=",".join(queues), concurrency=1)
    started += [api, worker]
    for q in queues:
        api.wait_state(api.enqueue(q, {"type": "noop"})["id"], "succeeded")
    for node in cluster.primary_nodes():
        assert node.cli("SCRIPT", "FLUSH") == "OK"
    for q in queues:
        api.wait_state(api.enqueue(q, {"type": "noop"})["id"], "succeeded")


def test_cluster_urls_are_checked(cluster):
    for url, words in [("redis+cluster://127.0.0.1:7000/1", "one database"),
                       ("redis+cluster://127.0.0.1:7000,,127.0.0.1:7001", "empty cluster seed"),
                       ("redis+cluster://127.0.0.1:99999", "port")]:
        out = subprocess.run([str(BIN_DIR / "spool-api")], env={"REDIS_URL": url, "PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True, timeout=10)
        assert out.returncode == 2 and words in out.stderr, (url, out.stderr)


def test_a_seed_list_with_a_dead_node_still_finds_the_cluster(fresh):
    cluster, started = fresh
    url = "redis+cluster://127.0.0.1:1," + cluster.url.removeprefix("redis+cluster://")
    api = API(url)
    worker = Worker(url, queues="default", concurrency=1)
    started += [api, worker]
    api.wait_state(api.enqueue("default", {"type": "noop"})["id"], "succeeded")
