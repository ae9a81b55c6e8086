#!/usr/bin/env python3
"""The security scenario of `make bench` (issue 15), also run alone by
`make bench-security`: what HTTPS and API tokens cost on concurrent enqueue.

One redis-server, three spool-api processes on it: plain HTTP with no
authentication, HTTPS (SPOOL_TLS_CERT/KEY, a certificate made here), and
HTTPS with an auth file (every request carries a bearer token). wrk loads each
in turn, 64 keep-alive connections, in alternating rounds (plain, HTTPS,
HTTPS + token, then again), so that drift on a shared machine falls on all
three alike; each variant's figure is the median of its rounds, given as a
ratio to plain HTTP in the same run (target for HTTPS: at least 0.6).
"""
import base64
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the shared helpers: start, stop, wrk, ...)


def make_certificate(directory):
    """A self-signed certificate for 127.0.0.1 (wrk does not verify it)."""
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=30)
    return cert, key


def wrk_rate(url, seconds, token=None):
    script = Path(tempfile.mkdtemp()) / "post.lua"
    lines = ['wrk.method = "POST"', "wrk.body = '{\"type\":\"noop\"}'", 'wrk.headers["Content-Type"] = "application/json"']
    if token:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {token}"')
    script.write_text("\n".join(lines) + "\n")
    out = bench.sh(["wrk", "-t2", "-c64", f"-d{seconds}s", "-s", str(script), url])
    shutil.rmtree(script.parent, ignore_errors=True)
    import re
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert not non2xx, f"{url}: {non2xx.group(0)}"
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def scenario(seconds=5, rounds=3):
    d = Path(tempfile.mkdtemp(prefix="spool-bench-sec-"))
    redis_port = bench.free_port()
    redis = bench.start(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(d),
                         "--save", "", "--appendonly", "no", "--daemonize", "no"])
    apis = []
    try:
        bench.wait_port(redis_port)
        url = f"redis://127.0.0.1:{redis_port}"
        lpush = bench.redis_benchmark(redis_port, 1)
        cert, key = make_certificate(d)
        token = "spool_bench_" + os.urandom(16).hex()
        clients = d / "clients.json"
        clients.write_text(json.dumps({"clients": [{"id": "bench", "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
                                                    "scopes": ["enqueue", "read"], "queues": ["bench*"]}]}))
        variants = {}
        for name, env in [("http", {}), ("https", {"SPOOL_TLS_CERT": str(cert), "SPOOL_TLS_KEY": str(key)}),
                          ("https_token", {"SPOOL_TLS_CERT": str(cert), "SPOOL_TLS_KEY": str(key),
                                           "SPOOL_AUTH_FILE": str(clients)})]:
            port = bench.free_port()
            p = bench.start([str(bench.BIN / "spool-api"), "--addr", f"127.0.0.1:{port}", "--log-level", "warning",
                             "--log-format", "json"], {"REDIS_URL": url, **env})
            apis.append(p)
            bench.wait_port(port)
            scheme = "https" if "SPOOL_TLS_CERT" in env else "http"
            variants[name] = (f"{scheme}://127.0.0.1:{port}/v1/queues/bench/jobs", token if "SPOOL_AUTH_FILE" in env else None)
        time.sleep(0.3)
        rates = {name: [] for name in variants}
        for _ in range(rounds):
            for name, (target, tok) in variants.items():
                rates[name].append(wrk_rate(target, seconds, tok))
                bench.redis_cli(redis_port, "FLUSHALL")
        median = {name: statistics.median(v) for name, v in rates.items()}
        return {"lpush": lpush, "seconds": seconds, "rounds": rounds, "rates": rates, "median": median,
                "https_over_http": median["https"] / median["http"],
                "token_over_http": median["https_token"] / median["http"],
                "token_over_https": median["https_token"] / median["https"]}
    finally:
        for p in apis:
            bench.stop(p)
        bench.stop(redis)
        shutil.rmtree(d, ignore_errors=True)


