"""REDIS_URL=redis+sentinel://... against a real sentinel (redis-server
--sentinel) watching the test's Redis: the data node and the sentinel have
different passwords, and each is given where it belongs. (Failovers under load
are the chaos suite's: Tests/chaos/test_sentinel.py.)"""
import os
import subprocess
import tempfile

import pytest

from harness import API, Redis, Worker, free_port, secret, wait_for
from helpers import assert_error

secret("data-secret")
secret("sentinel-secret")


@pytest.fixture
def guarded():
    """A Redis with a password and a sentinel with another one."""
    redis = Redis()
    redis.cli("CONFIG", "SET", "requirepass", "data-secret")
    d = tempfile.mkdtemp(prefix="spool-sentinel-")
    port = free_port()
    conf = os.path.join(d, "sentinel.conf")
    with open(conf, "w") as f:
        f.write(f"port {port}\nbind 127.0.0.1\ndir {d}\nrequirepass sentinel-secret\n"
                f"sentinel monitor main 127.0.0.1 {redis.port} 1\n"
                f"sentinel auth-pass main data-secret\n")
    proc = subprocess.Popen(["redis-server", conf, "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "-a", "sentinel-secret", "--no-auth-warning",
                                     "PING"], capture_output=True, text=True).stdout.strip() == "PONG",
             timeout=10, what="the sentinel to start")
    yield redis, port
    proc.kill()
    proc.wait()
    redis.cleanup()


def test_api_and_worker_find_the_primary_through_a_sentinel_with_its_own_password(guarded):
    redis, sentinel_port = guarded
    url = f"redis+sentinel://:data-secret@127.0.0.1:{sentinel_port}/main"
    env = {"SPOOL_SENTINEL_PASSWORD": "sentinel-secret"}
    api = API(url, env=env)
    wait_for(lambda: api.get("/readyz")[0] == 200, timeout=10, what="readyz through the sentinel")
    worker = Worker(url, queues="via-sentinel", env=env)
    try:
        job = api.enqueue("via-sentinel", {"type": "echo", "payload": {"found": "primary"}})
        done = api.wait_state(job["id"], "succeeded", timeout=20)
        assert done["result"] == {"found": "primary"}
        assert redis.cli("-a", "data-secret", "--no-auth-warning", "EXISTS", f"spool:{{via-sentinel}}:job:{job['id']}") == "1"
        # The URL is logged without either password.
        logged = api.output() + worker.output()
        assert "data-secret" not in logged and "sentinel-secret" not in logged
        assert f"redis+sentinel://:***@127.0.0.1:{sentinel_port}/main/0" in logged
    finally:
        worker.stop()
        api.stop()


def test_a_wrong_sentinel_password_is_named(guarded):
    redis, sentinel_port = guarded
    api = API(f"redis+sentinel://:data-secret@127.0.0.1:{sentinel_port}/main", env={"SPOOL_SENTINEL_PASSWORD": "wrong"})
    try:
        err = assert_error(api.get("/readyz"), 503, "redis_unavailable", mentions=["sentinel", f"127.0.0.1:{sentinel_port}"])
        assert "WRONGPASS" in err["message"] or "invalid" in err["message"].lower(), err
    finally:
        api.stop()


def test_the_sentinels_as_separate_settings(guarded):
    """SPOOL_SENTINELS and SPOOL_SENTINEL_MASTER instead of a redis+sentinel://
    URL: REDIS_URL then gives only the data node's password (its host is not
    used: here it names nothing that exists)."""
    redis, sentinel_port = guarded
    url = "redis://:data-secret@no-such-host.invalid:1"
    env = {"SPOOL_SENTINELS": f"127.0.0.1:{sentinel_port}", "SPOOL_SENTINEL_MASTER": "main",
           "SPOOL_SENTINEL_PASSWORD": "sentinel-secret"}
    api = API(url, env=env)
    worker = Worker(url, queues="separate", env=env)
    try:
        wait_for(lambda: api.get("/readyz")[0] == 200, timeout=10, what="readyz through the sentinel")
        job = api.enqueue("separate", {"type": "echo", "payload": 7})
        assert api.wait_state(job["id"], "succeeded", timeout=20)["result"] == 7
        assert f"redis+sentinel://:***@127.0.0.1:{sentinel_port}/main/0" in api.output()
    finally:
        worker.stop()
        api.stop()


@pytest.mark.parametrize("env, words", [
    ({"SPOOL_SENTINEL_MASTER": "main"}, "without SPOOL_SENTINELS"),
    ({"SPOOL_SENTINELS": "127.0.0.1:26379"}, "without SPOOL_SENTINEL_MASTER"),
    ({"SPOOL_SENTINELS": "127.0.0.1:26379,,x", "SPOOL_SENTINEL_MASTER": "m"}, "empty sentinel address"),
    ({"SPOOL_SENTINELS": "127.0.0.1:26379", "SPOOL_SENTINEL_MASTER": "m",
      "REDIS_URL": "redis+cluster://127.0.0.1:7000"}, "both say where Redis is"),
])
def test_separate_sentinel_settings_are_checked(env, words):
    from harness import BIN_DIR
    full = {"PATH": os.environ["PATH"], "REDIS_URL": "redis://127.0.0.1:6379", **env}
    for binary in ("spool-api", "spool-worker"):
        out = subprocess.run([str(BIN_DIR / binary)], env=full, capture_output=True, text=True, timeout=10)
        assert out.returncode == 2 and words in out.stderr, (binary, out.stderr)
