"""Redis under an eviction policy (issue 11, item 8): a full Redis deletes keys
silently. Spool cannot bring evicted jobs back, but it must not hide it: both
binaries warn at start, every id found without its job hash is dropped (none
stays in a list or set for ever), counted, exported and logged."""

QUEUE = "evict"


def test_evicted_jobs_are_warned_about_counted_and_never_left_behind(spawn, redis, kit, figures):
    redis.cli("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    api = spawn.api()
    rc = kit.RespClient(redis.port)
    payload = "x" * 2000
    accepted = []
    # Eviction picks among keys of about the same age, so it may take the
    # pending list itself; then no id outlives its hash and there is nothing
    # for a fetch to find. Fill until some listed id has lost its hash.
    for _ in range(5):
        redis.cli("CONFIG", "SET", "maxmemory", "3mb")
        for _ in range(40):
            status, _, data = api.post(f"/v1/queues/{QUEUE}/jobs/batch", {"jobs": [{"type": "noop", "payload": payload}] * 50})
            if status == 201:
                accepted += [j["id"] for j in data["jobs"]]
        redis.cli("CONFIG", "SET", "maxmemory", "0")  # any command may evict: stop before looking
        listed = set()
        for p in ("urgent", "high", "normal", "low"):
            listed.update(rc.call("LRANGE", f"spool:{{{QUEUE}}}:pending:{p}", 0, -1) or [])
        listed_without_hash = {i for i, s in rc.states(QUEUE, sorted(listed)).items() if s is None}
        if listed_without_hash:
            break
    gone = [i for i, s in rc.states(QUEUE, accepted).items() if s is None]
    assert gone, "nothing was evicted: the test did not fill Redis"
    assert listed_without_hash, "no listed id lost its hash in 5 fills: the test could not set up its case"
    w = spawn.worker(queues=QUEUE, concurrency=4, env={"SPOOL_HEARTBEAT_MS": "300"})
    for proc in (api, w):
        assert kit.log_lines_with([proc], "maxmemory-policy", contains=True), "no eviction warning at start"

    def drained():
        pending = sum(int(rc.call("LLEN", f"spool:{{{QUEUE}}}:pending:{p}")) for p in ("urgent", "high", "normal", "low"))
        return pending == 0 and int(rc.call("ZCARD", f"spool:{{{QUEUE}}}:lease")) == 0

    kit.wait_for(drained, timeout=60, what="the queue to drain")
    missing = int(rc.call("HGET", f"spool:{{{QUEUE}}}:stats", "missing") or 0)
    assert missing == len(listed_without_hash), "every listed id without a job hash is counted once"
    warning = kit.wait_for(lambda: kit.log_lines_with([w], "without their job hash", contains=True), timeout=5,
                           what="the worker's warning about missing jobs")
    assert warning[-1]["total"] == missing
    # The queue registry may have been evicted too; an enqueue registers the
    # queue again (a fresh API process, whose registration cache is empty).
    api2 = spawn.api()
    api2.enqueue(QUEUE, {"type": "noop"})
    _, _, text = api2.get("/metrics")
    line = next(l for l in text.splitlines() if l.startswith(f'spool_queue_missing_jobs_total{{queue="{QUEUE}"}}'))
    assert float(line.split()[-1]) == missing
    status, _, body = api2.get(f"/v1/queues/{QUEUE}")
    assert status == 200 and body["missing_total"] == missing
    # What survived ran; no job is left running or pending for a hash that is gone.
    states = rc.states(QUEUE, accepted)
    assert all(s in (None, "succeeded", "queued") for s in states.values()), set(states.values())
    figures.record("eviction", accepted=len(accepted), evicted_hashes=len(gone), ids_counted_missing=missing,
                   stuck_queued=sum(1 for s in states.values() if s == "queued"))
