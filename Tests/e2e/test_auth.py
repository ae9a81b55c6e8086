"""API tokens, scopes and client isolation, tried the way a hostile client
would: no token, malformed, unknown and revoked tokens, a token in the URL,
wrong scopes and queues, another client's job ids on every route, huge
headers, and the timing of near-miss tokens. A refused request changes
nothing in Redis."""
import json
import os
import signal
import statistics
import socket
import subprocess
import time

import pytest

from harness import API, BIN_DIR, EXTRA_ENV, free_port, secret, wait_for

ROUTES_NEEDING_TOKEN = [
    ("GET", "/metrics"), ("GET", "/v1/queues"), ("GET", "/v1/queues/shared"), ("DELETE", "/v1/queues/shared"),
    ("POST", "/v1/queues/shared/jobs"), ("POST", "/v1/queues/shared/jobs/batch"), ("POST", "/v1/queues/shared/pause"),
    ("POST", "/v1/queues/shared/resume"), ("GET", "/v1/queues/shared/dead"), ("DELETE", "/v1/queues/shared/dead"),
    ("POST", "/v1/queues/shared/dead/retry"), ("GET", "/v1/jobs/shared~01M8Q39YH1BZ3S575BSMBG3CKB"),
    ("GET", "/v1/jobs/shared~01M8Q39YH1BZ3S575BSMBG3CKB/result"),
    ("POST", "/v1/jobs/shared~01M8Q39YH1BZ3S575BSMBG3CKB/cancel"),
    ("POST", "/v1/jobs/shared~01M8Q39YH1BZ3S575BSMBG3CKB/retry"), ("GET", "/v1/workers"),
    ("GET", "/v1/jobs/shared~01M8Q39YH1BZ3S575BSMBG3CKB/events"), ("GET", "/v1/queues/shared/events"),
    ("GET", "/v1/queues/shared/groups"), ("GET", "/v1/limits"), ("GET", "/v1/limits/openai"),
    ("PUT", "/v1/limits/openai"), ("DELETE", "/v1/limits/openai"),
]


def make_token(client_id, scopes, queues=None, max_pending=None):
    """Runs `spool-api token`, as an operator would; returns (token, entry)."""
    args = [str(BIN_DIR / "spool-api"), "token", "--id", client_id, "--scopes", ",".join(scopes)]
    if queues:
        args += ["--queues", ",".join(queues)]
    if max_pending:
        args += ["--max-pending", str(max_pending)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    made = json.loads(out.stdout)
    return secret(made["token"]), made["entry"]


class Clients:
    """An auth file with a few clients, and an API that reads it."""

    def __init__(self, tmp_path, spawn, extra_env=None):
        self.path = tmp_path / "clients.json"
        self.tokens = {}
        self.entries = {}
        for cid, scopes, queues in [
            ("alice", ["enqueue", "read"], ["shared", "alice-*"]),
            ("bob", ["enqueue", "read"], ["shared"]),
            ("reader", ["read"], ["shared"]),
            ("ops", ["admin"], ["*"]),
            ("alice-admin", ["admin"], ["alice-*"]),
            ("scraper", ["metrics"], None),
        ]:
            self.tokens[cid], self.entries[cid] = make_token(cid, scopes, queues)
        self.write()
        env = {"SPOOL_AUTH_FILE": str(self.path), "SPOOL_ACCESS_LOG": "true"}
        env.update(extra_env or {})
        self.api = spawn.api(env=env)

    def write(self, entries=None):
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"clients": list((entries or self.entries).values())}))
        os.replace(tmp, self.path)  # as a Secret update does: the file is swapped whole

    def as_(self, cid):
        return {"Authorization": f"Bearer {self.tokens[cid]}"}

    def call(self, cid, method, path, body=None):
        headers = self.as_(cid) if cid else {}
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        return self.api.request(method, path, body=body if body is not None else (b"" if method == "POST" else None),
                                headers=headers)

    def enqueue(self, cid, queue, job):
        status, _, data = self.call(cid, "POST", f"/v1/queues/{queue}/jobs", job)
        assert status == 201, (cid, status, data)
        return data


@pytest.fixture
def clients(tmp_path, spawn):
    return Clients(tmp_path, spawn)


