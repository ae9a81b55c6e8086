"""A worker cut off from Redis (issue 11, item 8): it must stop its jobs before
their leases can expire unrenewed, so that another worker's re-run of a job
does not overlap the first run.

Worker A reaches Redis through a proxy that is then cut (packets go nowhere,
no error comes back); worker B is connected directly and recovers A's jobs
once their leases expire. Every run of the handler writes its start and end
time; a run of B must start after A's run of the same job ended."""
import time

from tcp_proxy import TCPProxy

LEASE_MS = 3000
KILL_GRACE_MS = 300
ENV = {"SPOOL_LEASE_MS": str(LEASE_MS), "SPOOL_HEARTBEAT_MS": "500", "SPOOL_KILL_GRACE_MS": str(KILL_GRACE_MS),
       "SPOOL_SHUTDOWN_GRACE_MS": "1000"}


def test_a_cut_off_worker_stops_its_jobs_before_their_leases_expire(spawn, redis, kit, tmp_path, figures):
    runs = tmp_path / "runs.log"
    handler = kit.write_script(tmp_path / "long.sh", f"""#!/bin/sh
echo "start $SPOOL_JOB_ID $SPOOL_WORKER_NAME $(date +%s%N)" >> {runs}
trap 'echo "end $SPOOL_JOB_ID $SPOOL_WORKER_NAME $(date +%s%N)" >> {runs}; exit 143' TERM
sleep 20 & wait
echo "end $SPOOL_JOB_ID $SPOOL_WORKER_NAME $(date +%s%N)" >> {runs}
""")
    proxy = TCPProxy(redis.port)
    try:
        api = spawn.api()
        jobs = [api.enqueue("cut", {"type": "long", "timeout_ms": 60000})["id"] for _ in range(2)]
        a = spawn.worker(queues="cut", concurrency=2, env={**ENV, "REDIS_URL": proxy.url, "SPOOL_WORKER_NAME": "A"},
                         args=["--handler", f"long={handler}"])
        kit.wait_for(lambda: runs.exists() and runs.read_text().count("start") == 2, timeout=10, what="A to start both jobs")
        t_cut = time.time()  # wall clock, as the handler's `date` records
        proxy.partition()
        time.sleep(0.3)
        spawn.worker(queues="cut", concurrency=2, env={**ENV, "SPOOL_WORKER_NAME": "B"}, args=["--handler", f"long={handler}"])
        kit.wait_for(lambda: runs.read_text().count("start") >= 4, timeout=LEASE_MS / 1000 + 8, what="B to re-run both jobs")
        time.sleep(2.0)  # the partition lasts on while B runs the jobs
        stopped_lines = kit.log_lines_with([a], "lease about to expire", contains=True)
        proxy.heal()
        time.sleep(1.0)
    finally:
        proxy.close()

    events = {}
    for line in runs.read_text().splitlines():
        kind, job, name, ns = line.split()
        events.setdefault((job, name), {})[kind] = int(ns) / 1e9
    overlaps = []
    for job in jobs:
        first, second = events.get((job, "A"), {}), events.get((job, "B"), {})
        assert "end" in first, f"A's run of {job} never ended: {events}"
        assert "start" in second, f"B never re-ran {job}: {events}"
        overlaps.append(first["end"] - second["start"])
    assert max(overlaps) < 0, f"runs of one job overlapped by {max(overlaps) * 1000:.0f} ms"
    assert len(stopped_lines) == 2, stopped_lines
    a_run_s = max(events[(j, "A")]["end"] for j in jobs) - t_cut
    figures.record("partition", lease_ms=LEASE_MS, kill_grace_ms=KILL_GRACE_MS,
                   a_stopped_after_cut_ms=round(a_run_s * 1000), gap_before_rerun_ms=round(-max(overlaps) * 1000))
