"""HTTPS on the API (SPOOL_TLS_CERT / SPOOL_TLS_KEY): checked with curl, with
Python's ssl module and with openssl s_client, against a CA made by the test.
TLS 1.2 and 1.3 only; the certificate is read again when its files change or
on SIGHUP; a broken one is refused at start and ignored (logged) on reload."""
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from harness import API, BIN_DIR, CertAuthority, free_port, secret, wait_for


@pytest.fixture
def ca(tmp_path):
    return CertAuthority(tmp_path / "pki")


@pytest.fixture
def https(ca, spawn, tmp_path):
    cert, key = ca.issue("api")
    # The API reads the files from where an operator would put them, so a test can replace them.
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(cert, live / "tls.crt")
    shutil.copy(key, live / "tls.key")
    api = spawn.api(env={"SPOOL_TLS_CERT": str(live / "tls.crt"), "SPOOL_TLS_KEY": str(live / "tls.key")}, ca=ca.cert)
    api.live = live
    return api


def served_serial(api):
    """The serial number of the certificate the API presents to a new connection."""
    ctx = ssl.create_default_context(cafile=str(api.ssl_context_ca))
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert()["serialNumber"]


def curl(*args):
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=30)


def test_curl_and_python_speak_https(https, ca, spawn):
    base = f"https://localhost:{https.port}"
    out = curl("--cacert", str(ca.cert), "-X", "POST", f"{base}/v1/queues/tls/jobs", "-d", '{"type":"echo","payload":{"over":"tls"}}')
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    spawn.worker(queues="tls")
    # Python's ssl module (the harness' client), verifying against the test CA.
    assert https.wait_state(job["id"], "succeeded")["result"] == {"over": "tls"}
    # Keep-alive: many requests on one TLS connection.
    import http.client
    conn = http.client.HTTPSConnection("127.0.0.1", https.port, context=https.ssl_context, timeout=10)
    for i in range(50):
        conn.request("GET", f"/v1/jobs/{job['id']}")
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["state"] == "succeeded"
    conn.close()
    # Without the CA, curl refuses the certificate: it is the test's own.
    assert curl(f"{base}/healthz").returncode != 0


@pytest.mark.parametrize("version,accepted", [("-tls1_3", True), ("-tls1_2", True), ("-tls1_1", False), ("-tls1", False)])
def test_only_tls_1_2_and_1_3(https, ca, version, accepted):
    # SECLEVEL=0 lets the client offer old versions, so a refusal is the server's.
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{https.port}", version, "-CAfile", str(ca.cert),
                          "-cipher", "DEFAULT@SECLEVEL=0", "-servername", "localhost"],
                         input="", capture_output=True, text=True, timeout=30)
    negotiated = "Verify return code: 0 (ok)" in out.stdout and "Cipher is (NONE)" not in out.stdout
    assert negotiated == accepted, out.stdout[-1500:] + out.stderr[-1500:]


def test_plain_http_or_garbage_on_the_https_port_harms_nothing(https):
    for junk in (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\x05hello", os.urandom(3000)):
        with socket.create_connection(("127.0.0.1", https.port), timeout=5) as s:
            s.sendall(junk)
            s.settimeout(5)
            try:
                s.recv(100)
            except (ConnectionResetError, socket.timeout):
                pass
    # A client that connects and never sends its hello holds up no one.
    idle = socket.create_connection(("127.0.0.1", https.port), timeout=5)
    assert https.get("/healthz")[0] == 200
    idle.close()
    assert https.alive()


def test_a_silent_client_is_dropped_after_the_read_timeout(ca, spawn):
    cert, key = ca.issue("api")
    api = spawn.api(env={"SPOOL_TLS_CERT": str(cert), "SPOOL_TLS_KEY": str(key), "SPOOL_HTTP_READ_TIMEOUT_MS": "500"},
                    ca=ca.cert)
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as idle:
        t0 = time.monotonic()
        assert idle.recv(100) == b""  # closed by the server, no TLS hello ever sent
        assert time.monotonic() - t0 < 3


def test_certificate_is_reloaded_on_change_and_sighup(https, ca):
    https.ssl_context_ca = ca.cert
    first = served_serial(https)
    cert, key = ca.issue("api-renewed")
    # Renewed in place, key first then certificate (a half-written pair is retried on the next change).
    shutil.copy(key, https.live / "tls.key.new")
    shutil.copy(cert, https.live / "tls.crt.new")
    os.replace(https.live / "tls.key.new", https.live / "tls.key")
    os.replace(https.live / "tls.crt.new", https.live / "tls.crt")
    wait_for(lambda: served_serial(https) != first, timeout=5, what="the renewed certificate to be served")
    second = served_serial(https)
    # A broken certificate is not taken: the one in force stays, and the log says why.
    (https.live / "tls.crt").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    wait_for(lambda: "TLS certificate not used" in https.output(), timeout=5, what="the broken certificate to be refused")
    assert served_serial(https) == second and https.get("/healthz")[0] == 200
    # SIGHUP reads the files at once.
    cert, key = ca.issue("api-third")
    shutil.copy(cert, https.live / "tls.crt")
    shutil.copy(key, https.live / "tls.key")
    https.signal(signal.SIGHUP)
    wait_for(lambda: served_serial(https) not in (first, second), timeout=3, what="SIGHUP to load the third certificate")


def test_bad_tls_settings_stop_the_start_with_a_reason(ca, tmp_path, redis):
    cert, key = ca.issue("api")
    _, other_key = ca.issue("other")

    def start(env):
        e = {"REDIS_URL": redis.url, "SPOOL_API_ADDR": f"127.0.0.1:{free_port()}", "PATH": os.environ["PATH"]}
        e.update(env)
        return subprocess.run([str(BIN_DIR / "spool-api")], env=e, capture_output=True, text=True, timeout=20)

    out = start({"SPOOL_TLS_CERT": str(cert)})
    assert out.returncode == 2 and "SPOOL_TLS_KEY" in out.stderr, out.stderr
    out = start({"SPOOL_TLS_CERT": str(cert), "SPOOL_TLS_KEY": str(other_key)})
    assert out.returncode == 2 and "does not belong to the certificate" in out.stderr, out.stderr
    out = start({"SPOOL_TLS_CERT": str(tmp_path / "missing.pem"), "SPOOL_TLS_KEY": str(key)})
    assert out.returncode == 2 and "missing.pem" in out.stderr, out.stderr
    out = start({"SPOOL_TLS_CERT": str(key), "SPOOL_TLS_KEY": str(key)})
    assert out.returncode == 2 and "certificate" in out.stderr, out.stderr


def test_tokens_over_https(ca, spawn, tmp_path):
    cert, key = ca.issue("api")
    token = secret("spool_" + "t" * 43)
    import hashlib
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps({"clients": [{"id": "c", "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
                                                "scopes": ["enqueue", "read"], "queues": ["*"]}]}))
    api = spawn.api(env={"SPOOL_TLS_CERT": str(cert), "SPOOL_TLS_KEY": str(key), "SPOOL_AUTH_FILE": str(clients)}, ca=ca.cert)
    assert api.post("/v1/queues/q/jobs", {"type": "noop"})[0] == 401
    status, _, job = api.post("/v1/queues/q/jobs", {"type": "noop"}, headers={"Authorization": f"Bearer {token}"})
    assert status == 201 and job["client"] == "c"
