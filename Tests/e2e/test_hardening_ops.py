"""What an operator sees (issue 11): metrics outside tools accept, Redis trouble
named and never a 500, busy ports refused, graceful API shutdown, Redis URLs as
users write them, replicas refused."""
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from harness import API, BIN_DIR, Redis, Worker, free_port, secret, wait_for
from helpers import assert_error, log_lines_with, metric_lines

# Distinct strings, so that the check for logged secrets cannot match ordinary words.
RIGHT = secret("pw-right-7Qz4")
WRONG = secret("pw-wrong-7Qz4")


def promtool():
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: `make e2e` installs Debian's prometheus package (scripts/install-test-tools.sh)")
    return path


def metric_value(text, name):
    lines = metric_lines(text, name)
    assert len(lines) == 1, (name, lines)
    return float(lines[0].split()[-1])


def check_with_promtool(text):
    out = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"promtool check metrics failed ({out.returncode}):\n{out.stdout}{out.stderr}"


def test_api_metrics_pass_promtool_and_carry_the_new_series(spawn):
    api = spawn.api()
    job = api.enqueue("m", {"type": "noop"})
    api.get(f"/v1/jobs/{job['id']}")
    status, headers, text = api.get("/metrics")
    assert status == 200
    check_with_promtool(text)
    for family in ("spool_http_requests_total", "spool_http_request_duration_seconds", "spool_redis_up",
                   "spool_queue_pending_jobs", "spool_redis_errors_total", "spool_metrics_queues_omitted"):
        assert f"# HELP {family} " in text and f"# TYPE {family} " in text, family
    assert metric_value(text, "spool_redis_up") == 1
    counts = [l for l in metric_lines(text, "spool_http_request_duration_seconds_count") if 'route="/v1/jobs/:id"' in l]
    assert counts and float(counts[0].split()[-1]) >= 1, counts
    # Counters exist at 0 before their first event.
    assert any('kind="oom"' in l and float(l.split()[-1]) == 0 for l in metric_lines(text, "spool_redis_errors_total")), text
    assert 'spool_queue_pending_jobs{queue="m",priority="normal"} 1' in text


def test_worker_metrics_pass_promtool_with_outcomes_by_type_from_zero(spawn, tmp_path):
    port = free_port()
    api = spawn.api()
    spawn.worker(queues="w", args=["--health-port", str(port), "--handler", "shout=cat"])
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    check_with_promtool(text)
    outcomes = metric_lines(text, "spool_job_outcomes_total")
    for t in ("shout", "echo", "other"):
        assert any(f'type="{t}"' in l and 'outcome="succeeded"' in l and float(l.split()[-1]) == 0 for l in outcomes), (t, outcomes)
    assert any('queue="w"' in l for l in metric_lines(text, "spool_jobs_processed_total")), "per-queue counters start at 0"
    job = api.enqueue("w", {"type": "shout", "payload": {"a": 1}})
    api.wait_state(job["id"], "succeeded")
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert any('type="shout"' in l and 'outcome="succeeded"' in l and float(l.split()[-1]) == 1 for l in
               metric_lines(text, "spool_job_outcomes_total"))
    assert metric_value(text, "spool_redis_up") == 1


@pytest.mark.single_redis("stops and restarts the redis-server")
def test_metrics_answer_with_redis_down(spawn, redis):
    api = spawn.api()
    api.enqueue("m", {"type": "noop"})
    redis.stop()
    time.sleep(0.3)
    status, _, text = api.get("/metrics")
    assert status == 200 and isinstance(text, str) and text.strip(), text
    assert metric_value(text, "spool_redis_up") == 0
    assert "spool_http_requests_total" in text
    check_with_promtool(text)


def test_metrics_cap_per_queue_series_deepest_first(spawn):
    api = spawn.api(env={"SPOOL_METRICS_MAX_QUEUES": "3"})
    for i, depth in enumerate([1, 5, 2, 7, 3]):
        api.post(f"/v1/queues/q{i}/jobs/batch", {"jobs": [{"type": "noop"}] * depth})
    _, _, text = api.get("/metrics")
    shown = {l.split('queue="')[1].split('"')[0] for l in metric_lines(text, "spool_queue_scheduled_jobs")}
    assert shown == {"q1", "q3", "q4"}, shown
    assert metric_value(text, "spool_metrics_queues_omitted") == 2


