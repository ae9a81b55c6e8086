"""Sentinel (issue 14, part 1): Spool given `redis+sentinel://` finds the primary
through the sentinels, and follows a failover by itself.

A primary P, two replicas, three sentinels (quorum 2), all real processes on
loopback. Under steady enqueue load with two draining workers, either a
`SENTINEL FAILOVER` or a SIGKILL of P. With SPOOL_MIN_REPLICAS=1 no job
answered 201 may be lost; while no primary can be reached the API answers 503
and never hangs; every job answered 201 succeeds; every worker fetches again.
Figures: seconds from the fault until the API answers 201 again, and until the
last worker started a job again."""
import datetime
import os
import signal
import subprocess
import tempfile
import time

import pytest

from harness import Redis, wait_for
from load import Enqueuer

QUEUE = "sentinel"
MASTER = "mymaster"
WORKER_ENV = {"SPOOL_LEASE_MS": "5000", "SPOOL_HEARTBEAT_MS": "500"}


class Sentinel:
    def __init__(self, primary_port, free_port):
        self.dir = tempfile.mkdtemp(prefix="spool-sentinel-")
        self.port = free_port()
        conf = os.path.join(self.dir, "sentinel.conf")
        with open(conf, "w") as f:
            f.write(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
                    f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n"
                    f"sentinel down-after-milliseconds {MASTER} 1000\n"
                    f"sentinel failover-timeout {MASTER} 10000\n"
                    f"sentinel parallel-syncs {MASTER} 2\n")
        self.proc = subprocess.Popen(["redis-server", conf, "--sentinel"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: self.cli("PING") == "PONG", timeout=10, what="a sentinel to start")

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port), *map(str, args)], capture_output=True, text=True,
                           timeout=5)
        return r.stdout.strip()

    def primary_port(self):
        out = self.cli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER).split()
        return int(out[1]) if len(out) == 2 else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def started_after(worker, wall):
    """Whether the worker logged a job start after the wall-clock time `wall`."""
    for line in worker.log_lines():
        if line.get("msg") == "job started":
            ts = datetime.datetime.strptime(line["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
            if ts.timestamp() > wall:
                return True
    return False


@pytest.mark.parametrize("fault", ["sentinel-failover", "sigkill-primary"])
def test_sentinel_failover_under_load(kit, figures, fault):
    primary = Redis()
    replicas = [Redis(extra_args=["--replicaof", "127.0.0.1", str(primary.port)]) for _ in range(2)]
    sentinels, spawn = [], None
    try:
        for r in replicas:
            wait_for(lambda: "master_link_status:up" in r.cli("INFO", "replication"), timeout=15,
                     what="a replica to sync")
        sentinels = [Sentinel(primary.port, kit.free_port) for _ in range(3)]
        wait_for(lambda: all(s.cli("SENTINEL", "REPLICAS", MASTER).count("flags") == 2 for s in sentinels)
                 and all("num-other-sentinels\n2" in s.cli("SENTINEL", "MASTER", MASTER) for s in sentinels),
                 timeout=30, what="the sentinels to know each other and both replicas")
        url = "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in sentinels) + f"/{MASTER}"
        from conftest import Spawner
        spawn = Spawner(url)
        api = spawn.api(env={"SPOOL_MIN_REPLICAS": "1", "SPOOL_REPLICA_ACK_TIMEOUT_MS": "500"})
        workers = [spawn.worker(queues=QUEUE, concurrency=2, env=WORKER_ENV) for _ in range(2)]
        client = Enqueuer(api, QUEUE, timeout=10)
        client.start()
        time.sleep(kit.pick(1.0, 2.0))

        t_fault, wall_fault = time.monotonic(), time.time()
        if fault == "sentinel-failover":
            assert sentinels[0].cli("SENTINEL", "FAILOVER", MASTER) == "OK"
        else:
            os.kill(primary.proc.pid, signal.SIGKILL)
        wait_for(lambda: sentinels[0].primary_port() not in (None, primary.port), timeout=30,
                 what="the sentinels to promote a replica")
        wait_for(lambda: any(r[0] > t_fault and r[1] == 201 for r in client.records), timeout=30,
                 what="an enqueue answered 201 after the fault")
        first_201 = client.first_201_after(t_fault)
        wait_for(lambda: all(started_after(w, wall_fault) for w in workers), timeout=30,
                 what="every worker to start a job again after the fault")
        all_fetching = time.monotonic()
        time.sleep(kit.pick(1.0, 2.0))
        new_primary = sentinels[0].primary_port()
        accepted, lost = client.finish(kit.RespClient(new_primary))
        records = client.records
        assert not lost, f"{len(lost)} of {len(accepted)} jobs answered 201 were lost, e.g. {lost[:3]}"
        kit.wait_for(lambda: all(s == "succeeded" for s in kit.RespClient(new_primary).states(QUEUE, accepted).values()),
                     timeout=60, what="every job answered 201 to succeed")
        refused = [r for r in records if r[1] == 503]
        figures.record(f"sentinel_{fault.replace('-', '_')}", accepted=len(accepted), lost=len(lost),
                       refused_503=len(refused),
                       refused_not_replicated=sum(1 for r in refused if r[2] == "not_replicated"),
                       s_until_201=round(first_201 - t_fault, 2),
                       s_until_every_worker_fetches=round(all_fetching - t_fault, 2))
    finally:
        if spawn:
            spawn.stop_all()
        for s in sentinels:
            s.stop()
        for r in [primary, *replicas]:
            r.cleanup()