def snapshot(redis):
    """Every key with its serialized value (DUMP): equal snapshots, unchanged data."""
    node = redis.alive_nodes()[0] if hasattr(redis, "alive_nodes") else redis
    return {k: subprocess.run([*node.cli_args(), "-c", "DUMP", k], capture_output=True, timeout=10).stdout
            for k in sorted(redis.keys())}


def assert_401(resp, invalid):
    status, headers, data = resp
    assert status == 401, resp
    assert data["error"]["code"] == "unauthorized", data
    challenge = headers.get("www-authenticate", "")
    assert challenge.startswith("Bearer"), headers
    assert ('error="invalid_token"' in challenge) == invalid, challenge


def assert_403(resp, *words):
    status, _, data = resp
    assert status == 403, resp
    assert data["error"]["code"] == "forbidden", data
    for w in words:
        assert w in data["error"]["message"], data


def test_the_route_list_above_is_every_route_of_the_api(clients):
    """The binary's own route table (as /metrics labels it) has no route the
    list above misses: a new route gets its access checked here."""
    import re
    metrics = clients.call("ops", "GET", "/metrics")[2]
    served = set(re.findall(r'spool_http_request_duration_seconds_count\{method="(\w+)",route="([^"]+)"\}', metrics))
    served |= {(m, r) for r, m in re.findall(r'spool_http_request_duration_seconds_count\{route="([^"]+)",method="(\w+)"\}', metrics)}
    assert served, "no route series in /metrics"
    listed = {(m, p.replace("/queues/shared", "/queues/:queue").replace("shared~01M8Q39YH1BZ3S575BSMBG3CKB", ":id")
                  .replace("/limits/openai", "/limits/:limit"))
              for m, p in ROUTES_NEEDING_TOKEN}
    open_routes = {("GET", "/healthz"), ("GET", "/readyz")}
    assert served - open_routes - listed == set(), "routes without an auth test"


def test_every_route_but_probes_needs_a_token(clients, redis):
    # Probes stay open: kubelets and load balancers carry no token.
    assert clients.call(None, "GET", "/healthz")[0] == 200
    assert clients.call(None, "GET", "/readyz")[0] == 200
    before = snapshot(redis)
    for method, path in ROUTES_NEEDING_TOKEN:
        assert_401(clients.call(None, method, path, {"type": "noop"} if method == "POST" else None), invalid=False)
    assert snapshot(redis) == before


@pytest.mark.parametrize("header", [
    "Basic YWxpY2U6c2VjcmV0",         # another scheme
    "Bearer",                          # no token
    "Bearer two words",                # a space inside
    "Bearer tok\u00e9n",               # not a token character
    "Bearer " + "a" * 600,             # longer than any token
    "bearer",
])
def test_malformed_authorization_is_401_invalid_token(clients, redis, header):
    before = snapshot(redis)
    resp = clients.api.request("POST", "/v1/queues/shared/jobs", body=json.dumps({"type": "noop"}),
                               headers={"Authorization": header.encode("utf-8").decode("latin-1")})
    assert_401(resp, invalid=True)
    assert snapshot(redis) == before


def test_unknown_token_and_scheme_case(clients, redis):
    before = snapshot(redis)
    fake = "spool_" + "A" * 43
    resp = clients.api.request("GET", "/v1/queues", headers={"Authorization": f"Bearer {fake}"})
    assert_401(resp, invalid=True)
    assert "not known" in resp[2]["error"]["message"]
    # The scheme is case-insensitive (RFC 7235); the token is not.
    assert clients.api.request("GET", "/v1/queues", headers={"Authorization": f"bearer {clients.tokens['alice']}"})[0] == 200
    assert_401(clients.api.request("GET", "/v1/queues", headers={"Authorization": f"Bearer {clients.tokens['alice'].upper()}"}),
               invalid=True)
    assert snapshot(redis) == before


def test_huge_authorization_header_is_refused_cleanly(clients, redis):
    before = snapshot(redis)
    # Within the head limit: a 401 like any malformed token.
    assert_401(clients.api.request("GET", "/v1/queues", headers={"Authorization": "Bearer " + "x" * 12000}), invalid=True)
    # Past the 16 KiB head limit: 431, and the API keeps serving.
    status, _, data = clients.api.request("GET", "/v1/queues", headers={"Authorization": "Bearer " + "x" * 40000})
    assert status == 431, (status, data)
    assert clients.call("alice", "GET", "/v1/queues")[0] == 200
    assert snapshot(redis) == before


