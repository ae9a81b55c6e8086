"""API fuzz: malformed requests over raw sockets while a well-behaved client works.

A seeded generator (so a failure can be replayed: CHAOS_FUZZ_SEED) builds
requests that must all be refused: malformed and truncated JSON, invalid UTF-8,
nesting 10,000 levels deep, huge numbers, wrong types, 100 KB strings, unknown
fields, bad queue names and job ids (percent-encoding, `..`, unicode), wrong
methods, heads over 16 KiB, oversized bodies, bad Content-Length, chunked
transfer-encoding, HTTP/0.9 and garbage request lines. Meanwhile 20 slow-loris
connections send a byte a second and 500 idle connections sit open.

Checked: the API never dies; every answer to a malformed request is a
well-formed HTTP response with a JSON body {"error":{"code","message"}} and the
4xx status that fits; the well-behaved client's p99 stays under 200 ms; Redis
holds nothing from a rejected request (all keys but the good client's queue are
compared before and after).

Also here: requests that stop half-way must get 408 within the read timeout, and
a worker given damaged job hashes fails them clearly and carries on.
"""
import json
import os
import random
import re
import select
import socket
import threading
import time

from harness import wait_for

READ_TIMEOUT_MS = 3000
GOOD_QUEUE = "good"
SEED = int(os.environ.get("CHAOS_FUZZ_SEED", "1122"))

# Keys of everything but the good client's queue, with their content, in one atomic read.
SNAPSHOT_LUA = """
local out = {}
for _, k in ipairs(redis.call('KEYS', '*')) do
  if not string.find(k, ARGV[1], 1, true) then
    local t = redis.call('TYPE', k)['ok']
    local v
    if t == 'string' then v = redis.call('GET', k)
    elseif t == 'list' then v = redis.call('LRANGE', k, 0, -1)
    elseif t == 'hash' then v = redis.call('HGETALL', k); table.sort(v)
    elseif t == 'set' then v = redis.call('SMEMBERS', k); table.sort(v)
    elseif t == 'zset' then v = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
    else v = t end
    out[#out + 1] = {k, t, v}
  end
end
return cjson.encode(out)
"""


def snapshot(rc):
    text = rc.call("EVAL", SNAPSHOT_LUA, 0, "{" + GOOD_QUEUE + "}")
    entries = json.loads(text) if text else []
    if isinstance(entries, dict):
        entries = []
    return sorted((k, t, json.dumps(v, sort_keys=True)) for k, t, v in entries)


# ---------------------------------------------------------------------------
# Raw HTTP

def exchange(port, data, timeout=8.0):
    """Sends `data`, reads until one whole response (by Content-Length) or EOF.
    Returns (raw bytes, error text or None)."""
    err = None
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError as e:  # the server may answer and stop reading before all is sent
            err = f"send: {e!r}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                err = "timeout waiting for the answer"
                break
            except OSError as e:
                err = f"recv: {e!r}"
                break
            if not chunk:
                break
            chunks.append(chunk)
            if response_complete(b"".join(chunks)):
                break
    return b"".join(chunks), err


def response_complete(raw):
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    return bool(m) and len(body) >= int(m.group(1))


def check_error_response(raw, allowed):
    """Problems with `raw` as an answer to a refused request (empty list = fine)."""
    if not raw:
        return ["no answer (connection closed without a response)"]
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return [f"no end of head: {raw[:120]!r}"]
    try:
        lines = head.decode("ascii").split("\r\n")
    except UnicodeDecodeError:
        return [f"non-ASCII response head: {head[:120]!r}"]
    m = re.fullmatch(r"HTTP/1\.[01] (\d{3}) [^\r\n]*", lines[0])
    if not m:
        return [f"bad status line {lines[0]!r}"]
    status = int(m.group(1))
    headers = {}
    for line in lines[1:]:
        if ":" not in line:
            return [f"bad header line {line!r}"]
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    problems = []
    if status not in allowed:
        problems.append(f"status {status}, expected one of {sorted(allowed)}: {body[:200]!r}")
    if allowed == {201}:
        # A request the fuzzer builds to be valid (a chunked body): it must be stored.
        try:
            if status == 201 and not json.loads(body.decode("utf-8")).get("id"):
                problems.append(f"201 without a job id: {body[:200]!r}")
        except (ValueError, AttributeError, UnicodeDecodeError) as e:
            problems.append(f"201 body is not a job ({e}): {body[:200]!r}")
        return problems
    if not (400 <= status < 500 or status in (501, 505)):
        problems.append(f"status {status} is neither 4xx, 501 nor 505")
    if "content-length" not in headers:
        problems.append("no Content-Length")
    elif len(body) != int(headers["content-length"]):
        problems.append(f"body of {len(body)} bytes, Content-Length {headers['content-length']}")
    if not headers.get("content-type", "").startswith("application/json"):
        problems.append(f"Content-Type {headers.get('content-type')!r}")
    try:
        data = json.loads(body.decode("utf-8"))
        err = data["error"]
        if not (isinstance(err.get("code"), str) and err["code"] and isinstance(err.get("message"), str) and err["message"]):
            problems.append(f"error without code/message: {data!r}")
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
        problems.append(f"body is not an error JSON ({e}): {body[:200]!r}")
    if status == 405 and "allow" not in headers:
        problems.append("405 without Allow")
    return problems


