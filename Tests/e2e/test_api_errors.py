"""HTTP API error handling: every error code, its body shape, and that a
rejected request never changes anything in Redis."""
import http.client
import json
import time

import pytest

from harness import API, Redis, wait_for
from helpers import assert_error, raw_http, redis_snapshot


@pytest.fixture(scope="module")
def stack():
    """One Redis and one API for the many bad-request cases below. Each case
    compares Redis before and after its own request, so cases do not depend on
    each other; a job is stored first so that the queue's keys exist."""
    r = Redis()
    api = API(r.url)
    seeded = api.enqueue("q", {"type": "noop", "payload": {"seed": True}})
    yield r, api, seeded
    api.stop()
    r.cleanup()


def post_unchanged(stack, path, body, headers=None):
    """POSTs and asserts that Redis is exactly as before; returns the response."""
    r, api, _ = stack
    before = redis_snapshot(r)
    resp = api.post(path, body, headers=headers)
    after = redis_snapshot(r)
    assert after == before, f"rejected request to {path} changed Redis: {resp!r}"
    return resp


# -- invalid JSON --------------------------------------------------------------

BAD_JSON = {
    "empty body": b"",
    "whitespace only": b"   \n",
    "truncated object": b'{"type": "noop", "payload": {"a": 1}',
    "truncated string": b'{"type": "no',
    "truncated literal": b'{"type": "noop", "payload": tru',
    "invalid utf-8 in a string": b'{"type": "noop", "payload": "\xff\xfe\xfd"}',
    "invalid utf-8 continuation": b'{"type": "noop", "payload": "caf\xc3"}',
    "overlong utf-8 encoding": b'{"type": "noop", "payload": "\xc0\xaf"}',
    "utf-8 outside strings": b'{"type": "noop", \xff "payload": 1}',
    "trailing garbage": b'{"type": "noop"} x',
    "two documents": b'{"type": "noop"}{"type": "noop"}',
    "trailing comma": b'{"type": "noop",}',
    "single quotes": b"{'type': 'noop'}",
    "unquoted key": b'{type: "noop"}',
    "raw control character": b'{"type": "noop", "payload": "a\x01b"}',
    "lone surrogate escape": b'{"type": "noop", "payload": "\\ud800"}',
    "bad escape": b'{"type": "noop", "payload": "\\q"}',
    "leading zero number": b'{"type": "noop", "max_attempts": 01}',
    "NaN": b'{"type": "noop", "payload": NaN}',
    "deep nesting 1000 levels (arrays)": b'{"type": "noop", "payload": ' + b"[" * 1000 + b"]" * 1000 + b"}",
    "deep nesting 1000 levels (objects)": b'{"type": "noop", "payload": ' + b'{"a":' * 1000 + b"1" + b"}" * 1000 + b"}",
    "deep nesting 1000 levels unclosed": b"[" * 1000,
}


@pytest.mark.parametrize("body", list(BAD_JSON.values()), ids=list(BAD_JSON.keys()))
def test_invalid_json_is_400_invalid_json(stack, body):
    resp = post_unchanged(stack, "/v1/queues/q/jobs", body)
    assert_error(resp, 400, "invalid_json")


@pytest.mark.parametrize("body", [BAD_JSON["truncated object"], BAD_JSON["invalid utf-8 in a string"],
                                  BAD_JSON["deep nesting 1000 levels (arrays)"]],
                         ids=["truncated", "invalid utf-8", "deep nesting"])
def test_invalid_json_in_batch_is_400_invalid_json(stack, body):
    batch = b'{"jobs": [' + body + b"]}"
    resp = post_unchanged(stack, "/v1/queues/q/jobs/batch", batch)
    assert_error(resp, 400, "invalid_json")


def test_api_still_serves_after_deep_nesting(stack):
    _, api, seeded = stack
    post_unchanged(stack, "/v1/queues/q/jobs", b"[" * 100000 + b"]" * 100000)
    assert api.get("/healthz")[0] == 200
    assert api.job(seeded["id"])["id"] == seeded["id"]


