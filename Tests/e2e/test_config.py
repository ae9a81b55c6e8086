"""Configuration: a bad value stops either binary at start with exit code 2 and
a message on stderr naming the setting; --help works."""
import os
import socket
import subprocess

import pytest

from harness import BIN_DIR

API = str(BIN_DIR / "spool-api")
WORKER = str(BIN_DIR / "spool-worker")


def clean_env(extra):
    env = {k: v for k, v in os.environ.items() if not (k.startswith("SPOOL_") or k == "REDIS_URL")}
    # Never reach a real Redis by accident: nothing listens on port 1.
    env["REDIS_URL"] = "redis://127.0.0.1:1"
    env.update(extra)
    return env


def run(binary, env=None, args=()):
    try:
        return subprocess.run([binary, *args], env=clean_env(env or {}), capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{os.path.basename(binary)} {args} with {env} kept running instead of refusing its "
                             f"configuration; output: {e.stdout!r} {e.stderr!r}")


def assert_refused(proc, setting):
    assert proc.returncode == 2, f"exit code {proc.returncode}, expected 2; stderr: {proc.stderr!r}"
    assert setting in proc.stderr, f"stderr does not name {setting}: {proc.stderr!r}"
    assert "Traceback" not in proc.stderr and "Fatal error" not in proc.stderr, proc.stderr


COMMON = [  # (env, args, setting named) for both binaries
    ({"REDIS_URL": "http://x"}, [], "REDIS_URL"),
    ({"REDIS_URL": "redis://127.0.0.1:notaport"}, [], "REDIS_URL"),
    ({"REDIS_URL": "redis://127.0.0.1:6379/-1"}, [], "REDIS_URL"),
    ({}, ["--redis-url", "http://x"], "--redis-url"),
    ({"SPOOL_PREFIX": "bad prefix"}, [], "SPOOL_PREFIX"),
    ({"SPOOL_LOG_LEVEL": "loud"}, [], "SPOOL_LOG_LEVEL"),
    ({"SPOOL_LOG_FORMAT": "xml"}, [], "SPOOL_LOG_FORMAT"),
    ({"SPOOL_REDIS_TIMEOUT_MS": "abc"}, [], "SPOOL_REDIS_TIMEOUT_MS"),
]

API_CASES = COMMON + [
    ({"SPOOL_API_ADDR": "nonsense"}, [], "SPOOL_API_ADDR"),
    ({"SPOOL_API_ADDR": "127.0.0.1:99999"}, [], "SPOOL_API_ADDR"),
    ({"SPOOL_API_ADDR": "127.0.0.1:"}, [], "SPOOL_API_ADDR"),
    ({}, ["--addr", "nonsense"], "--addr"),
    ({"SPOOL_MAX_BODY_BYTES": "-1"}, [], "SPOOL_MAX_BODY_BYTES"),
    ({"SPOOL_MAX_BODY_BYTES": "abc"}, [], "SPOOL_MAX_BODY_BYTES"),
    ({"SPOOL_MAX_BODY_BYTES": "10"}, [], "SPOOL_MAX_BODY_BYTES"),
    ({}, ["--max-body-bytes=-1"], "--max-body-bytes"),
    ({"SPOOL_API_THREADS": "0"}, [], "SPOOL_API_THREADS"),
    ({"SPOOL_MAX_PENDING": "-3"}, [], "SPOOL_MAX_PENDING"),
    ({"SPOOL_RESULT_TTL_S": "0"}, [], "SPOOL_RESULT_TTL_S"),
]

WORKER_CASES = COMMON + [
    ({"SPOOL_CONCURRENCY": "abc"}, [], "SPOOL_CONCURRENCY"),
    ({"SPOOL_CONCURRENCY": "0"}, [], "SPOOL_CONCURRENCY"),
    ({"SPOOL_CONCURRENCY": "-2"}, [], "SPOOL_CONCURRENCY"),
    ({"SPOOL_CONCURRENCY": "1.5"}, [], "SPOOL_CONCURRENCY"),
    ({}, ["--concurrency", "0"], "--concurrency"),
    ({"SPOOL_LEASE_MS": "5"}, [], "SPOOL_LEASE_MS"),
    ({"SPOOL_LEASE_MS": "soon"}, [], "SPOOL_LEASE_MS"),
    ({"SPOOL_LEASE_MS": "3000", "SPOOL_HEARTBEAT_MS": "2000"}, [], "SPOOL_HEARTBEAT_MS"),
    ({"SPOOL_LEASE_MS": "3000", "SPOOL_HEARTBEAT_MS": "1500"}, [], "SPOOL_HEARTBEAT_MS"),
    ({"SPOOL_HEARTBEAT_MS": "60000"}, [], "SPOOL_HEARTBEAT_MS"),
    ({"SPOOL_SHUTDOWN_GRACE_MS": "-5"}, [], "SPOOL_SHUTDOWN_GRACE_MS"),
    ({"SPOOL_KILL_GRACE_MS": "abc"}, [], "SPOOL_KILL_GRACE_MS"),
    ({"SPOOL_QUEUES": "bad!queue"}, [], "SPOOL_QUEUES"),
    ({"SPOOL_QUEUES": ""}, [], "SPOOL_QUEUES"),
    ({"SPOOL_QUEUES": "a,a"}, [], "SPOOL_QUEUES"),
    ({}, ["--queues", "ok,no~pe"], "--queues"),
    ({}, ["--handler", "noequals"], "--handler"),
    ({}, ["--handler", "ok=true", "--handler", "noequals"], "--handler"),
    ({}, ["--handler", "bad type!=true"], "--handler"),
    ({}, ["--handler", "empty="], "--handler"),
    ({"SPOOL_HANDLERS": "noequals"}, [], "SPOOL_HANDLERS"),
]


def case_id(case):
    env, args, _ = case
    return " ".join([f"{k}={v}" for k, v in env.items()] + list(args)) or "none"


@pytest.mark.parametrize("env,args,setting", API_CASES, ids=[case_id(c) for c in API_CASES])
def test_api_refuses_bad_config(env, args, setting):
    assert_refused(run(API, env, args), setting)


@pytest.mark.parametrize("env,args,setting", WORKER_CASES, ids=[case_id(c) for c in WORKER_CASES])
def test_worker_refuses_bad_config(env, args, setting):
    assert_refused(run(WORKER, env, args), setting)


def test_api_refuses_an_address_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        proc = run(API, {"SPOOL_API_ADDR": f"127.0.0.1:{port}"})
    assert_refused(proc, "SPOOL_API_ADDR")


@pytest.mark.parametrize("binary,flags", [
    (API, ["--addr", "--redis-url", "--max-body-bytes"]),
    (WORKER, ["--queues", "--concurrency", "--handler", "--lease-ms", "--shutdown-grace-ms"]),
], ids=["api", "worker"])
def test_help_exits_0(binary, flags):
    proc = run(binary, args=["--help"])
    assert proc.returncode == 0, proc
    out = proc.stdout + proc.stderr
    for flag in flags:
        assert flag in out, f"--help does not mention {flag}: {out!r}"


@pytest.mark.parametrize("binary", [API, WORKER], ids=["api", "worker"])
def test_unknown_flag_is_refused(binary):
    proc = run(binary, args=["--no-such-flag"])
    assert proc.returncode != 0
    assert "no-such-flag" in proc.stderr + proc.stdout