def test_token_in_the_url_is_refused_even_when_valid(clients, redis):
    before = snapshot(redis)
    token = clients.tokens["alice"]
    for path in [f"/v1/queues?access_token={token}", f"/v1/queues/shared/jobs?token={token}"]:
        method = "POST" if path.startswith("/v1/queues/shared/jobs") else "GET"
        status, _, data = clients.api.request(method, path, body=json.dumps({"type": "noop"}) if method == "POST" else None)
        assert status == 400 and data["error"]["code"] == "token_in_url", (status, data)
        # Also with a valid header: the URL is already in some log.
        status, _, data = clients.api.request(method, path, headers=clients.as_("alice"),
                                              body=json.dumps({"type": "noop"}) if method == "POST" else None)
        assert status == 400 and data["error"]["code"] == "token_in_url", (status, data)
    assert snapshot(redis) == before
    # Never written to the log, though the access log is on.
    assert token not in clients.api.output()


def test_scopes(clients, redis):
    job = clients.enqueue("alice", "shared", {"type": "noop"})
    before = snapshot(redis)
    # read only: cannot enqueue, cancel or retry.
    assert_403(clients.call("reader", "POST", "/v1/queues/shared/jobs", {"type": "noop"}), "reader", "enqueue")
    assert_403(clients.call("reader", "POST", f"/v1/jobs/{job['id']}/cancel"), "enqueue")
    # enqueue/read: no queue administration, no workers, no metrics.
    for method, path in [("POST", "/v1/queues/shared/pause"), ("POST", "/v1/queues/shared/resume"),
                         ("DELETE", "/v1/queues/shared"), ("DELETE", "/v1/queues/shared/dead"),
                         ("POST", "/v1/queues/shared/dead/retry"), ("GET", "/v1/workers"), ("GET", "/metrics")]:
        assert_403(clients.call("alice", method, path), "alice")
    # metrics: only /metrics.
    status, headers, body = clients.call("scraper", "GET", "/metrics")
    assert status == 200 and "spool_http_requests_total" in body
    assert_403(clients.call("scraper", "GET", "/v1/queues"), "scraper", "read")
    assert_403(clients.call("scraper", "POST", "/v1/queues/shared/jobs", {"type": "noop"}))
    assert snapshot(redis) == before
    # admin: everything.
    assert clients.call("ops", "GET", "/metrics")[0] == 200
    assert clients.call("ops", "GET", "/v1/workers")[0] == 200
    assert clients.call("ops", "POST", "/v1/queues/shared/pause")[0] == 200
    assert clients.call("ops", "POST", "/v1/queues/shared/resume")[0] == 200
    # Refusals are counted by reason.
    metrics = clients.call("ops", "GET", "/metrics")[2]
    assert 'spool_api_auth_denied_total{reason="scope"} 11' in metrics, [l for l in metrics.splitlines() if "denied" in l]
    assert "spool_api_auth_clients 6" in metrics


def test_queues_a_client_may_not_use(clients, redis):
    clients.enqueue("ops", "other", {"type": "noop"})
    clients.enqueue("alice", "alice-1", {"type": "noop"})
    before = snapshot(redis)
    assert_403(clients.call("bob", "POST", "/v1/queues/alice-1/jobs", {"type": "noop"}), "bob", "alice-1")
    assert_403(clients.call("bob", "GET", "/v1/queues/alice-1"), "alice-1")
    assert_403(clients.call("bob", "GET", "/v1/queues/alice-1/dead"), "alice-1")
    # An admin of alice-* only administers those, and cannot list every queue's workers.
    assert_403(clients.call("alice-admin", "POST", "/v1/queues/shared/pause"), "shared")
    assert_403(clients.call("alice-admin", "GET", "/v1/workers"), "every queue")
    assert snapshot(redis) == before
    # Listings show only the client's queues.
    names = lambda cid: [q["name"] for q in clients.call(cid, "GET", "/v1/queues")[2]["queues"]]
    assert names("bob") == []  # shared has no job yet
    assert names("alice") == ["alice-1"]
    assert names("ops") == ["alice-1", "other"]
    assert names("alice-admin") == ["alice-1"]