# -- invalid fields ------------------------------------------------------------

NUMERIC_FIELDS = ["max_attempts", "timeout_ms", "backoff_ms", "result_ttl_s", "delay_ms"]
WRONG_NUMBERS = {  # raw JSON text of the value
    "string": '"5"',
    "fraction": "1.5",
    "whole fraction": "5.0",
    "exponent": "1e3",
    "boolean": "true",
    "array": "[5]",
    "object": '{"n": 5}',
    "negative": "-1",
    "too big for int64": "1" + "0" * 30,
}


@pytest.mark.parametrize("field", NUMERIC_FIELDS)
@pytest.mark.parametrize("value", list(WRONG_NUMBERS.values()), ids=list(WRONG_NUMBERS.keys()))
def test_wrong_type_or_range_for_numeric_field(stack, field, value):
    body = ('{"type": "noop", "%s": %s}' % (field, value)).encode()
    resp = post_unchanged(stack, "/v1/queues/q/jobs", body)
    assert_error(resp, 400, "invalid_field", mentions=[field])


@pytest.mark.parametrize("field,value", [
    ("max_attempts", 0), ("max_attempts", 1001), ("timeout_ms", 0), ("result_ttl_s", 0),
    ("backoff_ms", 3_600_001), ("delay_ms", 31_536_000_001),
])
def test_numeric_field_out_of_range(stack, field, value):
    resp = post_unchanged(stack, "/v1/queues/q/jobs", {"type": "noop", field: value})
    assert_error(resp, 400, "invalid_field", mentions=[field])


@pytest.mark.parametrize("value", [1, 1000])
def test_max_attempts_bounds_are_accepted(stack, value):
    _, api, _ = stack
    job = api.enqueue("bounds", {"type": "noop", "max_attempts": value})
    assert job["max_attempts"] == value


@pytest.mark.parametrize("body,field", [
    ({"type": "noop", "max_attempt": 3}, "max_attempt"),
    ({"type": "noop", "Payload": 1}, "Payload"),
    ({"type": "noop", "queue": "other"}, "queue"),
    ({"type": "noop", "id": "q~01M81Z6DCKPEWCQ0EMEH1QYQ42"}, "id"),
    ({"type": "noop", "state": "succeeded"}, "state"),
], ids=["typo", "case", "queue", "id", "state"])
def test_unknown_field_is_rejected(stack, body, field):
    resp = post_unchanged(stack, "/v1/queues/q/jobs", body)
    assert_error(resp, 400, "invalid_field", mentions=[field])


@pytest.mark.parametrize("body", [
    {},
    {"payload": 1},
    {"type": None},
    {"type": 5},
    {"type": ""},
    {"type": "has space"},
    {"type": "slash/type"},
    {"type": "emoji-\u2603"},
    {"type": "t" * 129},
], ids=["missing", "missing with payload", "null", "number", "empty", "space", "slash", "non-ascii", "129 chars"])
def test_bad_type_is_rejected(stack, body):
    resp = post_unchanged(stack, "/v1/queues/q/jobs", body)
    assert_error(resp, 400, "invalid_field", mentions=["type"])


def test_type_of_128_chars_with_all_allowed_characters_is_accepted(stack):
    _, api, _ = stack
    t = ("Az09_.:-" * 16)[:128]
    assert api.enqueue("q2", {"type": t})["type"] == t


