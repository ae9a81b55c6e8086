"""Cancelling jobs (queued, scheduled, running, finished, racing completion) and
progress reports (fd 3 of a handler command, the built-in sleep handler)."""
import random
import threading
import time


from harness import wait_for
from helpers import TIMESTAMP_RE, assert_error, log_lines_with, ms_between, pgrep, redis_snapshot, script, wait_log

FAST_LEASE = {"SPOOL_HEARTBEAT_MS": "300", "SPOOL_LEASE_MS": "3000",
              "SPOOL_SHUTDOWN_GRACE_MS": "1000", "SPOOL_KILL_GRACE_MS": "300"}





def cancel(api, job_id):
    return api.post(f"/v1/jobs/{job_id}/cancel")


def pending_ids(redis, queue="default"):
    out = []
    for prio in ("urgent", "high", "normal", "low"):
        out += redis.cli("LRANGE", f"spool:{{{queue}}}:pending:{prio}", 0, -1).splitlines()
    return out


def zset(redis, name, queue="default"):
    return redis.cli("ZRANGE", f"spool:{{{queue}}}:{name}", 0, -1).splitlines()


def jobs_snapshot(redis):
    """Everything in Redis but the worker registry (which heartbeats change)."""
    return [e for e in redis_snapshot(redis) if not e[0].startswith(("spool:worker", "spool:workers"))]


# -- cancel -------------------------------------------------------------------------

def test_cancel_queued_job_never_runs(spawn, redis):
    api = spawn.api()
    job = api.enqueue("default", {"type": "echo", "payload": "never"})
    status, _, data = cancel(api, job["id"])
    assert status == 200, data
    assert data["id"] == job["id"] and data["state"] == "cancelled", data
    assert TIMESTAMP_RE.match(data["finished_at"] or ""), data
    assert job["id"] not in pending_ids(redis)
    assert api.get("/v1/queues/default")[2]["pending_total"] == 0

    w = spawn.worker()
    marker_job = api.enqueue("default", {"type": "noop"})
    api.wait_state(marker_job["id"], "succeeded")
    after = api.job(job["id"])
    assert after["state"] == "cancelled", after
    assert after["started_at"] is None and after["attempts"] == 0, after
    assert "result" not in after or after["result"] is None, after
    assert not log_lines_with(w, "job started", job["id"])


def test_cancel_scheduled_job_never_runs(spawn, redis):
    api = spawn.api()
    w = spawn.worker()
    job = api.enqueue("default", {"type": "echo", "payload": "never", "delay_ms": 500})
    assert job["state"] == "scheduled"
    status, _, data = cancel(api, job["id"])
    assert status == 200 and data["state"] == "cancelled", data
    assert job["id"] not in zset(redis, "scheduled")
    time.sleep(1.0)
    marker_job = api.enqueue("default", {"type": "noop"})
    api.wait_state(marker_job["id"], "succeeded")
    after = api.job(job["id"])
    assert after["state"] == "cancelled" and after["started_at"] is None and after["attempts"] == 0, after
    assert not log_lines_with(w, "job started", job["id"])


def test_cancel_running_builtin_job_stops_it_and_frees_the_worker(spawn, redis):
    api = spawn.api()
    w = spawn.worker(concurrency=1, env=FAST_LEASE)
    job = api.enqueue("default", {"type": "sleep", "payload": {"ms": 30000}})
    api.wait_state(job["id"], "running")
    status, _, data = cancel(api, job["id"])
    cancelled_at = time.monotonic()
    assert status == 200 and data["state"] == "cancelled", data
    assert api.job(job["id"])["state"] == "cancelled"
    assert job["id"] not in zset(redis, "lease")

    wait_log(w, "job stopped after cancel", job["id"], timeout=5)
    assert time.monotonic() - cancelled_at < 2.0, "the worker took over 2 s to stop a cancelled job"
    quick = api.enqueue("default", {"type": "noop"})
    done = api.wait_state(quick["id"], "succeeded", timeout=3)
    assert ms_between(done["created_at"], done["started_at"]) < 1000, done
    after = api.job(job["id"])
    assert after["state"] == "cancelled", after
    assert redis.cli("HGET", f"spool:{{default}}:job:{job['id']}", "result") == ""
    assert not log_lines_with(w, "job succeeded", job["id"])