def test_each_client_sees_only_its_own_jobs_on_every_route(clients, redis, spawn):
    a = clients.enqueue("alice", "shared", {"type": "noop", "idempotency_key": "k1"})
    b = clients.enqueue("bob", "shared", {"type": "noop", "idempotency_key": "k1"})
    # One idempotency key, two clients: two jobs, each keeps its key.
    assert a["id"] != b["id"]
    assert a["client"] == "alice" and b["client"] == "bob"
    assert a["idempotency_key"] == "k1" and b["idempotency_key"] == "k1"
    # The same client and key again: its own job, not the other's.
    status, _, again = clients.call("bob", "POST", "/v1/queues/shared/jobs", {"type": "noop", "idempotency_key": "k1"})
    assert status == 200 and again["id"] == b["id"], (status, again)

    before = snapshot(redis)
    for job, owner, other in [(a, "alice", "bob"), (b, "bob", "alice")]:
        jid = job["id"]
        for method, path in [("GET", f"/v1/jobs/{jid}"), ("GET", f"/v1/jobs/{jid}/result"),
                             ("GET", f"/v1/jobs/{jid}/events"),
                             ("GET", f"/v1/jobs/{jid}?wait=2"), ("GET", f"/v1/jobs/{jid}/result?wait=2"),
                             ("POST", f"/v1/jobs/{jid}/cancel"), ("POST", f"/v1/jobs/{jid}/retry")]:
            t0 = time.monotonic()
            status, _, data = clients.call(other, method, path)
            # 404 as for a job that does not exist: ids reveal nothing.
            assert status == 404 and data["error"]["code"] == "not_found", (other, method, path, status, data)
            assert time.monotonic() - t0 < 1.5, "a wait on someone else's job must not wait"
        assert clients.call(owner, "GET", f"/v1/jobs/{jid}")[0] == 200
        assert clients.call("ops", "GET", f"/v1/jobs/{jid}")[0] == 200
    # A client with read on the queue but not the owner: 404 too.
    assert clients.call("reader", "GET", f"/v1/jobs/{a['id']}")[0] == 404
    # An admin of other queues does not see jobs of shared.
    assert clients.call("alice-admin", "GET", f"/v1/jobs/{a['id']}")[0] == 404
    assert snapshot(redis) == before

    # The owner may cancel its own job; then the dead and finished views follow the same rule.
    status, _, cancelled = clients.call("alice", "POST", f"/v1/jobs/{a['id']}/cancel")
    assert status == 200 and cancelled["state"] == "cancelled", cancelled

    # Dead lists: run both jobs of a second pair to death, then look.
    da = clients.enqueue("alice", "shared", {"type": "fail", "max_attempts": 1})
    db = clients.enqueue("bob", "shared", {"type": "fail", "max_attempts": 1})
    spawn.worker(queues="shared")
    for j in (da, db):
        wait_for(lambda: clients.call("ops", "GET", f"/v1/jobs/{j['id']}")[2]["state"] == "dead", timeout=20,
                 what="the failing job to die")
    dead = lambda cid: [j["id"] for j in clients.call(cid, "GET", "/v1/queues/shared/dead")[2]["jobs"]]
    assert dead("alice") == [da["id"]]
    assert dead("bob") == [db["id"]]
    assert sorted(dead("ops")) == sorted([da["id"], db["id"]])
    # Retry follows the rule: bob cannot retry alice's dead job, alice can.
    assert clients.call("bob", "POST", f"/v1/jobs/{da['id']}/retry")[0] == 404
    status, _, retried = clients.call("alice", "POST", f"/v1/jobs/{da['id']}/retry")
    assert status == 200 and retried["state"] in ("queued", "running", "dead"), retried
    # A long-poll on its own job is answered when the job ends.
    ok = clients.enqueue("bob", "shared", {"type": "echo", "payload": {"n": 1}})
    status, _, done = clients.call("bob", "GET", f"/v1/jobs/{ok['id']}?wait=10")
    assert status == 200 and done["state"] == "succeeded", done


