"""Flow control: limits shared by every worker (PUT /v1/limits/{name}), enforced in Redis
when a worker claims a job that names one; jobs a limit refuses wait parked in their queue
while other jobs run; handlers settle their real usage and report a provider's back-off on
fd 3. Real Redis, real API and worker processes, real handler commands."""
import json
import sys
import threading
import time

from harness import wait_for
from helpers import assert_error, enqueue_many, ms_between, script

FAST_LEASE = {"SPOOL_HEARTBEAT_MS": "300", "SPOOL_LEASE_MS": "3000",
              "SPOOL_SHUTDOWN_GRACE_MS": "1000", "SPOOL_KILL_GRACE_MS": "300"}

# Records when it really ran (wall clock, one line per run, appended
# atomically), sleeps `ms`, reports `usage` when given, prints a result.
RECORDING_HANDLER = """
    import json, os, sys, time
    job = json.load(sys.stdin)
    start = time.time()
    time.sleep(job.get("ms", 0) / 1000)
    if "usage" in job:
        os.write(3, (json.dumps({"usage": job["usage"]}) + "\\n").encode())
    line = json.dumps({"id": job.get("n"), "start": start, "end": time.time()}) + "\\n"
    fd = os.open(os.environ["RUN_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, line.encode())
    os.close(fd)
    print(json.dumps({"n": job.get("n")}))
"""


def put_limit(api, name, body, status=(200, 201)):
    s, _, data = api.request("PUT", f"/v1/limits/{name}", body)
    assert s in (status if isinstance(status, tuple) else (status,)), (s, data)
    return data


def limit(api, name):
    s, _, data = api.get(f"/v1/limits/{name}")
    assert s == 200, (s, data)
    return data


