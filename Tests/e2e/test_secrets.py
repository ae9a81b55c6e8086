"""Secrets: the Redis URL and password from files (mounted secrets), and no
password in any error, `--help` output or API answer. (That no log line
holds one is checked after every test by conftest's no_secrets_in_logs.)"""
import os
import subprocess

import pytest

from harness import API, BIN_DIR, Worker, secret, wait_for

PASSWORD = secret("pw-file-9Kd2x")
# A password file takes any characters, those a URL would need escaped too.
ODD_PASSWORD = secret("pw odd:9Kd2@/%x")


@pytest.fixture
def guarded(redis):
    redis.cli("CONFIG", "SET", "requirepass", PASSWORD)
    return redis


def run(binary, env, *args):
    e = {"PATH": os.environ["PATH"]}
    e.update(env)
    return subprocess.run([str(BIN_DIR / binary), *args], env=e, capture_output=True, text=True, timeout=20)


@pytest.mark.single_redis("sets a password on the redis-server")
def test_url_and_password_from_files(redis, tmp_path):
    redis.cli("CONFIG", "SET", "requirepass", ODD_PASSWORD)
    url_file = tmp_path / "redis-url"
    url_file.write_text(f"redis://127.0.0.1:{redis.port}\n")
    password_file = tmp_path / "redis-password"
    password_file.write_text(ODD_PASSWORD + "\n")  # an editor's final line break is not part of it
    env = {"REDIS_URL_FILE": str(url_file), "REDIS_PASSWORD_FILE": str(password_file)}
    api = API(None, env=env)
    worker = Worker(None, queues="files", env=env)
    try:
        wait_for(lambda: api.get("/readyz")[0] == 200, timeout=15, what=f"the API to be ready\n{api.output()}")
        job = api.enqueue("files", {"type": "echo", "payload": {"via": "files"}})
        assert api.wait_state(job["id"], "succeeded")["result"] == {"via": "files"}
    finally:
        worker.stop()
        api.stop()


def test_conflicting_or_missing_secret_files_are_named(tmp_path, redis):
    url_file = tmp_path / "url"
    url_file.write_text(f"redis://:{PASSWORD}@127.0.0.1:1")  # never reached: the settings are refused first
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD)
    for binary in ("spool-api", "spool-worker"):
        out = run(binary, {"REDIS_URL": redis.url, "REDIS_URL_FILE": str(url_file)})
        assert out.returncode == 2 and "REDIS_URL and REDIS_URL_FILE are both set" in out.stderr, out.stderr
        out = run(binary, {"REDIS_URL_FILE": str(url_file), "REDIS_PASSWORD_FILE": str(password_file)})
        assert out.returncode == 2 and "gives one too" in out.stderr, out.stderr
        out = run(binary, {"REDIS_PASSWORD_FILE": str(tmp_path / "missing")})
        assert out.returncode == 2 and "cannot read" in out.stderr and "missing" in out.stderr, out.stderr
        (tmp_path / "empty").write_text("\n")
        out = run(binary, {"REDIS_URL": redis.url, "REDIS_PASSWORD_FILE": str(tmp_path / "empty")})
        assert out.returncode == 2 and "is empty" in out.stderr, out.stderr
        for o in (out.stdout, out.stderr):
            assert PASSWORD not in o


@pytest.mark.parametrize("url", [
    "redis://:{pw}@127.0.0.1:notaport",
    "redis://app:{pw}@host:1/notadb",
    "redis+sentinel://:{pw}@s1:26379",
    "rediz://:{pw}@x",
])
def test_a_bad_url_is_named_without_its_password(url):
    for binary in ("spool-api", "spool-worker"):
        out = run(binary, {"REDIS_URL": url.format(pw=PASSWORD)})
        assert out.returncode == 2, out
        assert PASSWORD not in out.stderr + out.stdout, out.stderr
        assert ":***@" in out.stderr, out.stderr


def test_help_shows_no_secret():
    for binary in ("spool-api", "spool-worker"):
        out = run(binary, {"REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:1"}, "--help")
        assert out.returncode == 0
        assert PASSWORD not in out.stdout + out.stderr
        assert "REDIS_PASSWORD_FILE" in out.stdout and "REDIS_URL_FILE" in out.stdout


@pytest.mark.single_redis("sets a password on the redis-server")
def test_answers_never_echo_the_password(guarded, spawn):
    wrong = secret("pw-not-this-one-3Lm")
    api = spawn.api(env={"REDIS_URL": f"redis://:{wrong}@127.0.0.1:{guarded.port}"})
    wait_for(lambda: api.get("/readyz")[0] == 503, timeout=5, what="/readyz to say 503")
    for resp in (api.get("/readyz"), api.post("/v1/queues/q/jobs", {"type": "noop"}), api.get("/v1/queues"),
                 api.get("/metrics")):
        text = str(resp)
        assert wrong not in text and PASSWORD not in text, text
    assert "WRONGPASS" in str(api.get("/readyz")) or "invalid" in str(api.get("/readyz"))