def test_revoked_and_rotated_tokens(clients):
    assert clients.call("bob", "GET", "/v1/queues")[0] == 200
    old = clients.tokens["bob"]
    # Rotation: a new token for bob, the old one removed; the file is re-read within about a second.
    clients.tokens["bob"], clients.entries["bob"] = make_token("bob", ["enqueue", "read"], ["shared"])
    clients.write()
    wait_for(lambda: clients.call("bob", "GET", "/v1/queues")[0] == 200, timeout=5, what="the new token to work")
    assert_401(clients.api.request("GET", "/v1/queues", headers={"Authorization": f"Bearer {old}"}), invalid=True)
    # Revocation by SIGHUP: bob is gone at once (no waiting for the watch).
    entries = {k: v for k, v in clients.entries.items() if k != "bob"}
    clients.path.write_text(json.dumps({"clients": list(entries.values())}))
    clients.api.signal(signal.SIGHUP)
    wait_for(lambda: clients.call("bob", "GET", "/v1/queues")[0] == 401, timeout=2, what="bob's token to be refused")
    assert clients.api.alive()
    assert "auth file loaded" in clients.api.output()


def test_a_broken_auth_file_keeps_the_clients_in_force(clients):
    clients.path.write_text('{"clients": [{"id": "x", "token_sha256": "nothex"}]}')
    clients.api.signal(signal.SIGHUP)
    wait_for(lambda: "auth file not used" in clients.api.output(), timeout=5, what="the error to be logged")
    assert "token_sha256" in clients.api.output()
    assert clients.call("alice", "GET", "/v1/queues")[0] == 200
    metrics = clients.call("ops", "GET", "/metrics")[2]
    assert "spool_api_auth_file_errors_total 1" in metrics
    # Repaired: in force again, without a restart.
    clients.write()
    wait_for(lambda: clients.api.output().count("auth file loaded") >= 1, timeout=5, what="the file to be loaded again")
    assert clients.call("bob", "GET", "/v1/queues")[0] == 200


def test_near_miss_tokens_take_as_long_as_random_ones(clients):
    """Valid-versus-invalid prefixes: a token that shares all but its last
    character with a real one is refused in the same time as a random one.
    Medians of interleaved samples, compared within the machine's noise."""
    real = clients.tokens["alice"]
    near = real[:-1] + ("A" if real[-1] != "A" else "B")
    far = "spool_" + "Z" * (len(real) - 6)
    times = {"near": [], "far": []}
    for i in range(400):
        for name, tok in (("near", near), ("far", far)):
            t0 = time.perf_counter()
            status = clients.api.request("GET", "/v1/queues", headers={"Authorization": f"Bearer {tok}"})[0]
            times[name].append(time.perf_counter() - t0)
            assert status == 401
    near_ms, far_ms = statistics.median(times["near"]) * 1000, statistics.median(times["far"]) * 1000
    assert abs(near_ms - far_ms) < max(0.2, 0.25 * far_ms), (near_ms, far_ms)


def test_secure_by_default(tmp_path, redis):
    def start(env):
        port = free_port()
        e = {"REDIS_URL": redis.url, "SPOOL_API_ADDR": f"0.0.0.0:{port}", "SPOOL_API_THREADS": "1", "PATH": os.environ["PATH"]}
        if redis.url.startswith("rediss://"):
            e.update(EXTRA_ENV)
        e.update(env)
        return subprocess.Popen([str(BIN_DIR / "spool-api")], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), port

    # Reachable from other machines with no auth file: refuses to start, and says why.
    p, _ = start({})
    out, err = p.communicate(timeout=10)
    assert p.returncode == 2, (out, err)
    assert "SPOOL_AUTH_FILE" in err and "SPOOL_AUTH=none" in err, err
    # tokens without a file; none with a file; a file that is not valid.
    p, _ = start({"SPOOL_AUTH": "tokens"})
    assert p.wait(10) == 2 and "SPOOL_AUTH_FILE" in p.stderr.read()
    bad = tmp_path / "bad.json"
    bad.write_text('{"clients": [{"id": "a", "token_sha256": "' + "0" * 64 + '", "scopes": ["reed"], "queues": ["*"]}]}')
    p, _ = start({"SPOOL_AUTH_FILE": str(bad)})
    assert p.wait(10) == 2
    err = p.stderr.read()
    assert "clients[0].scopes" in err and "reed" in err, err
    p, _ = start({"SPOOL_AUTH": "none", "SPOOL_AUTH_FILE": str(bad)})
    assert p.wait(10) == 2 and "contradict" in p.stderr.read()
    # Said explicitly: starts, open, with a warning in its log.
    p, port = start({"SPOOL_AUTH": "none"})
    try:
        api = API.__new__(API)
        api.port, api.ssl_context = port, None
        wait_for(lambda: p.poll() is None and api.get("/readyz")[0] == 200, timeout=10, what="the open API to be ready")
        assert api.get("/v1/queues")[0] == 200
    finally:
        p.terminate()
        out, _ = p.communicate(timeout=10)
    assert "authentication is off" in out