def runs(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def most_at_once(intervals):
    """The largest number of intervals (start, end) open at one instant."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    open_now = peak = 0
    for _, d in edges:
        open_now += d
        peak = max(peak, open_now)
    return peak


def recording_workers(spawn, tmp_path, count, concurrency, env=None, queues="default"):
    handler = script(tmp_path, "record.py", RECORDING_HANDLER)
    log = tmp_path / "runs.log"
    env = dict(env or {}, RUN_LOG=str(log))
    workers = [spawn.worker(queues=queues, concurrency=concurrency, env=env,
                            args=["--handler", f"llm={sys.executable} {handler}"]) for _ in range(count)]
    return workers, log


def test_limit_routes_define_read_list_delete(spawn):
    api = spawn.api()
    s, _, data = api.request("PUT", "/v1/limits/openai",
                             {"concurrency": 3, "rate": {"count": 10, "period_ms": 1000}, "units_per_minute": 90000})
    assert s == 201, data
    assert data["key"] == "openai" and data["concurrency"] == 3
    assert data["rate"] == {"count": 10, "period_ms": 1000} and data["units_per_minute"] == 90000
    assert data["running"] == 0 and data["units_available"] == 90000 and data["paused_for_ms"] == 0
    # Replacing: a field left out is no bound any more.
    s, _, data = api.request("PUT", "/v1/limits/openai", {"concurrency": 5})
    assert s == 200 and data["concurrency"] == 5 and data["rate"] is None and data["units_per_minute"] is None, data
    put_limit(api, "anthropic", {})
    assert limit(api, "anthropic")["concurrency"] is None
    s, _, data = api.get("/v1/limits")
    assert s == 200 and [l["key"] for l in data["limits"]] == ["anthropic", "openai"] and data["next_cursor"] is None
    s, _, data = api.get("/v1/limits?limit=1")
    assert [l["key"] for l in data["limits"]] == ["anthropic"] and data["next_cursor"] == "anthropic"
    s, _, data = api.get("/v1/limits?limit=1&cursor=anthropic")
    assert [l["key"] for l in data["limits"]] == ["openai"] and data["next_cursor"] is None
    s, _, data = api.request("DELETE", "/v1/limits/openai")
    assert s == 200 and data == {"key": "openai", "deleted": True}, data
    assert_error(api.request("DELETE", "/v1/limits/openai"), 404, "not_found", ["openai"])
    assert_error(api.get("/v1/limits/openai"), 404, "not_found", ["openai"])
    s, _, data = api.get("/v1/limits")
    assert [l["key"] for l in data["limits"]] == ["anthropic"]


def test_bad_limits_and_limit_fields_are_refused_and_change_nothing(spawn, redis):
    api = spawn.api()
    bad = [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": "3"}, "concurrency"),
        ({"concurrency": 2.5}, "concurrency"),
        ({"rate": {"count": 10}}, "rate.period_ms"),
        ({"rate": {"period_ms": 1000}}, "rate.count"),
        ({"rate": {"count": 10, "period_ms": 0}}, "rate.period_ms"),
        ({"rate": {"count": 10, "period_ms": 1000, "burst": 3}}, "rate.burst"),
        ({"rate": 10}, "rate"),
        ({"units_per_minute": -1}, "units_per_minute"),
        ({"concurency": 3}, "concurency"),
        ([], "body"),
    ]
    for body, field in bad:
        assert_error(api.request("PUT", "/v1/limits/x", body), 400, "invalid_field", [field])
    assert_error(api.request("PUT", "/v1/limits/x", b"{nope"), 400, "invalid_json")
    assert_error(api.request("PUT", "/v1/limits/a%7Bb%7D", {}), 400, "invalid_field", ["limit"])
    assert_error(api.request("PUT", "/v1/limits/" + "a" * 81, {}), 400, "invalid_field", ["limit"])
    assert_error(api.get("/v1/limits?limit=0"), 400, "invalid_field", ["limit"])
    assert_error(api.request("POST", "/v1/limits/x", {}), 405, "method_not_allowed")
    assert_error(api.post("/v1/queues/default/jobs", {"type": "noop", "limit": "a b"}), 400, "invalid_field", ["limit"])
    assert_error(api.post("/v1/queues/default/jobs", {"type": "noop", "limit": 3}), 400, "invalid_field", ["limit"])
    assert_error(api.post("/v1/queues/default/jobs", {"type": "noop", "limit": "x", "cost": -1}), 400,
                 "invalid_field", ["cost"])
    assert_error(api.post("/v1/queues/default/jobs", {"type": "noop", "limit": "x", "cost": 1.5}), 400,
                 "invalid_field", ["cost"])
    assert redis.keys("spool:limit*") == [] and redis.keys("spool:{default}*") == []
    s, _, data = api.get("/v1/limits")
    assert data["limits"] == []


def test_concurrency_limit_holds_across_four_workers_and_unlimited_jobs_pass(spawn, tmp_path):
    api = spawn.api()
    put_limit(api, "openai", {"concurrency": 3})
    _, log = recording_workers(spawn, tmp_path, count=4, concurrency=16)
    ids = enqueue_many(api, "default", [{"type": "llm", "limit": "openai", "payload": {"n": i, "ms": 150}}
                                        for i in range(36)])
    # Sampled every 10 ms while they run: never more than 3 hold a slot.
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(limit(api, "openai")["running"])
            time.sleep(0.01)
    t = threading.Thread(target=sample)
    t.start()
    # An unlimited job behind 36 limited ones in the same queue starts at once.
    time.sleep(0.3)
    free = api.enqueue("default", {"type": "llm", "payload": {"n": "free", "ms": 0}})
    done = api.wait_state(free["id"], "succeeded", timeout=10)
    try:
        for i in ids:
            api.wait_state(i, "succeeded", timeout=60)
    finally:
        stop.set()
        t.join()
    assert max(samples) <= 3 and max(samples) >= 2, samples
    recorded = runs(log)
    limited = [(r["start"], r["end"]) for r in recorded if r["id"] != "free"]
    assert len(limited) == 36
    assert most_at_once(limited) <= 3, "a handler ran while 3 others of the limit did"
    free_run = next(r for r in recorded if r["id"] == "free")
    last_limited_end = max(e for _, e in limited)
    assert free_run["end"] < last_limited_end - 0.5, "the unlimited job waited behind the limited ones"
    assert done["attempts"] == 1
    # A parked job's attempt was not counted.
    assert all(api.job(i)["attempts"] == 1 for i in ids)
    assert limit(api, "openai")["running"] == 0


def test_rate_limit_over_ten_seconds(spawn):
    api = spawn.api()
    put_limit(api, "search", {"rate": {"count": 20, "period_ms": 1000}})
    for _ in range(2):
        spawn.worker(concurrency=8)
    t_enqueued = time.time()
    ids = enqueue_many(api, "default", [{"type": "noop", "limit": "search"} for _ in range(400)])
    # What the limit reports, every 50 ms for 10 s: never more than 20 starts
    # in the last second.
    in_window = []
    t_end = time.time() + 10
    while time.time() < t_end:
        in_window.append(limit(api, "search")["started_in_window"])
        time.sleep(0.05)
    assert max(in_window) <= 20 and max(in_window) >= 15, in_window
    starts = [j["started_at"] for j in (api.job(i) for i in ids) if j["state"] == "succeeded"]
    t0 = min(starts)
    offsets = sorted(ms_between(t0, s) for s in starts)
    # As the jobs record it: a job's started_at is set when it is claimed,
    # a moment before its limit is asked (on a loaded machine, up to a few
    # tens of ms), hence a little slack over the 20 a second; unlimited, the
    # 400 noop jobs would all start within the first second.
    worst = max(sum(1 for o in offsets[i:] if o < offsets[i] + 1000) for i in range(len(offsets)))
    assert worst <= 25, worst
    # And the limit is used, not starved: about 20 a second.
    assert 160 <= len(offsets) <= 20 * (time.time() - t_enqueued) + 20, len(offsets)


def test_units_budget_charges_declared_cost_and_settles_reported_usage(spawn, tmp_path):
    api = spawn.api()
    put_limit(api, "tokens", {"units_per_minute": 60000})
    recording_workers(spawn, tmp_path, count=1, concurrency=8)
    t0 = time.time()
    # Three take the whole budget (3 × 20,000); the fourth waits for it. Each
    # really used 5,000: its release gives 15,000 back, so the fourth starts
    # after two releases, not after the 20 s a refill would take.
    ids = enqueue_many(api, "default", [{"type": "llm", "limit": "tokens", "cost": 20000,
                                         "payload": {"n": i, "ms": 600, "usage": 5000}} for i in range(4)])
    for i in ids:
        api.wait_state(i, "succeeded", timeout=15)
    elapsed = time.time() - t0
    assert elapsed < 8, elapsed
    recorded = sorted(runs(tmp_path / "runs.log"), key=lambda r: r["start"])
    first_end = min(r["end"] for r in recorded[:3])
    assert recorded[3]["start"] >= first_end, "the fourth ran before any budget came back"
    # What is left: 60,000 minus the usage of the 4 (20,000), plus the refill
    # (1,000 a second) since the start.
    available = limit(api, "tokens")["units_available"]
    spent_then_refilled = 60000 - 4 * 5000
    assert spent_then_refilled <= available <= min(60000, spent_then_refilled + 1000 * (time.time() - t0 + 1)), available


def test_provider_back_off_pauses_the_limit_on_every_worker_without_using_an_attempt(spawn, tmp_path):
    api = spawn.api()
    put_limit(api, "provider", {})
    marker = tmp_path / "refused-once"
    handler = script(tmp_path, "provider.py", f"""
        import json, os, sys
        job = json.load(sys.stdin)
        if job.get("refuse") and not os.path.exists({str(marker)!r}):
            open({str(marker)!r}, "w").close()
            os.write(3, b'{{"retry_after_ms": 2000}}\\n')
            print("429 Too Many Requests", file=sys.stderr)
            sys.exit(1)
        print(json.dumps({{"ok": True}}))
    """)
    args = ["--handler", f"llm={sys.executable} {handler}"]
    spawn.worker(queues="a", concurrency=2, args=args)
    spawn.worker(queues="b", concurrency=2, args=args)
    refused = api.enqueue("a", {"type": "llm", "limit": "provider", "payload": {"refuse": True}})
    j = api.wait_state(refused["id"], "scheduled", timeout=10)
    t_pause = time.time()
    assert j["attempts"] == 0 and "retry after 2000 ms" in j["error"]["message"], j
    paused = limit(api, "provider")["paused_for_ms"]
    assert 1000 < paused <= 2000, paused
    # Another worker, another queue: the same limit is paused there too.
    other = api.enqueue("b", {"type": "llm", "limit": "provider", "payload": {}})
    time.sleep(0.8)
    assert api.job(other["id"])["state"] == "queued"
    done = api.wait_state(other["id"], "succeeded", timeout=10)
    assert time.time() - t_pause >= 1.0
    assert done["attempts"] == 1
    j = api.wait_state(refused["id"], "succeeded", timeout=10)
    assert j["attempts"] == 1, "the refused run did not use an attempt"


def test_limit_by_job_type_and_a_crashed_workers_slot_comes_back(spawn):
    api = spawn.api()
    put_limit(api, "solver", {"concurrency": 1})
    env = dict(FAST_LEASE, SPOOL_LIMITS_BY_TYPE="sleep=solver")
    w1 = spawn.worker(concurrency=4, env=env)
    first = api.enqueue("default", {"type": "sleep", "payload": {"ms": 60000}})
    api.wait_state(first["id"], "running")
    # Claimed is not yet admitted: the job holds the slot once the limit counts it.
    wait_for(lambda: limit(api, "solver")["running"] == 1, what="the first job holds the slot")
    second = api.enqueue("default", {"type": "sleep", "payload": {"ms": 10}})
    time.sleep(0.5)
    assert api.job(second["id"])["state"] == "queued", "the type's limit did not apply"
    assert limit(api, "solver")["running"] == 1
    w1.signal(9)
    t_kill = time.time()
    spawn.worker(concurrency=4, env=env)
    # The dead worker's slot lapses with its lease (3 s): the waiting job runs.
    api.wait_state(second["id"], "succeeded", timeout=15)
    assert time.time() - t_kill < 3.0 + 3.0


def test_deleting_a_limit_lets_its_parked_jobs_run_at_once(spawn):
    api = spawn.api()
    put_limit(api, "slow", {"rate": {"count": 1, "period_ms": 60000}})
    spawn.worker(concurrency=4)
    ids = enqueue_many(api, "default", [{"type": "noop", "limit": "slow"} for _ in range(5)])
    wait_for(lambda: sum(api.job(i)["state"] == "succeeded" for i in ids) == 1, what="the first job")
    time.sleep(0.5)
    assert sum(api.job(i)["state"] == "succeeded" for i in ids) == 1
    assert limit(api, "slow")["waiting_queues"] == ["default"]
    t0 = time.time()
    s, _, _ = api.request("DELETE", "/v1/limits/slow")
    assert s == 200
    for i in ids:
        api.wait_state(i, "succeeded", timeout=5)
    assert time.time() - t0 < 2


def test_parked_jobs_show_in_their_queue_can_be_cancelled_and_run_when_the_limit_grows(spawn):
    api = spawn.api()
    put_limit(api, "one", {"concurrency": 1})
    spawn.worker(concurrency=4, env=FAST_LEASE)
    busy = api.enqueue("default", {"type": "sleep", "limit": "one", "payload": {"ms": 60000}})
    api.wait_state(busy["id"], "running")
    wait_for(lambda: limit(api, "one")["running"] == 1, what="the busy job holds the slot")
    parked = [api.enqueue("default", {"type": "noop", "limit": "one"})["id"] for _ in range(3)]

    def queue():
        return api.get("/v1/queues/default")[2]
    wait_for(lambda: queue()["waiting_for_limits"] == 3, what="three jobs parked")
    q = queue()
    assert q["pending_total"] == 0 and q["running"] == 1, q
    assert all(api.job(i)["state"] == "queued" and api.job(i)["attempts"] == 0 for i in parked)
    s, _, data = api.post(f"/v1/jobs/{parked[0]}/cancel")
    assert s == 200, data
    assert queue()["waiting_for_limits"] == 2
    # A larger limit lets the parked jobs run at once; the cancelled one stays cancelled.
    t0 = time.time()
    put_limit(api, "one", {"concurrency": 5})
    for i in parked[1:]:
        api.wait_state(i, "succeeded", timeout=5)
    assert time.time() - t0 < 2
    assert api.job(parked[0])["state"] == "cancelled"
    assert queue()["waiting_for_limits"] == 0
    assert api.post(f"/v1/jobs/{busy['id']}/cancel")[0] == 200