@pytest.mark.parametrize("body,field", [
    ({"type": "noop", "priority": "critical"}, "priority"),
    ({"type": "noop", "priority": "URGENT"}, "priority"),
    ({"type": "noop", "priority": 1}, "priority"),
    ({"type": "noop", "run_at": "tomorrow"}, "run_at"),
    ({"type": "noop", "run_at": "2026-13-01T00:00:00Z"}, "run_at"),
    ({"type": "noop", "run_at": "2026-01-01T00:00:00Z", "delay_ms": 10}, "run_at"),
    ({"type": "noop", "idempotency_key": ""}, "idempotency_key"),
    ({"type": "noop", "idempotency_key": 7}, "idempotency_key"),
    ({"type": "noop", "idempotency_key": "k" * 201}, "idempotency_key"),
])
def test_other_bad_fields_are_rejected(stack, body, field):
    resp = post_unchanged(stack, "/v1/queues/q/jobs", body)
    assert_error(resp, 400, "invalid_field", mentions=[field])


@pytest.mark.parametrize("body", [b"[]", b'"job"', b"42", b"null", b'[{"type": "noop"}]'],
                         ids=["array", "string", "number", "null", "array of jobs"])
def test_body_that_is_not_an_object_is_rejected(stack, body):
    resp = post_unchanged(stack, "/v1/queues/q/jobs", body)
    assert resp[0] == 400 and resp[2]["error"]["code"] in ("invalid_field", "invalid_json"), resp


@pytest.mark.parametrize("queue", ["bad!name", "a~b", "a%20b", "x" * 65, "caf%C3%A9", "%FF", "a:b"],
                         ids=["bang", "tilde", "space", "65 chars", "non-ascii", "bad percent", "colon"])
def test_bad_queue_name_is_rejected(stack, queue):
    resp = post_unchanged(stack, f"/v1/queues/{queue}/jobs", {"type": "noop"})
    assert_error(resp, 400, "invalid_field", mentions=["queue"])
    resp = post_unchanged(stack, f"/v1/queues/{queue}/jobs/batch", {"jobs": [{"type": "noop"}]})
    assert_error(resp, 400, "invalid_field", mentions=["queue"])


def test_queue_name_of_64_allowed_chars_is_accepted(stack):
    _, api, _ = stack
    name = ("Az09_.-" * 10)[:64]
    job = api.enqueue(name, {"type": "noop"})
    assert job["queue"] == name
    assert api.job(job["id"])["queue"] == name


# -- batches ---------------------------------------------------------------------

def test_batch_with_bad_item_at_index_2_stores_nothing(stack):
    r, api, _ = stack
    jobs = [{"type": "noop"}, {"type": "echo", "payload": {"i": 1}}, {"type": "bad type!"}, {"type": "noop"}]
    resp = post_unchanged(stack, "/v1/queues/q/jobs/batch", {"jobs": jobs})
    assert_error(resp, 400, "invalid_field", mentions=["jobs[2]", "type"])
    # Also for a fresh queue: not even its keys or its name may appear.
    resp = post_unchanged(stack, "/v1/queues/fresh-batch/jobs/batch", {"jobs": jobs})
    assert_error(resp, 400, "invalid_field", mentions=["jobs[2]"])
    assert not [k for k in r.keys() if "fresh-batch" in k]
    names = [q["name"] for q in api.get("/v1/queues")[2]["queues"]]
    assert "fresh-batch" not in names


@pytest.mark.parametrize("jobs,mention", [
    ([{"type": "noop"}, {"type": "noop", "max_attempts": 0}], "jobs[1].max_attempts"),
    ([{"type": "noop"}, {"type": "noop"}, {"type": "noop", "bogus": 1}], "jobs[2].bogus"),
    ([{"type": "noop"}, "not an object"], "jobs[1]"),
    ([{"payload": 1}], "jobs[0].type"),
])
def test_batch_error_names_the_first_bad_index(stack, jobs, mention):
    resp = post_unchanged(stack, "/v1/queues/q/jobs/batch", {"jobs": jobs})
    assert_error(resp, 400, "invalid_field", mentions=[mention])


def test_batch_with_two_bad_items_names_the_first(stack):
    jobs = [{"type": "noop"}, {"type": "bad!"}, {"type": "noop"}, {"type": "worse!"}]
    resp = post_unchanged(stack, "/v1/queues/q/jobs/batch", {"jobs": jobs})
    err = assert_error(resp, 400, "invalid_field", mentions=["jobs[1]"])
    assert "jobs[3]" not in err["message"]


