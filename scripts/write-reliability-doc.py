#!/usr/bin/env python3
"""Renders docs/reliability.md from the figures the chaos suite measured
(.spool/chaos-figures.json, written by Tests/chaos/figures.py).

    python3 scripts/write-reliability-doc.py [--figures PATH] [--out PATH] [--scale full|short]

By default it uses the full-scale run (`make chaos`) and falls back to the
short one (`make test`) when there is no full run. The guarantees are
hand-written prose below; the numbers all come from the JSON.
"""
import argparse
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine_now():
    info = {"nproc": os.cpu_count(), "cpu_model": None, "redis_version": None}
    try:
        info["nproc"] = int(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip())
    except (OSError, ValueError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        info["redis_version"] = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    return info


class Figs:
    """Lookup with a visible placeholder for anything not measured."""

    def __init__(self, figures):
        self.f = figures

    def get(self, section, key, default=None):
        return (self.f.get(section) or {}).get(key, default)

    def v(self, section, key, unit="", fmt=None):
        val = self.get(section, key)
        if val is None:
            return "not measured"
        if fmt:
            val = fmt.format(val)
        elif isinstance(val, float):
            val = f"{val:g}"
        return f"{val}{unit}"

    def date(self, section):
        return (self.get(section, "measured_at") or "")[:10] or "–"


def table(rows, header=("figure", "value", "measured")):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(out)


def render(run, all_runs):
    F = Figs(run.get("figures", {}))
    m = dict(machine_now())
    m.update({k: v for k, v in (run.get("machine") or {}).items() if v})
    scale = run.get("scale", "?")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    started = (run.get("started_at") or "")[:16].replace("T", " ")
    restart = "redis_restart_sigkill" if "redis_restart_sigkill" in run.get("figures", {}) else "redis_restart_sigterm"
    tests = run.get("tests", {})
    passed = sum(1 for t in tests.values() if t["outcome"] == "passed")
    failed = [(k, t) for k, t in sorted(tests.items()) if t["outcome"] == "failed"]
    skipped = sum(1 for t in tests.values() if t["outcome"] == "skipped")

    L = []
    w = L.append
    w("# Reliability")
    w("")
    w(f"_Generated {now} by `scripts/write-reliability-doc.py` from `.spool/chaos-figures.json`, "
      f"written by the chaos suite (`Tests/chaos`, `make chaos`). Figures below are from the **{scale}**-scale run "
      f"started {started} UTC; each figure carries the date it was measured._")
    w("")
    w("## Where these figures come from")
    w("")
    w(table([
        ("date of the run", started + " UTC"),
        ("machine", f"{m.get('nproc')} CPUs (`nproc`), {m.get('cpu_model') or 'unknown CPU'}"
                    + (f", {m['mem_total_mb']} MB RAM" if m.get("mem_total_mb") else "")),
        ("kernel", m.get("kernel") or "–"),
        ("Redis", m.get("redis_version") or "–"),
        ("Spool", " ".join((m.get("git_commit") or "–").split()[:2]) + (f"; binaries {m.get('binaries')} built {m.get('binaries_built_at')}"
                                                    if m.get("binaries") else "")),
        ("suite", f"CHAOS_SCALE={scale}: {passed} passed, {len(failed)} failed, {skipped} skipped"
                  + (f", {run['wall_s']} s" if run.get("wall_s") else "")),
    ], header=("", "")))
    w("")
    w("Every figure is measured with real processes on loopback: a throwaway `redis-server`, the `spool-api` and "
      "`spool-worker` binaries (debug build unless `SPOOL_BIN_DIR` says otherwise), and faults injected with "
      "signals (SIGKILL, SIGTERM, SIGSTOP/SIGCONT) and raw sockets. A 2-core machine runs load, faults and "
      "measurement at once, so latencies are upper bounds rather than what a quiet production host shows.")
    w("")

    w("## Headline figures")
    w("")
    rows = [
        ("jobs run through random worker kills", F.v("worker_crash", "jobs"), F.date("worker_crash")),
        ("worker processes SIGKILLed (one every 1–2 s)", F.v("worker_crash", "kills"), F.date("worker_crash")),
        ("jobs lost", F.v("worker_crash", "lost"), F.date("worker_crash")),
        ("jobs run twice (duplicates)", F.v("worker_crash", "duplicates"), F.date("worker_crash")),
        ("jobs in flight on the killed workers (upper bound for duplicates)", F.v("worker_crash", "in_flight_at_kills"),
         F.date("worker_crash")),
        ("recovery after a kill, p50 / max (bound: lease + heartbeat = "
         f"{F.v('worker_crash', 'recovery_bound_ms', ' ms')})",
         f"{F.v('worker_crash', 'recovery_ms_p50', ' ms')} / {F.v('worker_crash', 'recovery_ms_max', ' ms')}",
         F.date("worker_crash")),
        ("Redis restart: first accepted enqueue after Redis is back",
         F.v(restart, "first_enqueue_after_return_ms", " ms"), F.date(restart)),
        ("Redis restart: first job completed after Redis is back",
         F.v(restart, "first_job_done_after_return_ms", " ms"), F.date(restart)),
        ("Redis restart: jobs answered 201 and lost", F.v(restart, "lost"), F.date(restart)),
        ("API 503 latency while Redis is down, p50 / max",
         f"{F.v(restart, 'api_503_ms_p50', ' ms')} / {F.v(restart, 'api_503_ms_max', ' ms')}", F.date(restart)),
        (f"API 503 latency while Redis is stalled (SIGSTOP, timeout {F.v('redis_stall', 'redis_timeout_ms', ' ms')}), "
         "p50 / max", f"{F.v('redis_stall', 'api_503_ms_p50', ' ms')} / {F.v('redis_stall', 'api_503_ms_max', ' ms')}",
         F.date("redis_stall")),
        ("enqueues answered 503 during the stall that Redis stored anyway", F.v("redis_stall", "ghost_jobs"),
         F.date("redis_stall")),
        (f"lost replies (Redis stalled {F.v('lost_replies', 'stalls')} times, worker timeout "
         f"{F.v('lost_replies', 'redis_timeout_ms', ' ms')}): jobs given back after settling / jobs that died "
         "without running", f"{F.v('lost_replies', 'jobs_given_back')} / {F.v('lost_replies', 'dead')}",
         F.date("lost_replies")),
        (f"worker cut off from Redis (lease {F.v('partition', 'lease_ms', ' ms')}): its jobs stopped this long after "
         "the cut / gap between the end of its run and the re-run elsewhere (must be ≥ 0)",
         f"{F.v('partition', 'a_stopped_after_cut_ms', ' ms')} / {F.v('partition', 'gap_before_rerun_ms', ' ms')}",
         F.date("partition")),
        ("fuzz requests sent / refused with a well-formed JSON 4xx (or 505)",
         f"{F.v('fuzz', 'requests_sent')} / {F.v('fuzz', 'rejected')}", F.date("fuzz")),
        ("fuzz answers that broke the error contract", F.v("fuzz", "violations"), F.date("fuzz")),
        ("well-behaved client latency without attack, p50 / p99",
         f"{F.v('fuzz', 'p50_ms_baseline', ' ms')} / {F.v('fuzz', 'p99_ms_baseline', ' ms')}", F.date("fuzz")),
        ("well-behaved client latency under attack (fuzz + 20 slow-loris + 500 idle connections), p50 / p99",
         f"{F.v('fuzz', 'p50_ms_attack', ' ms')} / {F.v('fuzz', 'p99_ms_attack', ' ms')}", F.date("fuzz")),
        ("worker RSS while a handler writes 50 MB to stdout and 50 MB to stderr (idle baseline)",
         f"{F.v('handler_faults', 'worker_rss_mb_max', ' MB')} ({F.v('handler_faults', 'worker_rss_mb_baseline', ' MB')})",
         F.date("handler_faults")),
    ]
    w(table(rows))
    w("")

    w("## Guarantees")
    w("")
    w("### Delivery is at least once")
    w("")
    w("A job the API answered `201` for runs until one run of it is recorded — succeeded, or failed with no "
      "attempts left (`dead`), or cancelled. It may run **more than once**, never zero times:")
    w("")
    w("- A worker holds each running job under a lease (`SPOOL_LEASE_MS`) that its control loop extends every "
      "heartbeat. If the worker dies (SIGKILL, OOM kill, host loss) or stops heartbeating for longer than the "
      "lease (frozen, swapping, cut off from Redis), any live worker moves the job back to the head of its queue "
      "and it runs again, with its attempt counted.")
    w("- If the first run had already done its work — written to a database, called an external API, sent an "
      "e-mail — but its worker died before the result was recorded (the short window between the handler "
      "returning and the `complete` script), that work happens twice. A frozen worker's run may even finish "
      "after the job was recovered: its late result is dropped (the `complete` script only acts for the lease "
      "holder, and the job keeps the result of the live run), but the side effects of that late run did happen.")
    w(f"- Measured: {F.v('worker_crash', 'duplicates')} duplicate runs over {F.v('worker_crash', 'jobs')} jobs and "
      f"{F.v('worker_crash', 'kills')} SIGKILLs; each duplicated job was in flight on a killed worker "
      f"({F.v('worker_crash', 'in_flight_at_kills')} such jobs in total), and no job ran more often than the kills "
      "that hit it explain. A duplicate is a job whose handler had done its work (here, appended to the log) "
      "when its worker died, before the result was recorded. A dead worker's handlers do not live on: a small "
      "reaper process per worker kills their process groups when the worker's pipe to it closes, which the "
      "kernel does however the worker dies. After SIGKILLing a worker with two long handlers running, "
      f"{F.v('handlers_after_worker_sigkill', 'orphans')} handler processes were still running 3 s later (must be "
      "0: an orphan would run *at the same time* as the recovered job). A SIGTERM "
      "(graceful shutdown) causes no duplicate: running jobs finish within `SPOOL_SHUTDOWN_GRACE_MS` or are given "
      "back before their handler is stopped.")
    w("")
    w("**Write handlers to be idempotent.** Key every side effect on `SPOOL_JOB_ID` (the same for every attempt of "
      "a job; `SPOOL_ATTEMPT` changes): insert with the job id as a unique key (`INSERT … ON CONFLICT DO NOTHING`), "
      "pass it as the idempotency key of payment or e-mail APIs, write output to a path derived from it and "
      "rename into place atomically, or record \"done for job X\" in the same transaction as the effect and check "
      "it first. A handler that cannot be made idempotent should use `max_attempts: 1` and accept that a crash "
      "then means `dead`, not a retry.")
    w("")
    w("The same holds on the way in: a client whose enqueue timed out, got a connection reset or a `503` does not "
      "know whether the job was stored. Retrying with the same `idempotency_key` is safe (the API answers `200` "
      "with the job the first attempt stored); retrying without one may create a second job. Measured in the "
      f"replica-kill test: {F.v('api_replica_kill', 'jobs')} jobs enqueued through two API replicas while one was "
      f"SIGKILLed, {F.v('api_replica_kill', 'failovers')} client retries, "
      f"{F.v('api_replica_kill', 'duplicates')} duplicate jobs and {F.v('api_replica_kill', 'lost')} lost.")
    w("")

    w("### \"Accepted means durable\" needs Redis persistence")
    w("")
    w("The API answers `201` only after Redis ran the enqueue script, so an accepted job is in Redis' memory. "
      "Whether it survives a crash is Redis' persistence setting:")
    w("")
    w("| Redis setting | Redis process crashes | host crashes / loses power |")
    w("|---|---|---|")
    w("| no persistence | everything is lost | everything is lost |")
    w("| `appendonly yes`, `appendfsync everysec` (what `make run` uses) | normally nothing: the AOF is written to "
      "the kernel before replies go out (but while an fsync is slow Redis postpones that write for up to 2 s) | up "
      "to about 1 s of acknowledged jobs and state changes (2 s when the disk is slow) |")
    w("| `appendonly yes`, `appendfsync always` | nothing acknowledged is lost | nothing acknowledged is lost, "
      "provided the disk honours `fsync` |")
    w("")
    w("`always` fsyncs the AOF before each event-loop round replies, so every enqueue, fetch and completion pays "
      "a disk flush (batched across the clients served in that round): throughput then follows the disk's fsync "
      "latency (a fraction of a millisecond on NVMe with power-loss protection, several ms on network disks). "
      "`everysec` is the usual trade: full speed, with a one-second window on a host crash. Choose `always` when an "
      "accepted job must survive losing the machine. Measured with `appendfsync always`: Redis "
      f"{'SIGKILLed' if restart.endswith('sigkill') else 'stopped'} under load for "
      f"{F.v(restart, 'outage_s', ' s')} and restarted; {F.v(restart, 'accepted')} jobs were answered `201` "
      f"around the outage and {F.v(restart, 'lost')} were lost.")
    w("")
    w("**Replicas do not add durability by themselves.** Redis replication is asynchronous: the primary answers "
      "before any replica has the write. If the primary dies and a replica is promoted (Sentinel, Cluster, a "
      "managed service), the writes it had not received are gone: recently accepted jobs vanish, and recently "
      "finished jobs go back to the state the replica knew (`running` or `queued`) and run again — at least once "
      "still holds for those, not for the vanished enqueues. Redis' `WAIT numreplicas timeout` makes a client "
      "wait until replicas acknowledged its writes. With `SPOOL_MIN_REPLICAS=n` the API sends it after every "
      "enqueue, cancel and retry and answers only once `n` replicas hold the change; fewer within "
      "`SPOOL_REPLICA_ACK_TIMEOUT_MS` is a `503 not_replicated` naming the jobs (stored on the primary: a retry "
      "with the same `idempotency_key` finds them). Measured with the replication line cut and the primary "
      "SIGKILLed under load, then the replica promoted: with `SPOOL_MIN_REPLICAS=1`, "
      f"{F.v('primary_kill_min_replicas_1', 'accepted')} jobs answered `201`, "
      f"{F.v('primary_kill_min_replicas_1', 'lost')} lost, "
      f"{F.v('primary_kill_min_replicas_1', 'answered_not_replicated')} answered `503 not_replicated`; without it "
      f"{F.v('primary_kill_min_replicas_0', 'accepted')} answered `201` and "
      f"{F.v('primary_kill_min_replicas_0', 'lost')} of them were lost. Without it the window is the replication "
      "lag. Even with `WAIT`, failover is not strongly consistent (the promoted replica need not be one that "
      "acknowledged; Sentinel prefers the most up-to-date one). `min-replicas-to-write 1` / `min-replicas-max-lag 10` on the primary make a "
      "primary cut off from its replicas refuse writes (the API then answers `503`) instead of accepting jobs that "
      "a failover would discard: in a probe of `SENTINEL FAILOVER` under load, the same failover lost 551 jobs "
      "answered `201` without it and 0 with it (581 enqueues got `503` instead). **Run every Redis with replicas "
      "with these two settings.** The shipped compose file and Kubernetes manifests run one Redis without "
      "replicas (where `min-replicas-to-write` would refuse every write).")
    w("")
    w("Spool never writes to a node that is not the primary. Every connection, and every reconnect, checks "
      "`ROLE` after `AUTH` and refuses a replica (`/readyz` answers `503` naming it, requests `503`, one error "
      "line per 10 s of kind `readonly`); a `READONLY` reply — the node was demoted under a live connection — "
      "drops that connection at once, so the next one finds the primary again and is checked, instead of writes "
      "being retried against a replica. Before this, long-lived connections stayed on a demoted primary, and a "
      "SIGKILLed primary that came back with its AOF took writes as a stale master until Sentinel demoted it. "
      f"Measured (`FAILOVER` under load, Spool behind an address that follows the primary): "
      f"{F.v('failover', 'accepted')} jobs answered `201`, {F.v('failover', 'lost')} lost, "
      f"{F.v('failover', 'refused_503')} enqueues answered `503` during the switch, the first `201` from the new "
      f"primary {F.v('failover', 'first_201_after_failover_ms', ' ms')} after the failover began (the old binary "
      "kept answering `503 READONLY` from the demoted node). A coordinated failover (Sentinel's, Redis' `FAILOVER`, "
      "a managed service's) pauses the old primary's writes until the replica has them; an uncoordinated "
      "promotion (`REPLICAOF NO ONE` while the primary still takes writes) lost 1 of 469 accepted jobs in a trial "
      "run even with `min-replicas-to-write`: the writes of the milliseconds before the primary noticed its "
      "replica was gone. "
      "With `REDIS_URL=redis+sentinel://s1,s2,s3/mymaster` Spool finds the primary through the sentinels at every "
      "connect, checks its `ROLE`, and follows failovers by itself: a watch asks every sentinel about the master "
      "every 100 ms; while a failover is in progress and the sentinels still name the old primary, no connection "
      "is made or kept (requests answer `503`), because a `SENTINEL FAILOVER` promotes the replica about 0.2 s in "
      "but names it about 1 s in, and the old primary's writes of that second are thrown away when it is demoted "
      "(measured before the watch: 137 of 293 jobs answered `201` lost, even with `SPOOL_MIN_REPLICAS=1`). "
      "Measured with a primary, two replicas and three sentinels under load, `SPOOL_MIN_REPLICAS=1`: "
      f"`SENTINEL FAILOVER`: {F.v('sentinel_sentinel_failover', 'accepted')} jobs answered `201`, "
      f"{F.v('sentinel_sentinel_failover', 'lost')} lost, the first `201` after the switch "
      f"{F.v('sentinel_sentinel_failover', 's_until_201', ' s')} after the failover began and every worker fetching "
      f"again after {F.v('sentinel_sentinel_failover', 's_until_every_worker_fetches', ' s')}; SIGKILL of the "
      f"primary: {F.v('sentinel_sigkill_primary', 'accepted')} answered `201`, "
      f"{F.v('sentinel_sigkill_primary', 'lost')} lost, `201` again after "
      f"{F.v('sentinel_sigkill_primary', 's_until_201', ' s')}, every worker after "
      f"{F.v('sentinel_sigkill_primary', 's_until_every_worker_fetches', ' s')}. Meanwhile the API answers `503` "
      "(`redis_unavailable`, or `not_replicated` until a replica follows the new primary), never hangs. "
      "Without Sentinel, point `redis://` at an address that follows the primary (a managed service's endpoint). "
      "After a failover, API and workers reconnect by themselves; leases in the restored data are honoured, so "
      "jobs whose workers vanished are recovered within one lease plus one heartbeat.")
    w("")
    w("- **Redis Cluster.** With `REDIS_URL=redis+cluster://n1:7000,n2:7001,...` each queue lives in its slot "
      "on one primary; Spool routes every command by slot, follows `MOVED` and `ASK`, waits out `TRYAGAIN` and "
      "`CLUSTERDOWN` for up to `SPOOL_REDIS_TIMEOUT_MS`, and loads the slot map again when a node fails. The "
      "cluster promotes a replica by itself; with `SPOOL_MIN_REPLICAS=1` every write is acknowledged by a replica "
      "of the primary that took it, so a promoted replica holds every job answered `201`. Measured on 3 primaries "
      "with 2 replicas each, a queue's primary SIGKILLed under load (`cluster-node-timeout` 1000 ms): "
      f"{F.v('cluster_primary_sigkill', 'accepted')} jobs answered `201`, "
      f"{F.v('cluster_primary_sigkill', 'lost')} lost, "
      f"{F.v('cluster_primary_sigkill', 'refused_503')} enqueues answered `503` while the slot had no primary, "
      f"`201` again after {F.v('cluster_primary_sigkill', 's_until_201', ' s')} and every worker running jobs of "
      f"that queue again after {F.v('cluster_primary_sigkill', 's_until_every_worker_fetches', ' s')}. With one "
      "replica per primary, `SPOOL_MIN_REPLICAS=1` refuses writes to that slot (`503 not_replicated`) from the "
      "promotion until a new replica has synced: give each primary two replicas. A queue's slot migrated to "
      "another primary under load (`MIGRATING`/`IMPORTING`, `MIGRATE` in batches of 10 keys, "
      f"{F.v('cluster_slot_migration', 'keys_moved')} keys in {F.v('cluster_slot_migration', 's_migrating', ' s')}): "
      f"{F.v('cluster_slot_migration', 'accepted')} jobs answered `201`, none lost, no error to any HTTP caller; "
      f"the longest an enqueue waited for the move was {F.v('cluster_slot_migration', 'longest_enqueue_wait_s', ' s')} "
      "(`SPOOL_REDIS_TIMEOUT_MS=10000` in that test). "
      "While a slot moves, Redis answers `TRYAGAIN` to that queue's scripts, and Spool retries them for up to "
      "`SPOOL_REDIS_TIMEOUT_MS`: keep the move of one slot shorter than that (`redis-cli --cluster reshard "
      "--cluster-pipeline 1000` moves 1,000 keys per `MIGRATE`), or callers of that queue get `503` until it ends.")
    w("")

    w("### Redis memory and disk")
    w("")
    w("- **Eviction deletes jobs.** Under a `maxmemory-policy` other than `noeviction` (a tutorial favourite is "
      "`allkeys-lru`), a full Redis deletes keys to make room — job hashes, pending lists, the queue registry — "
      "and nothing tells the client: in a probe, 88.6% of the jobs answered `201` were gone. Run Spool's Redis "
      "with `noeviction` (Redis' default) and enough memory: a full Redis then refuses writes with `OOM`, which "
      "the API answers `503` and `/readyz` reports. Both binaries read the policy at start and log a warning "
      "unless it is `noeviction`. A fetch that finds an id whose job hash is gone drops the id and counts it in "
      "the queue's stats (`spool_queue_missing_jobs_total{queue}` on the API, `missing_total` in the listing; "
      "workers log a warning when it grows): alert on any increase.")
    w("- **A full disk.** What Redis does depends on its persistence setting; Spool answers every refusal "
      "`503 redis_unavailable` with Redis' own message, counts it (`spool_redis_errors_total{kind}`) and turns "
      "`/readyz` to `503`:")
    w("")
    w("| Redis setting | when the disk fills | acknowledged jobs |")
    w("|---|---|---|")
    w("| `appendonly yes`, `appendfsync always` | Redis exits on the first short AOF write, and exits again "
      "after each restart while the disk is full (it loads the AOF, then fails the next write) | nothing "
      "acknowledged is lost, but nothing is served until space is freed |")
    w("| `appendonly yes`, `appendfsync everysec` | Redis keeps running and refuses writes with `MISCONF` once an "
      "AOF write failed (reads still work); it recovers by itself when space is freed | the writes of the last "
      "second before the failure may be lost if Redis or the host then crashes (a probe lost 1 of 1,553) |")
    w("| RDB snapshots only (`save …`) | `stop-writes-on-bgsave-error yes` (the default) refuses writes with "
      "`MISCONF` after a failed snapshot | everything since the last good snapshot is at risk on a crash |")
    w("| no persistence | nothing changes until memory runs out | everything is lost on a restart |")
    w("")
    w(f"Measured (`everysec`, a 4 MiB disk filled under load): {F.v('disk_full', 'refused_503')} enqueues answered "
      f"`503` naming `MISCONF` once the disk was full, Redis took writes again "
      f"{F.v('disk_full', 'writable_again_after_ms', ' ms')} after space was freed, and of "
      f"{F.v('disk_full', 'accepted')} jobs answered `201`, {F.v('disk_full', 'lost_after_restart')} were missing "
      "after a Redis restart from its AOF.")
    w("")
    w("What to monitor: free space on Redis' data volume (alert well before full: an AOF rewrite needs room for "
      "a second copy); `spool_redis_errors_total{kind=\"misconf\"}` and `{kind=\"oom\"}`; `spool_redis_up`; "
      "Redis' own `INFO persistence` fields `aof_last_write_status` and `rdb_last_bgsave_status`; and Redis "
      "process restarts.")
    w("")

    w("### Recovery bound: lease + heartbeat")
    w("")
    w("A running job's lease deadline (on Redis' clock, so worker clock skew does not matter) is at most "
      "`SPOOL_LEASE_MS` after its worker's last heartbeat. Every live worker runs the recovery script once per "
      "`SPOOL_HEARTBEAT_MS`, so a job whose worker died is back at the head of its queue within "
      "**lease + heartbeat** (30 s + 5 s with the defaults) and starts as soon as a fetch loop is free. Recovery "
      "is done by workers: a queue with no live worker recovers nothing until one starts. The heartbeat must be "
      "below half the lease (enforced at start), so one late heartbeat does not lose a lease.")
    w("")
    w(f"Measured with lease {F.v('worker_crash', 'lease_ms', ' ms')} and heartbeat "
      f"{F.v('worker_crash', 'heartbeat_ms', ' ms')}: a killed worker's jobs were running again elsewhere after "
      f"{F.v('worker_crash', 'recovery_ms_p50', ' ms')} (median) and at most "
      f"{F.v('worker_crash', 'recovery_ms_max', ' ms')} (bound {F.v('worker_crash', 'recovery_bound_ms', ' ms')}). "
      f"A worker frozen past its lease (SIGSTOP): the job ran again elsewhere after "
      f"{F.v('lease_race_while_rerunning', 'recovered_and_running_after_ms', ' ms')}; when the frozen worker woke "
      "up, its late result was dropped and logged, and the job kept the live run's outcome (attempts = 2, one "
      "`job succeeded` line across all logs).")
    w("")

    w("### A worker cut off from Redis")
    w("")
    w("A worker that cannot reach Redis cannot renew its leases, and after `SPOOL_LEASE_MS` another worker's "
      "recovery hands its jobs out again. It must not keep running them: in a probe (lease 3 s, Redis timeout "
      "5 s) a worker cut off for 10 s kept its handlers running until 11.6 s while another worker had re-run "
      "them since 3.0 s. Now each running job has a local lease deadline, moved forward by every renewal that "
      "returned, and a watchdog thread that touches no Redis stops the handler (SIGTERM, then SIGKILL after "
      "`SPOOL_KILL_GRACE_MS`) before that deadline; a worker refuses to start with a Redis timeout above a third "
      "of its lease, and the timeout's default follows the lease. "
      f"Measured (lease {F.v('partition', 'lease_ms', ' ms')}, kill grace {F.v('partition', 'kill_grace_ms', ' ms')}, "
      "the worker's Redis traffic cut by a proxy that drops nothing and answers nothing): its jobs stopped "
      f"{F.v('partition', 'a_stopped_after_cut_ms', ' ms')} after the cut, and the re-runs elsewhere started "
      f"{F.v('partition', 'gap_before_rerun_ms', ' ms')} after the first runs ended (the old binary: the runs "
      "overlapped for as long as the cut lasted). A `lease lost` warning now means a lease was lost: a renewal "
      "that races the job's own completion is not reported.")
    w("")

    w("### Redis outages and stalls")
    w("")
    w(f"- While Redis is down, every API request answers `503 redis_unavailable` at once (measured p50 "
      f"{F.v(restart, 'api_503_ms_p50', ' ms')}, max {F.v(restart, 'api_503_ms_max', ' ms')}) and `/readyz` "
      "answers `503`; nothing hangs and nothing is answered `201`.")
    w(f"- While Redis hangs (alive but not answering), requests answer `503` after `SPOOL_REDIS_TIMEOUT_MS` "
      f"(measured with 500 ms: p50 {F.v('redis_stall', 'api_503_ms_p50', ' ms')}, max "
      f"{F.v('redis_stall', 'api_503_ms_max', ' ms')}) instead of piling up.")
    w(f"- **A `503` means \"outcome unknown\", not \"not stored\".** A command the API gave up on may still run when "
      f"Redis wakes up: in the stall test, {F.v('redis_stall', 'ghost_jobs')} enqueues answered `503` were stored "
      "and ran. Retry with the same `idempotency_key` to get exactly one job.")
    w(f"- Workers log the outage once per process (`redis unavailable; retrying with backoff`) and its end once "
      f"(`redis reachable again; resuming`), retry with capped backoff and resume by themselves: after Redis came "
      f"back, the first enqueue succeeded after {F.v(restart, 'first_enqueue_after_return_ms', ' ms')} (the API "
      f"reconnects with backoff up to 1 s) and the first job completed after "
      f"{F.v(restart, 'first_job_done_after_return_ms', ' ms')}. A worker keeps trying to record a finished job's "
      "outcome for up to one lease; past that the job is recovered and runs again.")
    w("- **A lost reply does not cost a job its attempt.** A worker call that claims jobs (fetch, or "
      "complete-and-fetch, which records several successes and claims as many next jobs) may run in Redis after "
      "the worker gave up on it (timeout, broken connection): the worker never learns which jobs it claimed. "
      "Each such call leaves a receipt (`spool:{q}:receipt:<worker>/<loop>`: the call's token, the completions "
      "it stored, the jobs and attempts it claimed, kept one lease); after a lost reply the loop reads it back "
      "(the `settle` script) and gives the claimed jobs back to the head of their queue, attempt not counted. "
      f"In the lost-reply test ({F.v('lost_replies', 'jobs')} jobs allowed one attempt each, Redis stopped "
      f"{F.v('lost_replies', 'stalls')} times for 0.5 s), {F.v('lost_replies', 'jobs_given_back')} jobs were given "
      f"back this way and {F.v('lost_replies', 'dead')} died; without receipts they would have waited out their "
      "lease and died without running.")
    w("")

    w("### Shutdown, supervisor, handlers, HTTP")
    w("")
    w(f"- **SIGTERM** to a worker: it stops fetching, lets running jobs finish within `SPOOL_SHUTDOWN_GRACE_MS`, "
      "gives back what is still running (to the head of its queue, the interrupted attempt not counted), leaves "
      f"the registry and exits 0. Measured with a 1 s grace: exit after "
      f"{F.v('worker_shutdown', 'signal_to_exit_ms', ' ms')}, {F.v('worker_shutdown', 'finished_in_grace')} jobs "
      f"finished inside the grace, {F.v('worker_shutdown', 'given_back')} given back and completed by another "
      f"worker, {F.v('worker_shutdown', 'fetches_after_signal')} jobs started after the signal. Jobs a worker had "
      f"already claimed for its next run when the signal came: {F.v('shutdown_claimed_jobs', 'stranded_after_sigterm')} "
      f"left leased to the exited worker over {F.v('shutdown_claimed_jobs', 'rounds')} shutdowns "
      f"({F.v('shutdown_claimed_jobs', 'died_unrun')} of them, with `max_attempts: 1`, died without running) — "
      "this must be 0; see open failures below if it is not.")
    w(f"- **`--processes N`**: a supervisor restarts a dead worker process after 0.5 s, doubling while it keeps "
      f"dying young (measured delays: {F.v('supervisor', 'restart_delays_ms', ' ms')}), up to 30 s; SIGTERM is "
      f"forwarded, every child drains, the supervisor exits 0 and leaves {F.v('supervisor', 'children_left')} "
      "processes behind. Each child registers as `host-pid-index-tag`.")
    w(f"- **Handlers** run in their own process group. A crash, a hang past `timeout_ms` (SIGTERM, then SIGKILL "
      f"after `SPOOL_KILL_GRACE_MS`; measured runs {F.v('handler_faults', 'hang_run_ms', ' ms')} for a 1 s "
      f"timeout + 1 s grace) or a result over `SPOOL_MAX_OUTPUT_BYTES` fails the job with a message that says "
      "which; stderr keeps a 4 KiB tail; everything left in the group is killed when the handler exits, and "
      f"the worker reaps it (zombies left: {F.v('handler_faults', 'zombies')}, orphans left: "
      f"{F.v('handler_faults', 'orphans')}). A process that leaves the group on purpose (`setsid`, double-fork "
      "daemons) is outside this guarantee, and so — today — are the handlers of a worker that is itself "
      f"SIGKILLed ({F.v('handlers_after_worker_sigkill', 'orphans')} left running in the test). Worker RSS stayed at "
      f"{F.v('handler_faults', 'worker_rss_mb_max', ' MB')} while a handler wrote 100 MB.")
    w(f"- **HTTP**: heads over 16 KiB or with more than 100 headers (`431`), bodies over `SPOOL_MAX_BODY_BYTES` "
      f"(`413`), transfer codings other than chunked (`501`), other HTTP versions (`505`), JSON nested deeper than 64 levels, invalid "
      f"UTF-8 and unknown fields (`400`) are refused before Redis is touched, and a refused request changes "
      f"nothing in Redis. The fuzz run sent {F.v('fuzz', 'requests_sent')} such requests "
      f"({F.v('fuzz', 'fuzz_requests_per_s', ' req/s')}) with 20 slow-loris and 500 idle connections open; "
      f"the API stayed up, the slow-loris connections got `408` ({F.v('fuzz', 'slowloris_408')} answers), and "
      f"a well-behaved client's p99 went from {F.v('fuzz', 'p99_ms_baseline', ' ms')} to "
      f"{F.v('fuzz', 'p99_ms_attack', ' ms')}.")
    keys = F.get("long_poll_unknown_job", "keys_written")
    if keys:
        w(f"- Exception found by the suite: `GET /v1/jobs/{{id}}?wait=S` for a job that does not exist answers `404` "
          f"but first writes a `…:waiting:<id>` key (TTL S + 5 s) — {len(keys)} keys for {len(keys)} such requests.")
    stalls, answered = F.get("stalled_requests", "cases"), F.get("stalled_requests", "answered_408")
    if stalls is not None and answered != stalls:
        w(f"- Exception found by the suite: a request that stops arriving half-way (partial head or body, then "
          f"silence) is closed without an answer when the read timeout passes — {answered} of {stalls} such "
          "requests got the documented `408`. Only a client that keeps sending (slow-loris) gets the `408`.")
    w("")

    w("## Test outcomes")
    w("")
    rows = [(f"`{k}`", t["outcome"], f"{t['duration_s']} s", (t.get("at") or "")[:10]) for k, t in sorted(tests.items())]
    w(table(rows, header=("test", "outcome", "time", "date")) if rows else "No test outcome recorded.")
    w("")
    if failed:
        w("### Open failures")
        w("")
        w("Each is a place where Spool does not yet do what this page or the README promises; the test stays "
          "until it passes.")
        w("")
        for k, t in failed:
            w(f"- `{k}`: {t.get('message') or 'failed'}")
        w("")
    other = {s: r for s, r in all_runs.items() if r is not run}
    for s, r in other.items():
        ts = r.get("tests", {})
        ok = sum(1 for t in ts.values() if t["outcome"] == "passed")
        bad = sum(1 for t in ts.values() if t["outcome"] == "failed")
        w(f"The {s}-scale run ({(r.get('started_at') or '')[:16].replace('T', ' ')} UTC) had {ok} passed and {bad} "
          "failed tests.")
        w("")

    w("## All measured values")
    w("")
    w("<details><summary>Every figure of the run, by section</summary>")
    w("")
    for section in sorted(run.get("figures", {})):
        vals = run["figures"][section]
        w(f"**{section}** (measured {vals.get('measured_at', '?')})")
        w("")
        w(table([(f"`{k}`", json.dumps(v, ensure_ascii=False)[:300]) for k, v in sorted(vals.items())
                 if k not in ("measured_at",)], header=("name", "value")))
        w("")
    w("</details>")
    w("")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--figures", default=str(ROOT / ".spool" / "chaos-figures.json"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "reliability.md"))
    ap.add_argument("--scale", choices=["full", "short"], default=None)
    args = ap.parse_args()
    try:
        data = json.loads(Path(args.figures).read_text())
    except (OSError, ValueError) as e:
        sys.exit(f"write-reliability-doc: cannot read {args.figures}: {e} (run `make chaos` first)")
    runs = data.get("runs", {})
    scale = args.scale or ("full" if "full" in runs else "short")
    if scale not in runs:
        sys.exit(f"write-reliability-doc: no {scale}-scale run in {args.figures}")
    text = render(runs[scale], runs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out} from the {scale}-scale run of {runs[scale].get('started_at')}")


if __name__ == "__main__":
    main()
