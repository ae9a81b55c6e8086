"""External handler commands (--handler TYPE=COMMAND / SPOOL_HANDLERS): the
payload on stdin, the job in env vars, stdout as the result, stderr in the
error, timeouts enforced with SIGTERM then SIGKILL, and nothing left running."""

import pytest

from harness import wait_for
from helpers import ms_between, pgrep, script

# Short grace so that a worker stopped at teardown does not wait 25 s for a hung handler.
WORKER_ENV = {"SPOOL_SHUTDOWN_GRACE_MS": "1000", "SPOOL_KILL_GRACE_MS": "300"}





def test_stdout_json_is_the_result_and_stdin_is_the_payload(spawn, tmp_path):
    s = script(tmp_path, "double.py", """
        import json, sys
        payload = json.load(sys.stdin)
        json.dump({"doubled": [x * 2 for x in payload["numbers"]], "echo": payload}, sys.stdout)
        print()
    """)
    api = spawn.api()
    spawn.worker(env=WORKER_ENV, args=["--handler", f"double=python3 {s}"])
    payload = {"numbers": [1, 2, 3], "name": "zoë ✓", "big": 12345678901234567890}
    job = api.enqueue("default", {"type": "double", "payload": payload})
    done = api.wait_state(job["id"], "succeeded")
    assert done["result"] == {"doubled": [2, 4, 6], "echo": payload}
    assert api.get(f"/v1/jobs/{job['id']}/result")[2] == done["result"]


def test_plain_text_stdout_becomes_a_json_string(spawn, tmp_path):
    s = script(tmp_path, "plain.sh", """
        cat > /dev/null
        echo "hello, world: not {json"
    """)
    api = spawn.api()
    # Given through SPOOL_HANDLERS this time.
    spawn.worker(env={**WORKER_ENV, "SPOOL_HANDLERS": f"plain=sh {s}"})
    job = api.enqueue("default", {"type": "plain", "payload": {"x": 1}})
    done = api.wait_state(job["id"], "succeeded")
    assert isinstance(done["result"], str)
    assert done["result"].rstrip("\n") == "hello, world: not {json"


def test_empty_stdout_is_a_null_result(spawn, tmp_path):
    s = script(tmp_path, "quiet.sh", "exit 0\n")
    api = spawn.api()
    spawn.worker(env=WORKER_ENV, args=["--handler", f"quiet=sh {s}"])
    job = api.enqueue("default", {"type": "quiet", "payload": "ignored"})
    done = api.wait_state(job["id"], "succeeded")
    assert done["result"] is None


def test_handler_gets_job_env_vars(spawn, tmp_path):
    s = script(tmp_path, "env.py", """
        import json, os, sys
        stdin = sys.stdin.read()
        env = {k: os.environ.get(k) for k in ("SPOOL_JOB_ID", "SPOOL_QUEUE", "SPOOL_JOB_TYPE", "SPOOL_ATTEMPT")}
        if env["SPOOL_ATTEMPT"] == "1":
            sys.stderr.write("first attempt fails on purpose\\n")
            sys.exit(1)
        json.dump({"env": env, "stdin": json.loads(stdin)}, sys.stdout)
    """)
    api = spawn.api()
    spawn.worker(queues="envq", env=WORKER_ENV, args=["--handler", f"report.env=python3 {s}"])
    job = api.enqueue("envq", {"type": "report.env", "payload": {"k": "v"}, "backoff_ms": 10})
    done = api.wait_state(job["id"], "succeeded")
    assert done["attempts"] == 2
    assert done["result"] == {
        "env": {"SPOOL_JOB_ID": job["id"], "SPOOL_QUEUE": "envq", "SPOOL_JOB_TYPE": "report.env", "SPOOL_ATTEMPT": "2"},
        "stdin": {"k": "v"},
    }
    assert "first attempt fails on purpose" in done["error"]["message"]
    assert done["error"]["attempt"] == 1


def test_nonzero_exit_fails_with_the_tail_of_stderr(spawn, tmp_path):
    s = script(tmp_path, "broken.sh", """
        cat > /dev/null
        echo "FIRST-LINE-OF-STDERR" >&2
        i=0
        while [ $i -lt 400 ]; do echo "noise line $i ........................................" >&2; i=$((i+1)); done
        echo "fatal: disk on fire" >&2
        echo "partial output"
        exit 3
    """)
    api = spawn.api()
    w = spawn.worker(env=WORKER_ENV, args=["--handler", f"broken=sh {s}"])
    job = api.enqueue("default", {"type": "broken", "max_attempts": 1})
    dead = api.wait_state(job["id"], "dead")
    msg = dead["error"]["message"]
    assert "fatal: disk on fire" in msg, msg
    assert "3" in msg, msg  # the exit code
    assert "FIRST-LINE-OF-STDERR" not in msg, "the whole stderr (not its tail) went into the error"
    assert len(msg) < 20000
    assert dead["attempts"] == 1 and "result" not in dead
    assert w.alive()