def test_tokens_are_never_logged(clients, spawn):
    job = clients.enqueue("alice", "shared", {"type": "echo", "payload": {}})
    clients.call("bob", "GET", f"/v1/jobs/{job['id']}")
    clients.api.request("GET", "/v1/queues", headers={"Authorization": "Bearer spool_guessed_token"})
    clients.api.request("GET", "/metrics", headers=clients.as_("scraper"))
    out = clients.api.output()
    assert '"status":"404"' in out.replace(" ", "") or "404" in out  # the access log ran
    for token in list(clients.tokens.values()) + ["spool_guessed_token"]:
        assert token not in out


def test_max_pending_per_client(tmp_path, spawn, redis):
    c = Clients.__new__(Clients)
    c.path = tmp_path / "clients.json"
    c.tokens, c.entries = {}, {}
    c.tokens["flood"], c.entries["flood"] = make_token("flood", ["enqueue", "read"], ["shared"], max_pending=3)
    c.tokens["calm"], c.entries["calm"] = make_token("calm", ["enqueue", "read"], ["shared"])
    c.write()
    c.api = spawn.api(env={"SPOOL_AUTH_FILE": str(c.path)})
    jobs = [c.enqueue("flood", "shared", {"type": "echo", "payload": {"i": i}}) for i in range(3)]
    before = snapshot(redis)
    status, headers, data = c.call("flood", "POST", "/v1/queues/shared/jobs", {"type": "noop"})
    assert status == 429 and data["error"]["code"] == "client_quota", (status, data)
    assert "flood" in data["error"]["message"] and "3" in data["error"]["message"]
    assert "retry-after" in headers
    assert snapshot(redis) == before
    # Another client's jobs in the same queue are not held back by it.
    for i in range(5):
        c.enqueue("calm", "shared", {"type": "noop"})
    # A cancelled job frees its place; a batch that would cross the limit stores nothing.
    assert c.call("flood", "POST", f"/v1/jobs/{jobs[0]['id']}/cancel")[0] == 200
    status, _, data = c.call("flood", "POST", "/v1/queues/shared/jobs/batch", {"jobs": [{"type": "noop"}, {"type": "noop"}]})
    assert status == 429 and data["error"]["code"] == "client_quota", (status, data)
    c.enqueue("flood", "shared", {"type": "noop"})
    # Jobs that finish free their places too.
    spawn.worker(queues="shared")
    for j in jobs[1:]:
        wait_for(lambda: c.call("flood", "GET", f"/v1/jobs/{j['id']}")[2]["state"] == "succeeded", timeout=20,
                 what="the job to succeed")
    wait_for(lambda: c.call("flood", "POST", "/v1/queues/shared/jobs/batch",
                            {"jobs": [{"type": "noop"}, {"type": "noop"}, {"type": "noop"}]})[0] == 201,
             timeout=20, what="the client's places to come back as its jobs finish")