@pytest.mark.parametrize("body", [
    {"jobs": []},
    {"jobs": [{"type": "noop"}] * 1001},
    {},
    {"jobs": {"type": "noop"}},
    {"jobs": [{"type": "noop"}], "extra": 1},
], ids=["empty", "1001 jobs", "no jobs field", "jobs not an array", "unknown top-level field"])
def test_bad_batch_shape_is_rejected(stack, body):
    resp = post_unchanged(stack, "/v1/queues/q/jobs/batch", body)
    assert_error(resp, 400, "invalid_field")


def test_batch_of_1000_is_accepted(stack):
    _, api, _ = stack
    status, _, data = api.post("/v1/queues/big/jobs/batch", {"jobs": [{"type": "noop", "payload": i} for i in range(1000)]})
    assert status == 201, data
    assert [j["payload"] for j in data["jobs"]] == list(range(1000))
    assert len({j["id"] for j in data["jobs"]}) == 1000


# -- routes, methods, ids --------------------------------------------------------

@pytest.mark.parametrize("method,path,allow", [
    ("DELETE", "/v1/jobs/q~01M81Z6DCKPEWCQ0EMEH1QYQ42", "GET"),
    ("POST", "/v1/jobs/q~01M81Z6DCKPEWCQ0EMEH1QYQ42", "GET"),
    ("PUT", "/v1/jobs/q~01M81Z6DCKPEWCQ0EMEH1QYQ42/result", "GET"),
    ("GET", "/v1/queues/q/jobs", "POST"),
    ("PUT", "/v1/queues/q/jobs", "POST"),
    ("GET", "/v1/queues/q/jobs/batch", "POST"),
    ("POST", "/v1/queues", "GET"),
    ("POST", "/healthz", "GET"),
    ("DELETE", "/readyz", "GET"),
])
def test_wrong_method_is_405_with_allow(stack, method, path, allow):
    r, api, _ = stack
    before = redis_snapshot(r)
    resp = api.request(method, path, body=b'{"type": "noop"}')
    assert redis_snapshot(r) == before
    assert_error(resp, 405, "method_not_allowed")
    assert resp[1].get("allow") == allow, resp[1]