def test_a_busy_address_is_an_error_naming_it(spawn, redis):
    api = spawn.api()
    for env, args, origin in (({"SPOOL_API_ADDR": f"127.0.0.1:{api.port}"}, [], "SPOOL_API_ADDR"),
                              ({}, ["--addr", f"127.0.0.1:{api.port}"], "--addr")):
        out = subprocess.run([str(BIN_DIR / "spool-api"), *args], capture_output=True, text=True, timeout=20,
                             env={**os.environ, "REDIS_URL": redis.url, **env})
        assert out.returncode != 0, out
        assert origin in out.stderr and f"127.0.0.1:{api.port}" in out.stderr and "in use" in out.stderr, out.stderr
    # Every GET of a job still reaches the one API (nothing shares the port).
    job = api.enqueue("q", {"type": "noop"})
    assert all(api.get(f"/v1/jobs/{job['id']}")[0] == 200 for _ in range(20))
    port = free_port()
    spawn.worker(args=["--health-port", str(port)])
    out = subprocess.run([str(BIN_DIR / "spool-worker"), "--health-port", str(port)], capture_output=True, text=True,
                         timeout=20, env={**os.environ, "REDIS_URL": redis.url})
    assert out.returncode != 0 and "--health-port" in out.stderr and str(port) in out.stderr, out


@pytest.fixture
def redis_with_password():
    r = Redis()
    r.cli("CONFIG", "SET", "requirepass", RIGHT)
    yield r
    r.cleanup()


def test_a_wrong_password_is_named_in_the_log_readyz_and_503(spawn, redis_with_password):
    url = f"redis://:{WRONG}@127.0.0.1:{redis_with_password.port}"
    api = API(url)
    try:
        err = assert_error(api.get("/readyz"), 503, "redis_unavailable", mentions=["WRONGPASS"])
        assert "AUTH" in err["message"]
        err = assert_error(api.post("/v1/queues/q/jobs", {"type": "noop"}), 503, "redis_unavailable", mentions=["WRONGPASS"])
        errors = wait_for(lambda: [l for l in api.log_lines() if l.get("level") == "error" and "WRONGPASS" in l.get("error", "")],
                          timeout=5, what="an error log line naming WRONGPASS")
        assert errors[0]["kind"] == "auth"
        time.sleep(1.5)
        # Rate-limited: reconnect attempts do not log a line each.
        assert len([l for l in api.log_lines() if "WRONGPASS" in l.get("error", "")]) <= 3
        assert any(l.get("msg") == "answered a server error" for l in api.log_lines()), "503s are not logged"
    finally:
        api.stop()
    # No password at all: ROLE answers NOAUTH, and the node is not taken as usable.
    none = API(f"redis://127.0.0.1:{redis_with_password.port}")
    try:
        assert_error(none.get("/readyz"), 503, "redis_unavailable", mentions=["NOAUTH"])
        _, _, text = none.get("/metrics")
        assert metric_value(text, "spool_redis_up") == 0
    finally:
        none.stop()
    good = API(f"redis://:{RIGHT}@127.0.0.1:{redis_with_password.port}")
    try:
        assert good.get("/readyz")[0] == 200
        good.enqueue("q", {"type": "noop"})
    finally:
        good.stop()


@pytest.mark.single_redis("changes the redis-server's passwords or users")
def test_a_user_without_password_in_the_url_is_a_user(spawn, redis):
    redis.cli("ACL", "SETUSER", "app", "on", "nopass", "~*", "&*", "+@all")
    redis.cli("ACL", "SETUSER", "default", "off")
    api = API(f"redis://app@127.0.0.1:{redis.port}")
    try:
        assert api.get("/readyz")[0] == 200, api.output()
        api.enqueue("q", {"type": "noop"})
    finally:
        api.stop()