def test_handler_killed_by_a_signal_fails(spawn, tmp_path):
    s = script(tmp_path, "suicide.sh", """
        echo "about to die" >&2
        kill -9 $$
    """)
    api = spawn.api()
    spawn.worker(env=WORKER_ENV, args=["--handler", f"suicide=sh {s}"])
    job = api.enqueue("default", {"type": "suicide", "max_attempts": 1})
    dead = api.wait_state(job["id"], "dead")
    assert dead["error"]["message"], dead


def test_hung_handler_gets_sigterm_then_sigkill(spawn, tmp_path, marker):
    # Ignores SIGTERM (logs it), keeps sleeping; a child of it ignores SIGTERM too.
    s = script(tmp_path, "hang.sh", f"""
        trap 'echo "hang: got TERM, ignoring it" >&2' TERM
        python3 -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)' {marker} &
        echo "hang: started" >&2
        while true; do sleep 0.1; done
    """)
    api = spawn.api()
    w = spawn.worker(env={**WORKER_ENV, "SPOOL_KILL_GRACE_MS": "300"}, args=["--handler", f"hang=sh {s}"])
    job = api.enqueue("default", {"type": "hang", "timeout_ms": 500, "max_attempts": 1})
    api.wait_state(job["id"], "running")
    wait_for(lambda: pgrep(marker), timeout=5, what="the handler's child to start")

    dead = api.wait_state(job["id"], "dead", timeout=10)
    msg = dead["error"]["message"]
    assert "timed out" in msg, msg
    took = ms_between(dead["started_at"], dead["finished_at"])
    # 500 ms timeout + 300 ms kill grace, with slack; far from the child's 60 s.
    assert 500 <= took < 4000, f"hung handler took {took} ms to be stopped"
    assert "got TERM" in msg, f"SIGTERM was not sent before SIGKILL (stderr tail: {msg!r})"

    wait_for(lambda: not pgrep(marker), timeout=3, what="no process of the hung handler left")
    assert w.alive()
    ok = api.enqueue("default", {"type": "echo", "payload": {"after": "hang"}})
    assert api.wait_state(ok["id"], "succeeded")["result"] == {"after": "hang"}


@pytest.mark.parametrize("redirect", ["", " > /dev/null 2>&1 < /dev/null"], ids=["inherits-pipes", "detached-fds"])
def test_child_that_ignores_sigterm_is_not_left_behind(spawn, tmp_path, marker, redirect):
    s = script(tmp_path, "forker.sh", f"""
        python3 -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)' {marker}{redirect} &
        sleep 0.2
        echo '"parent done"'
        exit 0
    """)
    api = spawn.api()
    w = spawn.worker(env=WORKER_ENV, args=["--handler", f"forker=sh {s}"])
    job = api.enqueue("default", {"type": "forker", "timeout_ms": 10000, "max_attempts": 1})
    done = api.wait_state(job["id"], "succeeded", timeout=10)
    assert done["result"] == "parent done"
    took = ms_between(done["started_at"], done["finished_at"])
    assert took < 5000, f"job waited {took} ms for an orphan"
    wait_for(lambda: not pgrep(marker), timeout=3, what="the orphaned child to be gone")
    assert w.alive()


def test_hung_handler_does_not_block_other_jobs(spawn, tmp_path, marker):
    s = script(tmp_path, "slow.sh", f"""
        exec python3 -c 'import time; time.sleep(60)' {marker}
    """)
    api = spawn.api()
    spawn.worker(concurrency=2, env=WORKER_ENV, args=["--handler", f"slow=sh {s}"])
    slow = api.enqueue("default", {"type": "slow", "timeout_ms": 3000, "max_attempts": 1})
    api.wait_state(slow["id"], "running")
    quick = [api.enqueue("default", {"type": "echo", "payload": i}) for i in range(5)]
    for i, j in enumerate(quick):
        assert api.wait_state(j["id"], "succeeded", timeout=5)["result"] == i
    assert api.job(slow["id"])["state"] == "running"
    dead = api.wait_state(slow["id"], "dead", timeout=10)
    assert "timed out" in dead["error"]["message"]
    wait_for(lambda: not pgrep(marker), timeout=3, what="no slow handler left")


def test_handler_that_ignores_a_large_stdin(spawn, tmp_path):
    s = script(tmp_path, "ignore.sh", """
        echo '{"ignored": "stdin"}'
    """)
    api = spawn.api()
    w = spawn.worker(env=WORKER_ENV, args=["--handler", f"ignore=sh {s}"])
    job = api.enqueue("default", {"type": "ignore", "payload": "x" * 500_000, "max_attempts": 1})
    done = api.wait_state(job["id"], "succeeded")
    assert done["result"] == {"ignored": "stdin"}
    assert w.alive()
    ok = api.enqueue("default", {"type": "echo", "payload": 1})
    assert api.wait_state(ok["id"], "succeeded")["result"] == 1
