"""Encryption at rest (SPOOL_ENCRYPTION_KEY_FILE): payloads, results, errors
and progress are stored sealed with AES-256-GCM. What Redis holds, read with
redis-cli, shows none of the plaintext; the API shows it all; keys rotate;
idempotency still tells the same request from a different one."""
import base64
import os
import socket
import subprocess
import time

import pytest

from harness import secret, wait_for

MARK = "plain-text-mark-7Hq2"  # must appear nowhere in Redis


def keyfile(path, *keys):
    lines = [f"{kid} {base64.b64encode(raw).decode()}" for kid, raw in keys]
    path.write_text("# id key\n" + "\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def k1():
    return ("k1", os.urandom(32))


@pytest.fixture
def k2():
    return ("k2", os.urandom(32))


def everything_in_redis(redis):
    """Every key and every value, as redis-cli prints them (DUMP would
    compress long strings and hide a plaintext that is there)."""
    out = []
    for k in redis.keys():
        kind = redis.cli("TYPE", k)
        cmd = {"hash": ["HGETALL"], "string": ["GET"], "list": ["LRANGE", "0", "-1"], "zset": ["ZRANGE", "0", "-1"],
               "set": ["SMEMBERS"], "stream": ["XRANGE", "-", "+"]}.get(kind)
        out.append(k)
        if cmd:
            out.append(redis.cli(cmd[0], k, *cmd[1:]))
    return "\n".join(out)


def test_nothing_in_redis_is_plaintext(spawn, redis, tmp_path, k1):
    env = {"SPOOL_ENCRYPTION_KEY_FILE": keyfile(tmp_path / "keys", k1)}
    api = spawn.api(env=env)
    spawn.worker(queues="enc", env=env)
    ok = api.enqueue("enc", {"type": "echo", "payload": {"secret": MARK}})
    bad = api.enqueue("enc", {"type": "fail", "payload": {"message": f"failed with {MARK}"}, "max_attempts": 1})
    slow = api.enqueue("enc", {"type": "sleep", "payload": {"ms": 1500, "note": MARK}})
    assert api.wait_state(ok["id"], "succeeded")["result"] == {"secret": MARK}
    dead = api.wait_state(bad["id"], "dead")
    assert MARK in dead["error"]["message"]
    # Open the sleep job's event log while it runs (a stream started, then left), so its progress lands there.
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as c:
        c.sendall(f"GET /v1/jobs/{slow['id']}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert c.recv(4096).startswith(b"HTTP/1.1 200")
    running = wait_for(lambda: (lambda j: j if j["progress"] else None)(api.job(slow["id"])), timeout=10,
                       what="progress of the sleep job")
    assert running["payload"] == {"ms": 1500, "note": MARK}
    api.wait_state(slow["id"], "succeeded")
    # Event logs too: the streamed chunks, the progress and the result in them.
    streamed = api.enqueue("enc", {"type": "stream", "payload": {"chunks": 3, "note": MARK}})
    api.wait_state(streamed["id"], "succeeded")
    for job in (ok, bad, slow, streamed):
        status, hdrs, body = api.get(f"/v1/jobs/{job['id']}/events")
        assert status == 200 and hdrs["content-type"] == "text/event-stream", (status, body)
    _, _, ok_events = api.get(f"/v1/jobs/{ok['id']}/events")
    assert f'"result":{{"secret":"{MARK}"}}' in ok_events, ok_events
    _, _, dead_events = api.get(f"/v1/jobs/{bad['id']}/events")
    assert f"failed with {MARK}" in dead_events and '"state":"dead"' in dead_events
    _, _, slow_events = api.get(f"/v1/jobs/{slow['id']}/events")
    assert '"message":"sleeping"' in slow_events
    _, _, chunk_events = api.get(f"/v1/jobs/{streamed['id']}/events")
    assert chunk_events.count("event: chunk") == 3 and '"chunk":{"i":2,' in chunk_events, chunk_events
    log = redis.cli("XRANGE", f"spool:{{enc}}:events:{streamed['id']}", "-", "+")
    assert "enc1:k1:" in log and '"i":' not in log, log
    # The job hashes hold sealed values; nowhere is the mark in the clear.
    stored = everything_in_redis(redis)
    assert MARK not in stored
    h = dict(zip(*[iter(redis.cli("HGETALL", f"spool:{{enc}}:job:{ok['id']}").splitlines())] * 2))
    assert h["payload"].startswith("enc1:k1:") and h["result"].startswith("enc1:k1:"), h
    hb = dict(zip(*[iter(redis.cli("HGETALL", f"spool:{{enc}}:job:{bad['id']}").splitlines())] * 2))
    assert hb["error"].startswith("enc1:k1:"), hb
    # Dead list and waiting reads open them too.
    dead_list = api.get("/v1/queues/enc/dead")[2]["jobs"]
    assert dead_list[0]["payload"] == {"message": f"failed with {MARK}"}


def test_idempotency_compares_payloads_under_encryption(spawn, tmp_path, k1, k2):
    env = {"SPOOL_ENCRYPTION_KEY_FILE": keyfile(tmp_path / "keys", k1)}
    api = spawn.api(env=env)
    first = api.enqueue("idem", {"type": "noop", "payload": {"n": 1}, "idempotency_key": "a"})
    status, _, again = api.post("/v1/queues/idem/jobs", {"type": "noop", "payload": {"n": 1}, "idempotency_key": "a"})
    assert status == 200 and again["id"] == first["id"], (status, again)
    status, _, data = api.post("/v1/queues/idem/jobs", {"type": "noop", "payload": {"n": 2}, "idempotency_key": "a"})
    assert status == 409 and data["error"]["code"] == "idempotency_conflict", data
    # After a key rotation (new key first, old kept), the same request is still the same.
    api.stop()
    env = {"SPOOL_ENCRYPTION_KEY_FILE": keyfile(tmp_path / "keys2", k2, k1)}
    api = spawn.api(env=env)
    status, _, again = api.post("/v1/queues/idem/jobs", {"type": "noop", "payload": {"n": 1}, "idempotency_key": "a"})
    assert status == 200 and again["id"] == first["id"], (status, again)
    status, _, data = api.post("/v1/queues/idem/jobs", {"type": "noop", "payload": {"n": 2}, "idempotency_key": "a"})
    assert status == 409, data


def test_keys_rotate_and_a_missing_key_is_named(spawn, redis, tmp_path, k1, k2):
    # A job stored before encryption was turned on stays readable.
    plain_api = spawn.api()
    legacy = plain_api.enqueue("rot", {"type": "noop", "payload": {"era": "plaintext"}})
    plain_api.stop()
    api = spawn.api(env={"SPOOL_ENCRYPTION_KEY_FILE": keyfile(tmp_path / "a", k1)})
    old = api.enqueue("rot", {"type": "noop", "payload": {"era": "k1"}})
    assert api.job(legacy["id"])["payload"] == {"era": "plaintext"}
    api.stop()
    # Rotated: k2 seals, k1 still opens.
    api = spawn.api(env={"SPOOL_ENCRYPTION_KEY_FILE": keyfile(tmp_path / "b", k2, k1)})
    new = api.enqueue("rot", {"type": "noop", "payload": {"era": "k2"}})
    assert api.job(old["id"])["payload"] == {"era": "k1"}
    assert redis.cli("HGET", f"spool:{{rot}}:job:{new['id']}", "payload").startswith("enc1:k2:")
    api.stop()
    # k1 dropped too early: its jobs answer an error that names the key, others are fine.
    api = spawn.api(env={"SPOOL_ENCRYPTION_KEY_FILE": keyfile(tmp_path / "c", k2)})
    status, _, data = api.get(f"/v1/jobs/{old['id']}")
    assert status == 500 and "'k1'" in data["error"]["message"], (status, data)
    assert api.job(new["id"])["payload"] == {"era": "k2"}
    # An API without the key file cannot read sealed jobs, and says so.
    api.stop()
    api = spawn.api()
    status, _, data = api.get(f"/v1/jobs/{new['id']}")
    assert status == 500 and "SPOOL_ENCRYPTION_KEY_FILE" in data["error"]["message"], (status, data)


def test_a_sealed_value_moved_to_another_job_does_not_open(spawn, redis, tmp_path, k1):
    api = spawn.api(env={"SPOOL_ENCRYPTION_KEY_FILE": keyfile(tmp_path / "keys", k1)})
    a = api.enqueue("mv", {"type": "noop", "payload": {"who": "a"}})
    b = api.enqueue("mv", {"type": "noop", "payload": {"who": "b"}})
    sealed_a = redis.cli("HGET", f"spool:{{mv}}:job:{a['id']}", "payload")
    redis.cli("HSET", f"spool:{{mv}}:job:{b['id']}", "payload", sealed_a)
    status, _, data = api.get(f"/v1/jobs/{b['id']}")
    assert status == 500 and "does not open" in data["error"]["message"], (status, data)
    assert api.job(a["id"])["payload"] == {"who": "a"}


@pytest.mark.parametrize("content,why", [
    ("", "is empty"),
    ("# only a comment\n", "holds no key"),
    ("k1 notbase64!!\n", "32 bytes"),
    ("k1 " + base64.b64encode(b"short").decode() + "\n", "32 bytes"),
    ("bad/id " + base64.b64encode(b"x" * 32).decode() + "\n", "key id"),
    ("k1 " + base64.b64encode(b"x" * 32).decode() + "\nk1 " + base64.b64encode(b"y" * 32).decode() + "\n", "used twice"),
])
def test_a_bad_key_file_stops_the_start(tmp_path, redis, content, why):
    from harness import BIN_DIR
    path = tmp_path / "keys"
    path.write_text(content)
    for binary in ("spool-api", "spool-worker"):
        out = subprocess.run([str(BIN_DIR / binary)], env={"PATH": os.environ["PATH"], "REDIS_URL": redis.url,
                                                           "SPOOL_ENCRYPTION_KEY_FILE": str(path)},
                             capture_output=True, text=True, timeout=20)
        assert out.returncode == 2 and why in out.stderr, (binary, out.stderr)