def test_unix_socket_and_ipv6_urls(tmp_path):
    sock = str(tmp_path / "redis.sock")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "::1", "--unixsocket", sock,
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: os.path.exists(sock), timeout=10, what="the redis socket")
        api = API(f"unix://{sock}?db=2")
        try:
            job = api.enqueue("q", {"type": "noop"})
            w = Worker(f"unix://{sock}?db=2", queues="q")
            try:
                api.wait_state(job["id"], "succeeded")
            finally:
                w.stop()
            keys = subprocess.run(["redis-cli", "-s", sock, "-n", "2", "KEYS", "spool:*"], capture_output=True, text=True).stdout
            assert "spool:queues" in keys
        finally:
            api.stop()
        v6 = API(f"redis://[::1]:{port}")
        try:
            assert v6.get("/readyz")[0] == 200
        finally:
            v6.stop()
    finally:
        proc.terminate()
        proc.wait(10)


def test_settings_errors_name_the_flag_that_was_given(redis):
    out = subprocess.run([str(BIN_DIR / "spool-api"), "--addr", "nonsense"], capture_output=True, text=True, timeout=10,
                         env={**os.environ, "REDIS_URL": redis.url})
    assert out.returncode == 2 and out.stderr.startswith("spool-api: --addr:"), out.stderr
    out = subprocess.run([str(BIN_DIR / "spool-worker"), "--lease-ms", "3000", "--heartbeat-ms", "2000"],
                         capture_output=True, text=True, timeout=10, env={**os.environ, "REDIS_URL": redis.url})
    assert out.returncode == 2 and "--heartbeat-ms" in out.stderr and "SPOOL_HEARTBEAT_MS" not in out.stderr, out.stderr
    # A short lease alone still starts (the Redis timeout follows it) ...
    w = Worker(redis.url, env={"SPOOL_LEASE_MS": "1200"})
    w.stop()
    # ... but an explicit timeout that does not fit well inside the lease is refused, naming both.
    out = subprocess.run([str(BIN_DIR / "spool-worker")], capture_output=True, text=True, timeout=10,
                         env={**os.environ, "REDIS_URL": redis.url, "SPOOL_LEASE_MS": "3000", "SPOOL_REDIS_TIMEOUT_MS": "2000"})
    assert out.returncode == 2 and "SPOOL_REDIS_TIMEOUT_MS" in out.stderr and "SPOOL_LEASE_MS" in out.stderr, out.stderr