def test_max_pending_holds_for_retries_of_dead_jobs(tmp_path, spawn, redis):
    """Jobs that die free their places; retrying them takes places again, and
    past max_pending a retry is refused (429) and the job stays dead."""
    c = Clients.__new__(Clients)
    c.path = tmp_path / "clients.json"
    c.tokens, c.entries = {}, {}
    c.tokens["flood"], c.entries["flood"] = make_token("flood", ["enqueue", "read"], ["shared"], max_pending=2)
    c.write()
    c.api = spawn.api(env={"SPOOL_AUTH_FILE": str(c.path)})
    dead = [c.enqueue("flood", "shared", {"type": "fail", "max_attempts": 1}) for _ in range(2)]
    w = spawn.worker(queues="shared")
    for j in dead:
        wait_for(lambda: c.call("flood", "GET", f"/v1/jobs/{j['id']}")[2]["state"] == "dead", timeout=20, what="death")
    w.stop()
    held = [c.enqueue("flood", "shared", {"type": "noop"}) for _ in range(2)]  # both places taken again
    before = snapshot(redis)
    status, _, data = c.call("flood", "POST", f"/v1/jobs/{dead[0]['id']}/retry")
    assert status == 429 and data["error"]["code"] == "client_quota", (status, data)
    assert snapshot(redis) == before
    assert c.call("flood", "GET", f"/v1/jobs/{dead[0]['id']}")[2]["state"] == "dead"
    assert c.call("flood", "POST", f"/v1/jobs/{held[0]['id']}/cancel")[0] == 200
    status, _, data = c.call("flood", "POST", f"/v1/jobs/{dead[0]['id']}/retry")
    assert status == 200 and data["state"] == "queued", (status, data)


def test_limits_need_a_client_of_every_queue_and_groups_its_queue(clients, redis):
    """A limit is shared by every queue and tenant that names it: reading
    one needs read on `*`, changing one admin on `*`. A queue's groups need
    the queue."""
    clients.enqueue("alice", "alice-1", {"type": "noop", "group": "t1"})
    before = snapshot(redis)
    assert_403(clients.call("alice", "GET", "/v1/limits"), "every queue")
    assert_403(clients.call("alice-admin", "PUT", "/v1/limits/openai", {"concurrency": 1}), "every queue")
    assert_403(clients.call("alice-admin", "DELETE", "/v1/limits/openai"), "every queue")
    assert_403(clients.call("bob", "GET", "/v1/queues/alice-1/groups"), "alice-1")
    assert snapshot(redis) == before
    status, _, data = clients.call("ops", "PUT", "/v1/limits/openai", {"concurrency": 1})
    assert status == 201, data
    assert clients.call("ops", "GET", "/v1/limits/openai")[2]["concurrency"] == 1
    status, _, data = clients.call("alice", "GET", "/v1/queues/alice-1/groups")
    assert status == 200 and data["groups"] == [{"group": "t1", "pending": 1}], data
    assert clients.call("ops", "DELETE", "/v1/limits/openai")[0] == 200


def test_event_streams_follow_tokens_and_isolation(clients):
    """A job's stream is another job route (owner or admin, else 404); a queue's
    stream shows a client without admin only its own jobs."""
    def follow(cid, path):
        """Opens a stream on a raw socket, as the client `cid`."""
        s = socket.create_connection(("127.0.0.1", clients.api.port), timeout=5)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {clients.tokens[cid]}\r\n\r\n".encode())
        return s

    def drain(s, seconds):
        """Reads the stream for `seconds`; returns its events' data."""
        s.settimeout(0.2)
        got, end = b"", time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = s.recv(65536)
            except socket.timeout:
                continue
            if not data:
                break
            got += data
        s.close()
        return [json.loads(l[6:]) for l in got.decode().splitlines() if l.startswith("data: ")]

    alice_view, ops_view = follow("alice", "/v1/queues/shared/events"), follow("ops", "/v1/queues/shared/events")
    time.sleep(0.5)
    a = clients.enqueue("alice", "shared", {"type": "noop"})
    b = clients.enqueue("bob", "shared", {"type": "noop"})
    assert [e["id"] for e in drain(alice_view, 1.0)] == [a["id"]]
    assert sorted(e["id"] for e in drain(ops_view, 0.2)) == sorted([a["id"], b["id"]])
    # Job streams: the owner and an admin; for anyone else no such job.
    assert clients.call("bob", "GET", f"/v1/jobs/{a['id']}/events")[0] == 404
    assert clients.call("reader", "GET", f"/v1/jobs/{a['id']}/events")[0] == 404
    assert clients.call("scraper", "GET", f"/v1/jobs/{a['id']}/events")[0] == 403
    assert clients.call("bob", "GET", "/v1/queues/alice-1/events")[0] == 403
    s = follow("alice", f"/v1/jobs/{a['id']}/events")
    first = drain(s, 0.5)
    assert first and first[0]["state"] == "queued", first
