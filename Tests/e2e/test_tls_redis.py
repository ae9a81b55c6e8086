"""TLS to Redis (`rediss://`) through the in-process relay: Debian's
redis-server with --tls-port only and certificates made by the test. A
certificate that will never be trusted (wrong CA, wrong name, no client
certificate where Redis asks for one) stops both binaries at start with the
reason; mutual TLS works with a client certificate; Redis restarting over TLS
is survived. (`make e2e-tls` runs the whole contract over TLS.)"""
import os
import subprocess

import pytest

from harness import API, BIN_DIR, CertAuthority, Redis, Worker, free_port, wait_for


@pytest.fixture
def pki(tmp_path):
    ca = CertAuthority(tmp_path / "pki")
    cert, key = ca.issue("redis")
    return ca, cert, key


@pytest.fixture
def tls_redis(pki):
    ca, cert, key = pki
    r = Redis(tls=(ca.cert, cert, key))
    yield r
    r.cleanup()


def start(binary, env):
    e = {"PATH": os.environ["PATH"], "SPOOL_API_ADDR": "127.0.0.1:0", "SPOOL_QUEUES": "q"}
    e.update(env)
    return subprocess.run([str(BIN_DIR / binary)], env=e, capture_output=True, text=True, timeout=20)


def test_jobs_flow_over_tls_and_survive_a_redis_restart(tls_redis, pki):
    ca = pki[0]
    env = {"SPOOL_REDIS_CA_FILE": str(ca.cert)}
    api = API(tls_redis.url, env=env)
    worker = Worker(tls_redis.url, queues="q", env=env)
    try:
        job = api.enqueue("q", {"type": "echo", "payload": {"tls": True}})
        assert api.wait_state(job["id"], "succeeded")["result"] == {"tls": True}
        # The data went over TLS: Redis has the job, and only a TLS client reaches it.
        assert tls_redis.cli("EXISTS", f"spool:{{q}}:job:{job['id']}") == "1"
        tls_redis.stop()
        wait_for(lambda: api.get("/readyz")[0] == 503, timeout=5, what="/readyz to see Redis gone")
        tls_redis.start()
        wait_for(lambda: api.get("/readyz")[0] == 200, timeout=10, what="/readyz to recover over TLS")
        job = wait_for(lambda: (lambda r: r[2] if r[0] == 201 else None)(api.post("/v1/queues/q/jobs", {"type": "echo", "payload": 2})),
                       timeout=10, what="enqueue to work again")
        # The API's other loop reconnects at its next tick once one loop is
        # back (AsyncRedisConnection.recoveries), plus a TLS handshake: a
        # request that reaches it within those few ms may meet a 503.
        def succeeded():
            status, _, data = api.get(f"/v1/jobs/{job['id']}")
            assert status in (200, 503), (status, data)
            return data if status == 200 and data["state"] == "succeeded" else None
        assert wait_for(succeeded, timeout=10, what="the job to run after the restart")["result"] == 2
        # Every loop is back: requests on new connections all succeed.
        for _ in range(20):
            status, _, data = api.get(f"/v1/jobs/{job['id']}")
            assert status == 200, (status, data)
    finally:
        worker.stop()
        api.stop()


@pytest.mark.parametrize("binary", ["spool-api", "spool-worker"])
def test_an_untrusted_certificate_stops_the_start_with_the_reason(tls_redis, pki, tmp_path, binary):
    other = CertAuthority(tmp_path / "other-ca", name="Someone Else")
    url = tls_redis.url
    # A CA that did not sign Redis' certificate.
    out = start(binary, {"REDIS_URL": url, "SPOOL_REDIS_CA_FILE": str(other.cert)})
    assert out.returncode == 2, out
    assert "TLS to 127.0.0.1" in out.stderr and "certificate was refused" in out.stderr, out.stderr
    # The right CA, but a name the certificate does not carry.
    out = start(binary, {"REDIS_URL": url, "SPOOL_REDIS_CA_FILE": str(pki[0].cert), "SPOOL_REDIS_TLS_SERVER_NAME": "redis.example"})
    assert out.returncode == 2 and "hostname mismatch" in out.stderr, out.stderr
    # No CA file: the system's CAs do not know the test's CA.
    out = start(binary, {"REDIS_URL": url})
    assert out.returncode == 2 and "certificate was refused" in out.stderr, out.stderr
    # TLS settings without rediss://, and a CA file that is not there.
    out = start(binary, {"REDIS_URL": url.replace("rediss://", "redis://"), "SPOOL_REDIS_CA_FILE": str(pki[0].cert)})
    assert out.returncode == 2 and "not a rediss:// URL" in out.stderr, out.stderr
    out = start(binary, {"REDIS_URL": url, "SPOOL_REDIS_CA_FILE": str(tmp_path / "nope.pem")})
    assert out.returncode == 2 and "nope.pem" in out.stderr, out.stderr


def test_mutual_tls(pki, tmp_path):
    ca, cert, key = pki
    port = free_port()
    # Redis asks every client for a certificate signed by the CA (the harness'
    # Redis cannot ping such a server, so it is started here).
    server = subprocess.Popen(["redis-server", "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
                               "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca.cert), "--tls-auth-clients", "yes",
                               "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", "", "--loglevel", "warning"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client_cert, client_key = ca.issue("spool-client", dns=(), ips=(), client=True)
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "--tls", "--cacert", str(ca.cert), "--cert",
                                         str(client_cert), "--key", str(client_key), "PING"],
                                        capture_output=True, text=True).stdout.strip() == "PONG", timeout=10,
                 what="the mutual-TLS redis-server")
        url = f"rediss://127.0.0.1:{port}"
        # Without a client certificate Redis refuses the handshake: named at start.
        out = start("spool-api", {"REDIS_URL": url, "SPOOL_REDIS_CA_FILE": str(ca.cert)})
        assert out.returncode == 2 and "TLS to 127.0.0.1" in out.stderr, out.stderr
        # A key without its certificate is a configuration error.
        out = start("spool-api", {"REDIS_URL": url, "SPOOL_REDIS_CA_FILE": str(ca.cert), "SPOOL_REDIS_KEY_FILE": str(client_key)})
        assert out.returncode == 2 and "SPOOL_REDIS_CERT_FILE" in out.stderr, out.stderr
        env = {"SPOOL_REDIS_CA_FILE": str(ca.cert), "SPOOL_REDIS_CERT_FILE": str(client_cert), "SPOOL_REDIS_KEY_FILE": str(client_key)}
        api = API(url, env=env)
        worker = Worker(url, queues="m", env=env)
        try:
            job = api.enqueue("m", {"type": "echo", "payload": "mutual"})
            assert api.wait_state(job["id"], "succeeded")["result"] == "mutual"
        finally:
            worker.stop()
            api.stop()
    finally:
        server.terminate()
        server.wait(10)