@pytest.mark.single_redis("reconfigures the one redis-server (CONFIG SET)")
def test_eviction_policy_warning_at_start(spawn, redis):
    redis.cli("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    api = spawn.api()
    w = spawn.worker()
    for proc in (api, w):
        line = wait_for(lambda: [l for l in proc.log_lines() if "maxmemory-policy" in l.get("msg", "")], timeout=5,
                        what="the eviction warning")[0]
        assert line["level"] == "warning" and "allkeys-lru" in line["msg"] and "noeviction" in line["msg"]
    redis.cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
    quiet = spawn.api()
    time.sleep(0.3)
    assert not [l for l in quiet.log_lines() if "maxmemory-policy" in l.get("msg", "")]


def test_access_log_and_refused_connections_are_logged(spawn):
    api = spawn.api(env={"SPOOL_ACCESS_LOG": "true", "SPOOL_MAX_CONNECTIONS": "2", "SPOOL_API_THREADS": "1"})
    api.get("/v1/queues?limit=5")
    line = wait_for(lambda: [l for l in api.log_lines() if l.get("msg") == "request" and l.get("route") == "/v1/queues"],
                    timeout=5, what="an access log line")[0]
    assert line["method"] == "GET" and line["status"] == 200 and line["path"] == "/v1/queues" and "duration_ms" in line
    held = [socket.create_connection(("127.0.0.1", api.port)) for _ in range(2)]
    time.sleep(0.2)
    extra = [socket.create_connection(("127.0.0.1", api.port)) for _ in range(3)]
    time.sleep(0.3)
    for s in held + extra:
        s.close()
    refused = wait_for(lambda: log_lines_with(api, "connection refused: SPOOL_MAX_CONNECTIONS reached"), timeout=5,
                       what="the refused-connection log line")
    assert refused[0]["refused"] >= 1
    _, _, text = api.get("/metrics")
    assert any(float(l.split()[-1]) >= 3 for l in metric_lines(text, "spool_http_connections_refused_total")), text


@pytest.mark.single_redis("makes a replica of the one redis-server")
def test_a_replica_is_refused_and_a_demoted_primary_is_left(spawn, redis, tmp_path):
    """Pointed at a replica, the API says so on /readyz and answers 503, never
    201; when its primary is demoted under it (READONLY), it drops the
    connection and refuses the node until it is primary again."""
    replica = Redis()
    try:
        replica.cli("REPLICAOF", "127.0.0.1", redis.port)
        api = API(f"redis://127.0.0.1:{replica.port}")
        try:
            assert_error(api.get("/readyz"), 503, "redis_unavailable", mentions=["replica"])
            assert_error(api.post("/v1/queues/q/jobs", {"type": "noop"}), 503, "redis_unavailable")
            assert wait_for(lambda: [l for l in api.log_lines() if l.get("kind") == "readonly"], timeout=5,
                            what="a log line of kind readonly")
        finally:
            api.stop()
        # Demote a primary the API is using: READONLY, then refused as a replica.
        api = spawn.api()
        api.enqueue("q", {"type": "noop"})
        redis.cli("REPLICAOF", "127.0.0.1", replica.port)
        replica.cli("REPLICAOF", "NO", "ONE")
        created = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            status, _, _ = api.post("/v1/queues/q/jobs", {"type": "noop"})
            assert status in (201, 503), status
            created += status == 201
        assert_error(api.get("/readyz"), 503, "redis_unavailable", mentions=["replica"])
        assert created == 0, "jobs answered 201 by a node that is a replica"
        redis.cli("REPLICAOF", "NO", "ONE")
        # Each event loop reconnects on its own backoff (at most 1 s apart).
        wait_for(lambda: api.get("/readyz")[0] == 200, timeout=5, what="the API to use the node once it is primary again")
        wait_for(lambda: all(api.post("/v1/queues/q/jobs", {"type": "noop"})[0] == 201 for _ in range(4)), timeout=5,
                 what="every loop of the API to take jobs again")
    finally:
        replica.cleanup()


@pytest.mark.single_redis("reconfigures the one redis-server (CONFIG SET)")
def test_readyz_fails_when_redis_refuses_writes(spawn, redis):
    api = spawn.api()
    assert api.get("/readyz")[0] == 200
    redis.cli("CONFIG", "SET", "maxmemory", "1")
    try:
        assert_error(api.get("/readyz"), 503, "redis_unavailable", mentions=["OOM"])
        assert_error(api.post("/v1/queues/q/jobs", {"type": "noop"}), 503, "redis_unavailable", mentions=["OOM"])
        _, _, text = api.get("/metrics")
        assert any('kind="oom"' in l and float(l.split()[-1]) >= 1 for l in metric_lines(text, "spool_redis_errors_total"))
    finally:
        redis.cli("CONFIG", "SET", "maxmemory", "0")
    assert api.get("/readyz")[0] == 200


def test_api_shutdown_answers_every_waiting_client(spawn, redis):
    api = spawn.api(env={"SPOOL_API_DRAIN_MS": "500", "SPOOL_API_SHUTDOWN_GRACE_MS": "5000"})
    job = api.enqueue("q", {"type": "noop"})
    results = []
    lock = threading.Lock()

    def waiter():
        try:
            r = api.get(f"/v1/jobs/{job['id']}?wait=30", timeout=20)
        except Exception as e:  # noqa: BLE001 - recorded, asserted below
            r = (None, None, repr(e))
        with lock:
            results.append(r)

    threads = [threading.Thread(target=waiter) for _ in range(200)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    api.signal(signal.SIGTERM)
    time.sleep(0.15)
    status, _, body = api.get("/readyz")
    assert status == 503 and body["error"]["code"] == "shutting_down", body
    assert api.get("/healthz")[0] == 200, "requests are still served while draining"
    for t in threads:
        t.join(20)
    assert api.wait(10) == 0
    took = time.monotonic() - t0
    statuses = [r[0] for r in results]
    assert statuses.count(200) == 200, sorted(set(map(str, statuses)))
    assert all(r[2]["state"] == "queued" for r in results)
    assert 0.45 < took < 5, took