def status_of(raw):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------------------
# The generator

def request(method, target, body=b"", headers=(), version=b"HTTP/1.1", length=True):
    if isinstance(body, str):
        body = body.encode()
    if isinstance(target, str):
        target = target.encode()
    lines = [method.encode() + b" " + target + b" " + version, b"Host: fuzz"]
    for h in headers:
        lines.append(h if isinstance(h, bytes) else h.encode())
    if length and body is not None:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def enqueue(body, queue="fz", **kw):
    return request("POST", f"/v1/queues/{queue}/jobs", body, **kw)


VALID = {"type": "noop"}


def gen_cases(rng):
    """Yields (kind, bytes, allowed statuses) forever."""
    def jobj(**fields):
        d = dict(VALID)
        d.update(fields)
        return json.dumps(d)

    def truncated():
        text = jobj(payload={"a": [1, 2, {"b": "c"}]}, priority="high")
        return text[: rng.randrange(0, len(text))]

    malformed = [
        "{", "}", "[", "{\"type\":}", "{\"type\" \"noop\"}", "{'type':'noop'}", "{\"type\":\"noop\",}",
        "{\"type\":\"noop\"} x", "{\"type\":NaN}", "{\"type\":\"noop\",\"payload\":Infinity}", "// c\n{}",
        "{\"type\":\"noop\" /* c */}", "{\"type\":\"no\nop\"}", "{\"type\":\"\\x41\"}", "{\"type\":\"\\u12\"}",
        "nul", "tru", "{\"type\":\"noop\"}}", "{\"type\":\"noop\",\"payload\":01}", "{\"type\":\"noop\",\"payload\":1.}",
        "{\"type\":\"noop\",\"payload\":-}", "{\"type\":\"noop\",\"payload\":.5}", "{\"type\":\"noop\",\"payload\":1e}",
        "\ufeff{\"type\":\"noop\"}", "{\"type\":\"noop\"\x00}", "", " ", "{\"type\":\"noop\",\"payload\":[1,2,]}",
    ]
    bad_utf8 = [b"\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80\x80", b"\xf4\x90\x80\x80",
                b"\xe2\x82"]
    wrong_types = [
        {"type": 5}, {"type": None}, {"type": []}, {"type": {}}, {"type": True}, {"type": ""},
        {"type": "noop", "priority": 3}, {"type": "noop", "priority": "URGENT"}, {"type": "noop", "priority": ""},
        {"type": "noop", "max_attempts": "5"}, {"type": "noop", "max_attempts": True}, {"type": "noop", "max_attempts": []},
        {"type": "noop", "timeout_ms": {}}, {"type": "noop", "idempotency_key": 5}, {"type": "noop", "idempotency_key": ""},
        {"type": "noop", "run_at": "not a date"}, {"type": "noop", "run_at": 5}, {"type": "noop", "run_at": "2026-13-45T00:00:00Z"},
        {"type": "noop", "run_at": "2026-01-01T00:00:00Z", "delay_ms": 5}, {"type": "no op"}, {"type": "noop\u00e9"},
        {"type": "noop", "run_at": "9999-01-01T00:00:00Z"}, {"type": "noop\ud800"},
    ]
    numbers = ["1e400", "-1e400", "9" * 400, "-" + "9" * 400, "1.5", "0", "-5", "1001", "9223372036854775808",
               "-9223372036854775809", "1e19", "0.0000001", "1E+400"]
    numeric_fields = ["max_attempts", "timeout_ms", "backoff_ms", "result_ttl_s", "delay_ms"]
    bad_numbers_for = {"max_attempts": numbers, "timeout_ms": [n for n in numbers if n not in ("1001",)] + ["604800001"],
                       "backoff_ms": [n for n in numbers if n not in ("0", "1001")] + ["3600001"],
                       "result_ttl_s": [n for n in numbers if n not in ("1001",)] + ["31536001"],
                       "delay_ms": [n for n in numbers if n not in ("0", "1001")] + ["31536000001"]}
    bad_queues = ["a%20b", "%00", "%ff", "x" * 65, "\u00fc", "%C3%BC", "a%2Fb", "a~b", "*", "%", "%zz", "%2", "a%",
                  "\u2603", "%E2%98%83", "a:b", "a+b", "a%7Eb", "..%2F..", "%2e%2e%2f", "\x01", "a\tb"]
    bad_ids = ["..", "%2e%2e", "x" * 200, "default~" + "I" * 26, "default~" + "0" * 25, "default~" + "0" * 27,
               "~" + "0" * 26, "a~b~c", "%ff", "%", "%zz", "\u00fc~" + "0" * 26, "default%7E" + "U" * 26,
               "default~" + "0" * 25 + "u", "..~" + "0" * 26 + "/..", "default~01M81YVWNZR77G18MNQ3BGA5Q\u00fc",
               "x" * 101 + "~" + "0" * 26]
    methods = ["PUT", "PATCH", "OPTIONS", "TRACE", "CONNECT", "FOO", "PROPFIND", "DELETE"]
    method_paths = ["/v1/queues/fz/jobs", "/v1/queues/fz/jobs/batch", "/v1/jobs/default~01M81YVWNZR77G18MNQ3BGA5QK",
                    "/v1/queues", "/healthz", "/readyz", "/v1/workers", "/v1/jobs/default~01M81YVWNZR77G18MNQ3BGA5QK/result"]

    kinds = ["malformed_json", "truncated_json", "invalid_utf8", "deep_nesting", "huge_number", "wrong_type",
             "big_string", "unknown_field", "bad_queue", "bad_id", "wrong_method", "huge_head", "many_headers",
             "bad_header", "oversized_body", "bad_content_length", "chunked", "bad_request_line", "garbage",
             "batch", "bad_target", "not_object", "bad_query", "dotted_queue"]
    while True:
        kind = rng.choice(kinds)
        if kind == "malformed_json":
            yield kind, enqueue(rng.choice(malformed)), {400}
        elif kind == "truncated_json":
            yield kind, enqueue(truncated()), {400}
        elif kind == "invalid_utf8":
            b = rng.choice(bad_utf8)
            where = rng.choice(["type", "payload", "key", "raw"])
            if where == "type":
                body = b'{"type":"no' + b + b'op"}'
            elif where == "payload":
                body = b'{"type":"noop","payload":"' + b + b'"}'
            elif where == "key":
                body = b'{"type":"noop","' + b + b'":1}'
            else:
                body = b + b'{"type":"noop"}'
            yield kind, enqueue(body), {400}
        elif kind == "deep_nesting":
            depth = rng.choice([65, 1000, 10000])
            shape = rng.choice(["array", "object", "top"])
            if shape == "array":
                body = '{"type":"noop","payload":' + "[" * depth + "]" * depth + "}"
            elif shape == "object":
                body = '{"type":"noop","payload":' + '{"a":' * depth + "1" + "}" * depth + "}"
            else:
                body = "[" * depth + "]" * depth
            yield kind, enqueue(body), {400}
        elif kind == "huge_number":
            field = rng.choice(numeric_fields)
            n = rng.choice(bad_numbers_for[field])
            yield kind, enqueue('{"type":"noop","%s":%s}' % (field, n)), {400}
        elif kind == "wrong_type":
            yield kind, enqueue(json.dumps(rng.choice(wrong_types))), {400}
        elif kind == "big_string":
            big = "x" * 100_000
            choice = rng.choice(["type", "idempotency_key", "priority", "field", "run_at", "queue", "id"])
            if choice == "type":
                yield kind, enqueue(json.dumps({"type": big})), {400}
            elif choice == "field":
                yield kind, enqueue(json.dumps({"type": "noop", big: 1})), {400}
            elif choice == "queue":
                yield kind, enqueue(json.dumps(VALID), queue=big), {431}
            elif choice == "id":
                yield kind, request("GET", "/v1/jobs/" + "a" * 10_000), {404}
            else:
                yield kind, enqueue(json.dumps({"type": "noop", choice: big})), {400}
        elif kind == "unknown_field":
            extra = rng.choice(["typo", "Type", "priorty", "max_attempt", "queue", "id", "state", "", "\u00fc", "payload "])
            yield kind, enqueue(json.dumps({"type": "noop", extra: 1})), {400}
        elif kind == "bad_queue":
            q = rng.choice(bad_queues)
            route = rng.choice(["jobs", "batch", "detail", "dead"])
            path = {"jobs": f"/v1/queues/{q}/jobs", "batch": f"/v1/queues/{q}/jobs/batch",
                    "detail": f"/v1/queues/{q}", "dead": f"/v1/queues/{q}/dead"}[route]
            body = json.dumps(VALID if route != "batch" else {"jobs": [VALID]})
            method = "POST" if route in ("jobs", "batch") else "GET"
            # Invalid after percent-decoding (or not decodable): refused before Redis is asked.
            allowed = {400}
            yield kind, request(method, path, body if method == "POST" else b""), allowed
        elif kind == "bad_id":
            jid = rng.choice(bad_ids)
            route = rng.choice(["get", "result", "cancel", "retry"])
            if route == "get":
                data = request("GET", f"/v1/jobs/{jid}", b"")
            elif route == "result":
                data = request("GET", f"/v1/jobs/{jid}/result", b"")
            else:
                data = request("POST", f"/v1/jobs/{jid}/{route}", b"")
            allowed = {404} if "/" not in jid.replace("%2F", "/") else {404, 405}
            yield kind, data, allowed
        elif kind == "wrong_method":
            m = rng.choice(methods)
            p = rng.choice(method_paths)
            yield kind, request(m, p, json.dumps(VALID) if rng.random() < 0.5 else b""), {405}
        elif kind == "huge_head":
            size = rng.choice([16 * 1024 + 1, 20_000, 64_000])
            where = rng.choice(["header", "target"])
            if where == "header":
                data = enqueue(json.dumps(VALID), headers=["X-Big: " + "h" * size])
            else:
                data = request("GET", "/v1/jobs/" + "a" * size)
            yield kind, data, {431}
        elif kind == "many_headers":
            n = rng.choice([101, 150, 500])
            yield kind, enqueue(json.dumps(VALID), headers=[f"X-H{i}: v" for i in range(n)]), {431}
        elif kind == "bad_header":
            h = rng.choice([b"NoColonHere", b" Folded: yes", b"\tTabbed: yes", b"Bad Name: v", b": empty-name",
                            b"X-Bin: \xff\xfe"])
            yield kind, enqueue(json.dumps(VALID), headers=[h]), {400}
        elif kind == "oversized_body":
            size = rng.choice([1048577, 2 * 1048576, 10 ** 12])
            head = (b"POST /v1/queues/fz/jobs HTTP/1.1\r\nHost: fuzz\r\nContent-Length: %d\r\n\r\n" % size)
            yield kind, head + b"{\"type\":\"noop\",\"payload\":\"" + b"p" * min(size // 16, 65536), {413}
        elif kind == "bad_content_length":
            v = rng.choice(["abc", "-1", "1,1", "1 1", "0x10", "99999999999999999999999", "", "1.0", "١٢"])
            body = json.dumps(VALID)
            data = (b"POST /v1/queues/fz/jobs HTTP/1.1\r\nHost: fuzz\r\nContent-Length: " + v.encode() + b"\r\n\r\n"
                    + body.encode())
            if rng.random() < 0.3:
                data = (b"POST /v1/queues/fz/jobs HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 15\r\n"
                        b"Content-Length: 16\r\n\r\n" + body.encode())
            elif rng.random() < 0.3:  # shorter than the body: the prefix is not JSON
                cut = rng.randrange(0, len(body) - 1)
                data = (b"POST /v1/queues/fz/jobs HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                        % cut) + body.encode()
            yield kind, data, {400}
        elif kind == "chunked":
            te = rng.choice(["chunked", "gzip, chunked", "Chunked", "identity"])
            body = json.dumps(VALID).encode()
            chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
            with_length = rng.random() < 0.3
            # A valid chunked request stores its job: in the good client's queue,
            # which the check that nothing else changed leaves out.
            queue = GOOD_QUEUE.encode() if te.lower() == "chunked" and not with_length else b"fz"
            data = (b"POST /v1/queues/" + queue + b"/jobs HTTP/1.1\r\nHost: fuzz\r\nTransfer-Encoding: " + te.encode() + b"\r\n"
                    + (b"Content-Length: %d\r\n" % len(body) if with_length else b"") + b"\r\n" + chunked)
            # chunked alone is a valid request; with Content-Length too it is
            # refused (request smuggling); other codings are not implemented.
            if te.lower() == "chunked":
                yield kind, data, {400} if with_length else {201}
            else:
                yield kind, data, {501}
        elif kind == "bad_request_line":
            line = rng.choice([
                (b"GET /\r\n\r\n", {400}), (b"GET / HTTP/0.9\r\n\r\n", {505}), (b"GET / HTTP/2.0\r\n\r\n", {505}),
                (b"GET / HTTP/1.2\r\n\r\n", {505}), (b"GET / HTTP/1.1 x\r\n\r\n", {400}), (b"GET  / HTTP/1.1\r\n\r\n", {400}),
                (b"get / HTTP/1.1\r\n\r\n", {400}), (b"GET / http/1.1\r\n\r\n", {505}), (b"G\xc3\x89T / HTTP/1.1\r\n\r\n", {400, 404, 405}),
                (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400, 505}), (b" GET / HTTP/1.1\r\n\r\n", {400}),
                (b"GET\t/\tHTTP/1.1\r\n\r\n", {400}), (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\x00", {400}),
            ])
            data, allowed = line
            if data.endswith(b"\x00\x00"):
                # a valid GET / (404) followed by garbage: only the first answer is read; / is no route
                allowed = {404}
            yield kind, data, allowed
        elif kind == "garbage":
            n = rng.randrange(1, 200)
            junk = bytes(rng.randrange(0, 256) for _ in range(n)).replace(b"\r\n\r\n", b"")
            if junk[:1].isupper():
                junk = b"\x00" + junk
            yield kind, junk + b"\r\n\r\n", {400, 505}
        elif kind == "batch":
            choice = rng.choice(["empty", "too_many", "bad_item", "not_array", "extra", "nested"])
            if choice == "empty":
                body = {"jobs": []}
            elif choice == "too_many":
                body = {"jobs": [VALID] * 1001}
            elif choice == "bad_item":
                jobs = [VALID] * rng.randrange(1, 50)
                jobs = jobs + [{"type": 5}] + jobs
                body = {"jobs": jobs}
            elif choice == "not_array":
                body = {"jobs": VALID}
            elif choice == "extra":
                body = {"jobs": [VALID], "queue": "x"}
            else:
                body = {"jobs": [[VALID]]}
            yield kind, request("POST", "/v1/queues/fz/jobs/batch", json.dumps(body)), {400}
        elif kind == "bad_target":
            t = rng.choice(["http://evil/v1/queues", "*", "v1/queues", "//", "/v1/../v1/queues/fz/jobs", "/%2e%2e/",
                            "/v1/queues/fz/jobs/extra/more", "/v1/jobs", "/v1/jobs/", "/V1/QUEUES"])
            allowed = {400} if not t.startswith("/") else {404, 405}
            yield kind, request("POST", t, json.dumps(VALID)), allowed
        elif kind == "bad_query":
            # (A valid wait on an unknown job is covered by test_long_poll_of_unknown_job_changes_nothing.)
            w = rng.choice(["-1", "61", "abc", "1e400", "nan", "inf", "", "%ff", "60.001", "-0.5"])
            yield kind, request("GET", f"/v1/jobs/default~01M81YVWNZR77G18MNQ3BGA5QK?wait={w}"), {400}
        elif kind == "dotted_queue":
            # `.` and `..` are valid queue names ([A-Za-z0-9_.-]); with a bad body the request is refused.
            q = rng.choice(["..", "%2e%2e", ".", "%2E", "...", ".%2e"])
            yield kind, enqueue(rng.choice(malformed[:10] + ['{"type":"noop","x":1}']), queue=q), {400}
        elif kind == "not_object":
            yield kind, enqueue(rng.choice(["[]", "\"noop\"", "5", "null", "true", "[{\"type\":\"noop\"}]"])), {400}


# ---------------------------------------------------------------------------
# Background load: the good client, slow-loris and idle connections

class GoodClient(threading.Thread):
    """Enqueues a job and reads it back, over one keep-alive connection, recording latencies."""

    def __init__(self, api):
        super().__init__(daemon=True)
        self.api = api
        self.phase = "baseline"
        self.stop = threading.Event()
        self.lat = {"baseline": [], "attack": [], "after": []}
        self.errors = []
        self.ids = []

    def run(self):
        import http.client
        conn = None
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.api.port, timeout=5)
                t0 = time.monotonic()
                conn.request("POST", f"/v1/queues/{GOOD_QUEUE}/jobs", body=json.dumps({"type": "noop", "payload": {"n": n}}),
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                body = json.loads(r.read())
                t1 = time.monotonic()
                if r.status != 201:
                    self.errors.append((r.status, body))
                    continue
                self.ids.append(body["id"])
                conn.request("GET", f"/v1/jobs/{body['id']}")
                r2 = conn.getresponse()
                got = json.loads(r2.read())
                t2 = time.monotonic()
                if r2.status != 200 or got["id"] != body["id"]:
                    self.errors.append((r2.status, got))
                phase = self.phase
                self.lat[phase] += [t1 - t0, t2 - t1]
            except Exception as e:  # recorded: a failed request of the good client fails the test
                self.errors.append(repr(e))
                try:
                    conn.close()
                except Exception:
                    pass
                conn = None
            time.sleep(0.005)
        if conn:
            conn.close()


class SlowLoris(threading.Thread):
    """n connections, each sending a request head one byte a second; each must get a 408."""

    HEAD = (b"POST /v1/queues/loris/jobs HTTP/1.1\r\nHost: fuzz\r\nContent-Type: application/json\r\n"
            b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
            b"Content-Length: 15\r\n\r\n{\"type\":\"noop\"}")

    def __init__(self, port, n=20):
        super().__init__(daemon=True)
        self.port = port
        self.n = n
        self.stop = threading.Event()
        self.answers = []   # (seconds since the connection opened, raw)
        self.problems = []
        self.completed_heads = 0

    def _open(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.setblocking(False)
        return {"sock": s, "sent": 0, "t": time.monotonic(), "buf": b""}

    def run(self):
        conns = [self._open() for _ in range(self.n)]
        while not self.stop.is_set():
            for c in conns:
                if c["sent"] < len(self.HEAD):
                    try:
                        c["sock"].send(self.HEAD[c["sent"]:c["sent"] + 1])
                        c["sent"] += 1
                    except OSError:
                        pass
                    if c["sent"] == len(self.HEAD):
                        self.completed_heads += 1
            end = time.monotonic() + 1.0
            while time.monotonic() < end and not self.stop.is_set():
                r, _, _ = select.select([c["sock"] for c in conns], [], [], max(0.0, end - time.monotonic()))
                for s in r:
                    c = next(c for c in conns if c["sock"] is s)
                    try:
                        chunk = s.recv(65536)
                    except OSError:
                        chunk = b""
                    if chunk:
                        c["buf"] += chunk
                        if not response_complete(c["buf"]):
                            continue
                    if c["buf"]:
                        self.answers.append((time.monotonic() - c["t"], c["buf"]))
                    else:
                        self.problems.append(f"closed without an answer after {time.monotonic() - c['t']:.1f}s")
                    s.close()
                    conns[conns.index(c)] = self._open()
        for c in conns:
            c["sock"].close()


class IdleConnections(threading.Thread):
    """Keeps n connections open that never send a byte; the server may close them
    after its read timeout (silently, or with a well-formed 408). Closed ones are reopened."""

    def __init__(self, port, n=500):
        super().__init__(daemon=True)
        self.port = port
        self.n = n
        self.stop = threading.Event()
        self.closed_by_server = 0
        self.answers = []
        self.open_failures = []
        self.max_open = 0

    def run(self):
        socks = []

        def fill():
            while len(socks) < self.n and not self.stop.is_set():
                try:
                    s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                    s.setblocking(False)
                    socks.append(s)
                except OSError as e:
                    self.open_failures.append(repr(e))
                    return

        fill()
        while not self.stop.is_set():
            self.max_open = max(self.max_open, len(socks))
            r, _, _ = select.select(socks, [], [], 0.5) if socks else ([], [], [])
            for s in r:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if data:
                    self.answers.append(data)
                self.closed_by_server += 1
                socks.remove(s)
                s.close()
            fill()
        for s in socks:
            s.close()


# ---------------------------------------------------------------------------

def test_fuzz_api_under_attack(spawn, redis, kit, figures):
    n_requests = kit.pick(2000, 20000)
    min_attack_s = kit.pick(6.0, 12.0)
    n_threads = kit.pick(3, 4)
    api = spawn.api(env={"SPOOL_HTTP_READ_TIMEOUT_MS": str(READ_TIMEOUT_MS)})
    rc = kit.RespClient(redis.port)

    good = GoodClient(api)
    loris = SlowLoris(api.port, 20)
    idle = IdleConnections(api.port, 500)
    lock = threading.Lock()
    results = {"sent": 0, "by_kind": {}, "by_status": {}, "violations": [], "errors": []}
    master = random.Random(SEED)
    seeds = [master.randrange(1 << 30) for _ in range(n_threads)]

    def fuzzer(seed, quota):
        rng = random.Random(seed)
        cases = gen_cases(rng)
        for _ in range(quota):
            kind, data, allowed = next(cases)
            try:
                raw, err = exchange(api.port, data)
            except OSError as e:
                raw, err = b"", f"connect: {e!r}"
            problems = check_error_response(raw, allowed)
            with lock:
                results["sent"] += 1
                st = status_of(raw)
                results["by_kind"][kind] = results["by_kind"].get(kind, 0) + 1
                results["by_status"][str(st)] = results["by_status"].get(str(st), 0) + 1
                if problems:
                    results["violations"].append((kind, data[:160], problems, err))

    quota = -(-n_requests // n_threads)
    try:
        good.start()
        wait_for(lambda: len(good.lat["baseline"]) >= kit.pick(400, 1000), timeout=60, what="baseline latencies")
        before = snapshot(rc)
        good.phase = "attack"
        loris.start()
        idle.start()
        t_attack = time.monotonic()
        threads = [threading.Thread(target=fuzzer, args=(s, quota), daemon=True) for s in seeds]
        for t in threads:
            t.start()
        for t in threads:
            t.join(kit.pick(120, 400))
        fuzz_s = time.monotonic() - t_attack
        if fuzz_s < min_attack_s:
            time.sleep(min_attack_s - fuzz_s)
        attack_s = time.monotonic() - t_attack
        api_alive_during = api.alive()
    finally:
        loris.stop.set()
        idle.stop.set()
        good.phase = "after"
        loris.join(10) if loris.ident else None
        idle.join(10) if idle.ident else None
        time.sleep(0.5)
        good.stop.set()
        good.join(10) if good.ident else None

    assert api_alive_during and api.alive(), f"spool-api died\n{api.output()[-3000:]}"
    assert api.get("/healthz")[0] == 200
    after = snapshot(rc)

    base, att = good.lat["baseline"], good.lat["attack"]
    p = lambda v, q: kit.ms(kit.percentile(v, q))
    loris_408 = [a for t, a in loris.answers if status_of(a) == 408]
    loris_bad = [(round(t, 1), a[:200]) for t, a in loris.answers if check_error_response(a, {408})]
    idle_bad = [a[:200] for a in idle.answers if check_error_response(a, {408})]
    rejected = sum(v for k, v in results["by_status"].items() if k != "None" and (400 <= int(k) < 500 or k == "505"))
    figures.record(
        "fuzz",
        seed=SEED, requests_sent=results["sent"], rejected=rejected, by_status=results["by_status"],
        by_kind=results["by_kind"], violations=len(results["violations"]),
        violation_samples=[f"{k}: {d!r} -> {pr}" for k, d, pr, _ in results["violations"][:5]],
        attack_s=round(attack_s, 1), fuzz_requests_per_s=round(results["sent"] / max(fuzz_s, 0.001), 1),
        good_requests_baseline=len(base), good_requests_attack=len(att),
        p50_ms_baseline=p(base, 50), p99_ms_baseline=p(base, 99), max_ms_baseline=kit.ms(max(base)),
        p50_ms_attack=p(att, 50), p99_ms_attack=p(att, 99), max_ms_attack=kit.ms(max(att)) if att else None,
        slowloris_connections=20, slowloris_408=len(loris_408), slowloris_heads_completed=loris.completed_heads,
        idle_connections=500, idle_max_open=idle.max_open, idle_closed_by_server=idle.closed_by_server,
        read_timeout_ms=READ_TIMEOUT_MS, redis_unchanged=before == after, good_client_errors=len(good.errors),
    )

    assert results["sent"] == quota * n_threads
    v = results["violations"]
    assert not v, f"{len(v)} bad answers to malformed requests, e.g.:\n" + "\n".join(
        f"  {k}: {d!r}\n    -> {pr} ({e})" for k, d, pr, e in v[:12])
    assert not good.errors, good.errors[:5]
    assert len(att) >= 100, f"the good client got only {len(att)} answers during the attack"
    assert kit.percentile(att, 99) < 0.200, f"good client's p99 during the attack: {p(att, 99)} ms"
    assert before == after, "Redis changed: " + repr(sorted(set(after) ^ set(before))[:5])
    assert not loris.problems, loris.problems[:5]
    assert len(loris_408) >= 20, f"slow-loris connections got {len(loris_408)} 408 answers in {attack_s:.0f}s"
    assert not loris_bad, loris_bad[:3]
    assert loris.completed_heads == 0
    assert not idle.open_failures, idle.open_failures[:3]
    assert idle.max_open >= 500
    assert not idle_bad, idle_bad[:3]


def test_long_poll_of_unknown_job_changes_nothing(spawn, redis, kit, figures):
    """GET /v1/jobs/{id}?wait=S for a job that does not exist answers 404 and, like
    every refused request, leaves Redis as it was."""
    api = spawn.api()
    rc = kit.RespClient(redis.port)
    before = snapshot(rc)
    answers = []
    for i, wait in enumerate(["1", "0.2", "60", "1%00abc"]):
        jid = "ghost~" + "0123456789ABCDEFGHJKMNPQRS"[i:] + "0" * i
        raw, err = exchange(api.port, request("GET", f"/v1/jobs/{jid}?wait={wait}"))
        answers.append((wait, status_of(raw), check_error_response(raw, {404, 400})))
    after = snapshot(rc)
    new_keys = sorted({k for k, _, _ in after} - {k for k, _, _ in before})
    figures.record("long_poll_unknown_job", answers=[(w, s) for w, s, _ in answers], keys_written=new_keys)
    assert all(not pr for _, _, pr in answers), answers
    assert before == after, f"a 404 long-poll wrote to Redis: {new_keys}"


STALLS = [
    ("partial request line (HTTP/0.9 style, no blank line)", b"GET /\r\n"),
    ("partial head", b"POST /v1/queues/fz/jobs HTTP/1.1\r\nHost: fuzz\r\nContent-Le"),
    ("partial body", b"POST /v1/queues/fz/jobs HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 100\r\n\r\n{\"type\":"),
    ("bare LF line ends", b"GET /healthz HTTP/1.1\nHost: fuzz\n\n"),
]


def test_stalled_requests_get_408(spawn, redis, kit, figures):
    """A request that stops arriving half-way gets 408 request_timeout once the
    read timeout passes (README: "the request did not arrive whole within
    SPOOL_HTTP_READ_TIMEOUT_MS"), not a silent close."""
    api = spawn.api(env={"SPOOL_HTTP_READ_TIMEOUT_MS": str(READ_TIMEOUT_MS)})
    rc = kit.RespClient(redis.port)
    before = snapshot(rc)
    out = {}

    def run(name, data):
        t0 = time.monotonic()
        raw, err = exchange(api.port, data, timeout=READ_TIMEOUT_MS / 1000 + 4)
        out[name] = (raw, err, time.monotonic() - t0)

    threads = [threading.Thread(target=run, args=c, daemon=True) for c in STALLS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(READ_TIMEOUT_MS / 1000 + 10)
    assert api.alive()
    assert snapshot(rc) == before
    problems = []
    for name, (raw, err, took) in sorted(out.items()):
        allowed = {400, 408} if name == "bare LF line ends" else {408}
        pr = check_error_response(raw, allowed)
        if pr or took > READ_TIMEOUT_MS / 1000 + 1.5:
            problems.append(f"{name}: after {took:.1f}s {pr or 'too late'} ({err}) raw={raw[:120]!r}")
    figures.record("stalled_requests", cases=len(STALLS), read_timeout_ms=READ_TIMEOUT_MS,
                   answered_408=sum(1 for raw, _, _ in out.values() if status_of(raw) == 408),
                   closed_without_answer=sum(1 for raw, _, _ in out.values() if not raw),
                   problems=problems)
    assert not problems, "\n".join(problems)


def test_worker_fails_damaged_job_hashes_and_carries_on(spawn, redis, kit, figures):
    """Job hashes written straight into Redis, damaged: no 'type', a payload that
    is not JSON, no 'state', a non-numeric attempts, an unknown priority. The
    worker fails each for good (dead) with an error that says the job is damaged,
    and keeps running the valid jobs queued around them."""
    q = "dmg"
    rc = kit.RespClient(redis.port)
    api = spawn.api()
    first = api.enqueue(q, {"type": "noop"})
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    rng = random.Random(7)

    def new_id():
        return f"{q}~" + "".join(rng.choice(alphabet) for _ in range(26))

    damaged = {
        "missing_type": ["payload", "{}", "priority", "normal", "state", "queued", "attempts", "0"],
        "payload_not_json": ["type", "noop", "payload", "{not json", "priority", "normal", "state", "queued", "attempts", "0"],
        "missing_state": ["type", "noop", "payload", "null", "priority", "normal", "attempts", "0"],
        "attempts_not_a_number": ["type", "noop", "payload", "null", "priority", "normal", "state", "queued", "attempts", "x"],
    }
    # Tolerated, not damaged: an unknown priority is read as normal, and the job runs.
    tolerated_id = new_id()
    rc.call("HSET", f"spool:{{{q}}}:job:{tolerated_id}", "type", "noop", "payload", "null", "priority", "bogus",
            "state", "queued", "attempts", "0")
    rc.call("RPUSH", f"spool:{{{q}}}:pending:normal", tolerated_id)
    ids = {}
    for name, fields in damaged.items():
        jid = new_id()
        ids[name] = jid
        rc.call("HSET", f"spool:{{{q}}}:job:{jid}", *fields)
        rc.call("RPUSH", f"spool:{{{q}}}:pending:normal", jid)
    rc.call("SADD", "spool:queues", q)
    last = api.enqueue(q, {"type": "echo", "payload": {"after": "damaged"}})

    w = spawn.worker(queues=q, concurrency=1)
    api.wait_state(first["id"], "succeeded", timeout=15)
    done = api.wait_state(last["id"], "succeeded", timeout=15)
    assert done["result"] == {"after": "damaged"}
    assert w.alive(), w.output()[-3000:]

    outcome = {}
    problems = []
    for name, jid in ids.items():
        key = f"spool:{{{q}}}:job:{jid}"
        state, error = rc.call("HMGET", key, "state", "error")
        in_dead = rc.call("ZSCORE", f"spool:{{{q}}}:dead", jid) is not None
        leased = rc.call("ZSCORE", f"spool:{{{q}}}:lease", jid) is not None
        message = ""
        try:
            message = json.loads(error)["message"] if error else ""
        except ValueError:
            message = error
        outcome[name] = {"state": state, "in_dead_set": in_dead, "error": message[:200]}
        if state != "dead" or not in_dead or leased:
            problems.append(f"{name}: state {state!r}, in dead set {in_dead}, still leased {leased}")
        if "damaged" not in message:
            problems.append(f"{name}: error does not say the job is damaged: {message!r}")
        # The API must still answer about it with well-formed JSON, never crash.
        status, _, data = api.get(f"/v1/jobs/{jid}")
        outcome[name]["api_status"] = status
        if not (status == 200 or (status == 500 and isinstance(data, dict) and "error" in data)):
            problems.append(f"{name}: GET answered {status} {data!r}")
    tolerated_state = rc.call("HGET", f"spool:{{{q}}}:job:{tolerated_id}", "state")
    if tolerated_state not in ("succeeded", "dead"):
        problems.append(f"job with an unknown priority left {tolerated_state!r}")
    outcome["unknown_priority_tolerated"] = {"state": tolerated_state}
    assert api.alive()
    # And the worker goes on with new work.
    again = api.enqueue(q, {"type": "noop"})
    api.wait_state(again["id"], "succeeded", timeout=10)
    figures.record("damaged_job_hashes", cases=len(damaged), outcome=outcome, worker_alive=w.alive(),
                   problems=problems)
    assert not problems, "\n".join(problems)