def paired(make_variants, seconds, rounds, jobs):
    """Two ways of running the same work on one redis-server (listening on a
    TCP and a TLS port), in alternating rounds (median): concurrent enqueue
    (`wrk -t2 -c64` for `seconds` against an API of each way) and a drain of
    `jobs` noop jobs by one worker (1 x 16) of each way. `make_variants(plain
    URL, TLS URL, certificate, directory)` gives {name: (REDIS_URL, env)} for
    the two ways, the baseline first."""
    d = Path(tempfile.mkdtemp(prefix="spool-bench-pair-"))
    plain_port, tls_port = bench.free_port(), bench.free_port()
    cert, key = make_certificate(d)
    redis = bench.start(["redis-server", "--port", str(plain_port), "--tls-port", str(tls_port), "--tls-cert-file", str(cert),
                         "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
                         "--bind", "127.0.0.1", "--dir", str(d), "--save", "", "--appendonly", "no", "--daemonize", "no"])
    apis = []
    try:
        bench.wait_port(plain_port)
        plain_url = f"redis://127.0.0.1:{plain_port}"
        variants = make_variants(plain_url, f"rediss://127.0.0.1:{tls_port}", cert, d)
        api_ports = {}
        for name, (url, env) in variants.items():
            port = bench.free_port()
            apis.append(bench.start([str(bench.BIN / "spool-api"), "--addr", f"127.0.0.1:{port}", "--log-level", "warning",
                                     "--log-format", "json"], {"REDIS_URL": url, **env}))
            bench.wait_port(port)
            api_ports[name] = port
        time.sleep(0.5)
        enqueue = {name: [] for name in variants}
        drain = {name: [] for name in variants}
        for _ in range(rounds):
            for name, (url, env) in variants.items():
                enqueue[name].append(wrk_rate(f"http://127.0.0.1:{api_ports[name]}/v1/queues/bench/jobs", seconds))
                bench.redis_cli(plain_port, "FLUSHALL")
                # Enqueued through this way's API, so that the worker reads what it wrote (sealed or not).
                bench.bench_tool("batch", "--addr", f"127.0.0.1:{api_ports[name]}", "--queue", "bench",
                                 "--batches", jobs // 1000 // 2, "--size", 1000, "--connections", 2)
                w = bench.start([str(bench.BIN / "spool-worker"), "--queues", "bench", "--concurrency", "16",
                                 "--log-level", "warning", "--log-format", "json"], {"REDIS_URL": url, **env})
                r = bench.bench_tool("wait-processed", "--redis-url", plain_url, "--queue", "bench", "--target", jobs)
                bench.stop(w)
                drain[name].append(r["rate"])
                bench.redis_cli(plain_port, "FLUSHALL")
        base, other = list(variants)
        med = statistics.median
        return {"seconds": seconds, "rounds": rounds, "jobs": jobs, "names": [base, other], "enqueue": enqueue, "drain": drain,
                "enqueue_ratio": med(enqueue[other]) / med(enqueue[base]), "drain_ratio": med(drain[other]) / med(drain[base])}
    finally:
        for p in apis:
            bench.stop(p)
        bench.stop(redis)
        shutil.rmtree(d, ignore_errors=True)


def redis_tls_scenario(seconds=5, rounds=3, jobs=50_000):
    """TLS to Redis through the relay against plain TCP."""
    return paired(lambda plain, tls, cert, d: {"tcp": (plain, {}), "tls": (tls, {"SPOOL_REDIS_CA_FILE": str(cert)})},
                  seconds, rounds, jobs)


def encryption_scenario(seconds=5, rounds=3, jobs=50_000):
    """Payloads and results sealed (SPOOL_ENCRYPTION_KEY_FILE) against plaintext."""
    def variants(plain, tls, cert, d):
        keys = d / "keys"
        keys.write_text("bench " + base64.b64encode(os.urandom(32)).decode() + "\n")
        return {"plaintext": (plain, {}), "sealed": (plain, {"SPOOL_ENCRYPTION_KEY_FILE": str(keys)})}
    return paired(variants, seconds, rounds, jobs)


def render(r):
    if not r:
        return "## Security\n\nNot measured in this run."
    m = r["median"]
    return f"""## Security: HTTPS and tokens

Concurrent enqueue (`wrk -t2 -c64`, keep-alive, body `{{"type":"noop"}}`) against three APIs on one
Redis, {r['rounds']} alternating rounds of {r['seconds']} s each (median): plain HTTP without authentication,
HTTPS (TLS 1.3, P-256 certificate), and HTTPS with a bearer token checked on every request
(SHA-256 of the token, compared in constant time with every client of the file).

| variant | jobs/s | × plain HTTP | × LPUSH ({r['lpush']:,.0f}/s) |
|---|---|---|---|
| HTTP | {m['http']:,.0f} | 1.00 | {m['http'] / r['lpush']:.2f} |
| HTTPS | {m['https']:,.0f} | **{r['https_over_http']:.2f}** (target ≥ 0.6) | {m['https'] / r['lpush']:.2f} |
| HTTPS + token | {m['https_token']:,.0f} | {r['token_over_http']:.2f} | {m['https_token'] / r['lpush']:.2f} |

Rounds, jobs/s: {', '.join(f"{k} {' / '.join(f'{x:,.0f}' for x in v)}" for k, v in r['rates'].items())}.

{render_redis_tls(r.get('redis_tls'))}

{render_encryption(r.get('encryption'))}"""


def render_pair(t, title, how):
    if not t:
        return f"{title}: not measured in this run."
    base, other = t["names"]
    med = statistics.median
    rounds = lambda v: " / ".join(f"{x:,.0f}" for x in v)  # noqa: E731
    return f"""### {title}

{how} Same redis-server, {t['rounds']} alternating rounds (median). Enqueue: `wrk -t2 -c64` for {t['seconds']} s
against an API of each kind. Drain: {t['jobs']:,} noop jobs by one worker (1 × 16) of each kind.

| | {base} | {other} | {other} × {base} |
|---|---|---|---|
| concurrent enqueue, jobs/s | {med(t['enqueue'][base]):,.0f} | {med(t['enqueue'][other]):,.0f} | **{t['enqueue_ratio']:.2f}** |
| drain 1 × 16, jobs/s | {med(t['drain'][base]):,.0f} | {med(t['drain'][other]):,.0f} | **{t['drain_ratio']:.2f}** |

Rounds: enqueue {base} {rounds(t['enqueue'][base])}, {other} {rounds(t['enqueue'][other])}; drain {base}
{rounds(t['drain'][base])}, {other} {rounds(t['drain'][other])}."""


def render_redis_tls(t):
    return render_pair(t, "TLS to Redis (`rediss://`, through the in-process relay)",
                       "Every byte crosses one more socket (hiredis to the relay, a Unix socket) and is encrypted on the "
                       "relay's thread, which on 2 cores competes with the API, the worker and Redis.")


def render_encryption(t):
    return render_pair(t, "Encryption at rest (`SPOOL_ENCRYPTION_KEY_FILE`)",
                       "The API seals each payload, the worker opens it and seals the result (AES-256-GCM, a random "
                       "nonce each).")


if __name__ == "__main__":
    quick = os.environ.get("BENCH_QUICK") == "1"
    try:
        result = scenario(seconds=3 if quick else 5, rounds=2 if quick else 3)
        result["redis_tls"] = redis_tls_scenario(seconds=3 if quick else 5, rounds=2 if quick else 3,
                                                 jobs=20_000 if quick else 50_000)
        result["encryption"] = encryption_scenario(seconds=3 if quick else 5, rounds=2 if quick else 3,
                                                   jobs=20_000 if quick else 50_000)
    finally:
        bench.stop_all()
    (bench.ROOT / ".spool").mkdir(exist_ok=True)
    (bench.ROOT / ".spool" / "bench-security.json").write_text(json.dumps(result, indent=2))
    print(render(result))