def test_cancel_running_handler_command_kills_its_process(spawn, tmp_path, marker):
    s = script(tmp_path, "slow.sh", f"""
        exec python3 -c 'import time; time.sleep(60)' {marker}
    """)
    api = spawn.api()
    w = spawn.worker(concurrency=1, env=FAST_LEASE, args=["--handler", f"slow=sh {s}"])
    job = api.enqueue("default", {"type": "slow", "max_attempts": 1})
    api.wait_state(job["id"], "running")
    wait_for(lambda: pgrep(marker), timeout=5, what="the handler process to start")
    status, _, data = cancel(api, job["id"])
    assert status == 200 and data["state"] == "cancelled", data
    wait_for(lambda: not pgrep(marker), timeout=4, what="the cancelled handler's process to be killed")
    wait_log(w, "job stopped after cancel", job["id"], timeout=3)
    assert api.job(job["id"])["state"] == "cancelled"
    ok = api.enqueue("default", {"type": "echo", "payload": "next"})
    assert api.wait_state(ok["id"], "succeeded", timeout=3)["result"] == "next"


def test_cancel_finished_job_is_409_and_changes_nothing(spawn, redis):
    api = spawn.api()
    spawn.worker()
    jobs = {"succeeded": api.enqueue("default", {"type": "echo", "payload": 7}),
            "dead": api.enqueue("default", {"type": "fail", "max_attempts": 1}),
            "cancelled": api.enqueue("default", {"type": "sleep", "payload": {"ms": 5000}, "delay_ms": 60000})}
    assert cancel(api, jobs["cancelled"]["id"])[0] == 200
    finished = {how: api.wait_state(job["id"], how) for how, job in jobs.items()}
    time.sleep(0.1)
    before = jobs_snapshot(redis)
    for how, job in jobs.items():
        err = assert_error(cancel(api, job["id"]), 409, "conflict")
        assert how in err["message"], err
        assert api.job(job["id"]) == finished[how]
    assert jobs_snapshot(redis) == before, "a refused cancel changed Redis"


def test_cancel_unknown_job_is_404(spawn):
    api = spawn.api()
    assert_error(cancel(api, "default~01M81Z6DCKPEWCQ0EMEH1QYQ42"), 404, "not_found")
    assert_error(cancel(api, "not-a-job-id"), 404, "not_found")


def test_cancel_racing_completion_ends_one_way_only(spawn, redis):
    api = spawn.api()
    w = spawn.worker(concurrency=4, env=FAST_LEASE)
    outcomes = {}
    errors = []
    lock = threading.Lock()

    def client(seed):
        rnd = random.Random(seed)
        try:
            for _ in range(15):
                job = api.enqueue("default", {"type": "sleep", "payload": {"ms": 20}})
                time.sleep(rnd.uniform(0, 0.03))
                resp = cancel(api, job["id"])
                with lock:
                    outcomes[job["id"]] = resp
        except Exception as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(outcomes) == 60
    time.sleep(1.0)  # a heartbeat or more: workers have seen every cancel

    states = {}
    for job_id, (status, _, data) in outcomes.items():
        now = api.job(job_id)
        states[job_id] = now["state"]
        if status == 200:
            assert data["state"] == "cancelled", data
            assert now["state"] == "cancelled", f"cancel answered 200 but the job ended {now['state']}: {now}"
            assert redis.cli("HGET", f"spool:{{default}}:job:{job_id}", "result") == "", \
                f"a cancelled job has a result: {now}"
            assert not log_lines_with(w, "job succeeded", job_id), f"cancelled job {job_id} was also recorded as succeeded"
        else:
            assert status == 409 and data["error"]["code"] == "conflict", (status, data)
            assert now["state"] == "succeeded", f"cancel answered 409 but the job is {now['state']}: {now}"
            assert now["result"] is None
    assert set(states.values()) <= {"succeeded", "cancelled"}, states
    cancelled = [j for j, s in states.items() if s == "cancelled"]
    succeeded = [j for j, s in states.items() if s == "succeeded"]
    stats = api.get("/v1/queues/default")[2]
    assert stats["processed_total"] == len(succeeded), (stats, len(succeeded))
    assert stats["running"] == 0 and stats["pending_total"] == 0, stats
    assert not zset(redis, "lease")
    # The race was really run: some jobs were cancelled while running.
    assert any(api.job(j)["started_at"] for j in cancelled), "no job was cancelled while running"