@pytest.mark.parametrize("method,path", [
    ("GET", "/"),
    ("GET", "/nope"),
    ("GET", "/v2/queues"),
    ("GET", "/v1"),
    ("GET", "/v1/queues/q/nothing"),
    ("POST", "/v1/queues/q/job"),
    ("POST", "/v1/queues/q/jobs/batch/more"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/q~01M81Z6DCKPEWCQ0EMEH1QYQ42/result/x"),
    ("POST", "/v1/queues/q/jobs/bulk"),
])
def test_unknown_route_is_404(stack, method, path):
    r, api, _ = stack
    before = redis_snapshot(r)
    resp = api.request(method, path, body=b'{"type": "noop"}' if method == "POST" else None)
    assert redis_snapshot(r) == before
    assert_error(resp, 404, "not_found")


@pytest.mark.parametrize("job_id", [
    "garbage", "q~short", "q~01M81Z6DCKPEWCQ0EMEH1QYQ4", "q~01M81Z6DCKPEWCQ0EMEH1QYQ42X",
    "q~01M81Z6DCKPEWCQ0EMEH1QYQIL", "bad!q~01M81Z6DCKPEWCQ0EMEH1QYQ42", "~01M81Z6DCKPEWCQ0EMEH1QYQ42",
    "01M81Z6DCKPEWCQ0EMEH1QYQ42", "q~" + "0" * 200, "%FF%FE",
], ids=["word", "short", "25 chars", "27 chars", "letters I and L", "bad queue", "no queue", "no separator",
        "very long", "bad percent"])
def test_malformed_job_id_is_404(stack, job_id):
    _, api, _ = stack
    assert_error(api.get(f"/v1/jobs/{job_id}"), 404, "not_found")
    assert_error(api.get(f"/v1/jobs/{job_id}/result"), 404, "not_found")


def test_unknown_valid_looking_job_id_is_404(stack):
    _, api, seeded = stack
    # Same queue, same shape as a real id, never enqueued.
    fake = seeded["id"][:-1] + ("0" if seeded["id"][-1] != "0" else "1")
    assert_error(api.get(f"/v1/jobs/{fake}"), 404, "not_found")
    assert_error(api.get(f"/v1/jobs/{fake}/result"), 404, "not_found")
    assert_error(api.get("/v1/jobs/never-used-queue~01M81Z6DCKPEWCQ0EMEH1QYQ42"), 404, "not_found")
    # The real one is found, also with its '~' percent-encoded.
    assert api.get(f"/v1/jobs/{seeded['id']}")[0] == 200
    assert api.get("/v1/jobs/" + seeded["id"].replace("~", "%7E"))[2]["id"] == seeded["id"]


# -- body size -------------------------------------------------------------------

def test_oversized_body_head_only_is_413(stack):
    """A client that announces a body over the limit gets 413 right after the head."""
    r, api, seeded = stack
    before = redis_snapshot(r)
    status, headers, body = raw_http(api.port, b"POST /v1/queues/q/jobs HTTP/1.1\r\nHost: x\r\n"
                                               b"Content-Type: application/json\r\n"
                                               b"Content-Length: 2000000\r\n\r\n")
    assert status == 413, (status, body)
    err = json.loads(body)["error"]
    assert err["code"] == "payload_too_large" and err["message"]
    assert redis_snapshot(r) == before
    assert api.get("/healthz")[0] == 200
    assert api.job(seeded["id"])["id"] == seeded["id"]


def test_oversized_body_sent_whole_gets_413_not_a_reset(stack):
    """A plain client that sends its whole 4 MiB body (as curl or http.client
    do) must read the 413 answer; repeated, since a race decides it."""
    r, api, _ = stack
    body = b'{"type": "noop", "payload": "' + b"x" * (4 << 20) + b'"}'
    before = redis_snapshot(r)
    outcomes = []
    for _ in range(3):
        try:
            status, _, data = api.post("/v1/queues/q/jobs", body)
            outcomes.append((status, data["error"]["code"] if isinstance(data, dict) else data))
        except (ConnectionError, http.client.HTTPException) as e:
            outcomes.append(type(e).__name__)
    assert redis_snapshot(r) == before
    assert api.get("/healthz")[0] == 200, "API stopped serving after oversized bodies"
    assert outcomes == [(413, "payload_too_large")] * 3, outcomes


def test_body_limit_follows_spool_max_body_bytes(spawn, redis):
    api = spawn.api(env={"SPOOL_MAX_BODY_BYTES": "2048"})
    small = json.dumps({"type": "echo", "payload": "y" * 1900}).encode()
    assert len(small) <= 2048
    assert api.post("/v1/queues/q/jobs", small)[0] == 201
    before = redis_snapshot(redis)
    big = json.dumps({"type": "echo", "payload": "y" * 3000}).encode()
    assert_error(api.post("/v1/queues/q/jobs", big), 413, "payload_too_large")
    assert redis_snapshot(redis) == before
    # Still serves, on a new connection.
    assert api.post("/v1/queues/q/jobs", small)[0] == 201
    assert api.get("/healthz")[0] == 200


# -- Redis down ------------------------------------------------------------------

@pytest.mark.single_redis("stops and restarts the redis-server")
def test_redis_down_gives_503_then_recovers(spawn, redis):
    # Four event loops, each with its own connections and backoff.
    api = spawn.api(env={"SPOOL_API_THREADS": "4"})
    job = api.enqueue("q", {"type": "echo", "payload": {"before": True}})
    assert api.get("/readyz")[0] == 200

    redis.stop()
    wait_for(lambda: api.get("/readyz")[0] == 503, timeout=5, what="/readyz to answer 503")
    status, headers, data = api.get("/readyz")
    assert_error((status, headers, data), 503, "redis_unavailable")
    assert "retry-after" in headers, headers

    t0 = time.monotonic()
    resp = api.post("/v1/queues/q/jobs", {"type": "noop"})
    assert time.monotonic() - t0 < 5, "enqueue with Redis down did not answer promptly"
    assert_error(resp, 503, "redis_unavailable")
    assert int(resp[1]["retry-after"]) >= 0, resp[1]
    assert_error(api.get(f"/v1/jobs/{job['id']}"), 503, "redis_unavailable")
    assert_error(api.post("/v1/queues/q/jobs/batch", {"jobs": [{"type": "noop"}]}), 503, "redis_unavailable")
    assert_error(api.get("/v1/queues"), 503, "redis_unavailable")
    # Liveness does not depend on Redis.
    assert api.get("/healthz")[0] == 200
    # A bad request is still a 400, not a 503: validation comes first.
    assert_error(api.post("/v1/queues/q/jobs", b"{"), 400, "invalid_json")

    redis.start()  # same port, empty data (no persistence)
    wait_for(lambda: api.get("/readyz")[0] == 200, timeout=10, what="/readyz to recover")
    # Once one event loop's connection is back, every other loop's tries again
    # at once instead of waiting out its backoff (up to 1 s): a moment after
    # /readyz said 200, every request succeeds, whichever loop takes it.
    time.sleep(0.3)
    for i in range(20):
        status, _, new = api.post("/v1/queues/q/jobs", {"type": "echo", "payload": {"after": i}})
        assert status == 201, (i, status, new)
        assert api.job(new["id"])["state"] == "queued"
        assert api.get("/readyz")[0] == 200


@pytest.mark.single_redis("stops and restarts the redis-server")
def test_queue_is_listed_again_after_redis_restart(spawn, redis):
    """After Redis comes back empty, a queue that gets jobs again shows in
    GET /v1/queues (one event loop, so the same connection serves both enqueues)."""
    api = spawn.api(env={"SPOOL_API_THREADS": "1"})
    api.enqueue("reborn", {"type": "noop"})
    assert [q["name"] for q in api.get("/v1/queues")[2]["queues"]] == ["reborn"]

    redis.stop()
    wait_for(lambda: api.get("/readyz")[0] == 503, timeout=5, what="/readyz to answer 503")
    redis.start()
    wait_for(lambda: api.get("/readyz")[0] == 200, timeout=10, what="/readyz to recover")

    api.enqueue("reborn", {"type": "noop"})
    queues = api.get("/v1/queues")[2]["queues"]
    assert [(q["name"], q["pending_total"]) for q in queues] == [("reborn", 1)], queues


def test_enqueue_over_the_pending_limit_is_429_and_changes_nothing(spawn, redis):
    api = spawn.api(env={"SPOOL_MAX_PENDING": "2"})
    api.enqueue("limited", {"type": "noop"})
    api.enqueue("limited", {"type": "noop"})
    before = redis_snapshot(redis)
    resp = api.post("/v1/queues/limited/jobs", {"type": "noop"})
    assert_error(resp, 429, "queue_full")
    assert "retry-after" in resp[1]
    resp = api.post("/v1/queues/limited/jobs/batch", {"jobs": [{"type": "noop"}]})
    assert_error(resp, 429, "queue_full")
    assert redis_snapshot(redis) == before
    # A batch that alone crosses the limit of a queue never used before: refused
    # whole, and the queue must not appear anywhere.
    resp = api.post("/v1/queues/fresh-limited/jobs/batch", {"jobs": [{"type": "noop"}] * 3})
    assert_error(resp, 429, "queue_full")
    assert redis_snapshot(redis) == before, "a rejected (429) request changed Redis"
    assert "fresh-limited" not in [q["name"] for q in api.get("/v1/queues")[2]["queues"]]