# -- progress -----------------------------------------------------------------------

def test_handler_progress_on_fd3_is_shown_while_running(spawn, tmp_path):
    s = script(tmp_path, "progress.sh", """
        echo '{"progress": {"current": 5, "total": 10, "message": "chunking"}}' >&3
        sleep 1.5
        echo '"done"'
    """)
    api = spawn.api()
    spawn.worker(env=FAST_LEASE, args=["--handler", f"chunk=sh {s}"])
    job = api.enqueue("default", {"type": "chunk"})
    running = api.wait_state(job["id"], "running")
    seen = time.monotonic()
    now = wait_for(lambda: (lambda j: j if j["progress"] else None)(api.job(job["id"])), timeout=3,
                   what="progress to show")
    assert time.monotonic() - seen < 0.5, "progress took over 500 ms to show"
    assert now["state"] == "running", now
    p = now["progress"]
    assert {k: p[k] for k in ("current", "total", "message")} == {"current": 5, "total": 10, "message": "chunking"}, p
    assert set(p) == {"current", "total", "message", "updated_at"}, p
    assert TIMESTAMP_RE.match(p["updated_at"]), p
    assert 0 <= ms_between(running["started_at"], p["updated_at"]) < 500, (running, p)
    done = api.wait_state(job["id"], "succeeded", timeout=5)
    assert done["result"] == "done"


def test_malformed_progress_lines_are_ignored(spawn, tmp_path):
    s = script(tmp_path, "badprogress.sh", """
        echo 'not json at all' >&3
        echo '{"progress": 5}' >&3
        echo '[1, 2, 3]' >&3
        echo '{"other": {"current": 1}}' >&3
        echo '{"progress": "half"}' >&3
        echo '{"progress": {"current": 1' >&3
        echo '"ok"'
    """)
    api = spawn.api()
    w = spawn.worker(args=["--handler", f"bad=sh {s}"])
    job = api.enqueue("default", {"type": "bad", "max_attempts": 1})
    done = api.wait_state(job["id"], {"succeeded", "dead"}, timeout=5)
    assert done["state"] == "succeeded", done
    assert done["result"] == "ok" and done["attempts"] == 1 and done["error"] is None, done
    assert done["progress"] is None, done
    wait_for(lambda: log_lines_with(w, "job succeeded", job["id"]), timeout=3, what="the success log line")


def test_valid_progress_after_malformed_lines_is_kept(spawn, tmp_path):
    s = script(tmp_path, "mixed.sh", """
        echo 'garbage' >&3
        echo '{"progress": {"current": 3, "total": 3, "message": "all done"}}' >&3
        echo '{"progress": 7}' >&3
        echo '{"answer": 42}'
    """)
    api = spawn.api()
    spawn.worker(args=["--handler", f"mixed=sh {s}"])
    job = api.enqueue("default", {"type": "mixed", "max_attempts": 1})
    done = api.wait_state(job["id"], {"succeeded", "dead"}, timeout=5)
    assert done["state"] == "succeeded" and done["result"] == {"answer": 42}, done
    p = done["progress"]
    assert p and (p["current"], p["total"], p["message"]) == (3, 3, "all done"), done


def test_builtin_sleep_reports_progress_in_ms(spawn):
    api = spawn.api()
    spawn.worker(env=FAST_LEASE)
    job = api.enqueue("default", {"type": "sleep", "payload": {"ms": 1500}})
    api.wait_state(job["id"], "running")
    seen = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        j = api.job(job["id"])
        if j["state"] != "running":
            break
        if j["progress"]:
            seen.append(j["progress"])
        time.sleep(0.05)
    assert seen, "the sleep handler reported no progress while running"
    for p in seen:
        assert p["total"] == 1500 and 0 < p["current"] < 1500, p
        assert TIMESTAMP_RE.match(p["updated_at"]), p
    currents = [p["current"] for p in seen]
    assert currents == sorted(currents) and len(set(currents)) >= 2, currents
    assert api.wait_state(job["id"], "succeeded", timeout=3)
