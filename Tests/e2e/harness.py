"""Test harness: throwaway redis-server on a free loopback port, the real
spool-api and spool-worker binaries, and a small HTTP client.

Everything started here is stopped when the test ends, whatever happens.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("SPOOL_BIN_DIR", ROOT / ".build" / "debug"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_cluster_port():
    """A free port whose cluster bus port (port + 10000) is free as well."""
    import random
    for _ in range(200):
        port = random.randint(20000, 45000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
                return port
        except OSError:
            continue
    raise AssertionError("no free port pair for a cluster node")


def wait_for(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Polls predicate until it returns a truthy value; fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (ConnectionError, OSError, http.client.HTTPException):
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


# Added to the environment of every API and worker started on a rediss:// URL
# (the TLS mode of conftest puts SPOOL_REDIS_CA_FILE here).
EXTRA_ENV = {}


class Redis:
    """A redis-server of our own, in a temp dir, on a free port.

    `tls` = (CA file, certificate, key): it listens with TLS only, and `url`
    is a rediss:// URL."""

    def __init__(self, aof=False, appendfsync="everysec", extra_args=(), port=None, tls=None):
        self.tls = tls
        self.dir = tempfile.mkdtemp(prefix="spool-redis-")
        self.port = port or free_port()
        self.aof = aof
        self.appendfsync = appendfsync
        self.extra_args = list(extra_args)
        self.proc = None
        self.start()

    def start(self):
        listen = ["--port", str(self.port)]
        if self.tls:
            ca, cert, key = self.tls
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                      "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
        args = ["redis-server", *listen, "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--appendonly", "yes" if self.aof else "no", "--appendfsync", self.appendfsync,
                "--daemonize", "no", "--loglevel", "warning", *self.extra_args]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.ping(), timeout=10, what="redis-server to start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def acl_user(self, acl, password):
        """Makes the ACL user `acl` describes (the README's `ACL SETUSER spool
        ...` line, YOUR-PASSWORD replaced) and turns `url` into a login as it.
        The tests' own redis-cli keeps the default user."""
        words = acl.replace("YOUR-PASSWORD", password).split()
        assert words[:2] == ["ACL", "SETUSER"], words[:3]
        out = self.cli(*words)
        assert out == "OK", out
        self.user = (words[2], password)

    @property
    def url(self):
        user = getattr(self, "user", None)
        scheme = "rediss" if self.tls else "redis"
        if user:
            return f"{scheme}://{user[0]}:{user[1]}@127.0.0.1:{self.port}"
        return f"{scheme}://127.0.0.1:{self.port}"

    def cli_args(self):
        """redis-cli and the options that reach this server (TLS included)."""
        return ["redis-cli", "-p", str(self.port)] + (["--tls", "--cacert", str(self.tls[0])] if self.tls else [])

    def cli(self, *args):
        """Runs one command with redis-cli; returns its stdout, stripped."""
        out = subprocess.run([*self.cli_args(), "--raw", *map(str, args)],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip()

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
                s = ssl.create_default_context(cafile=str(self.tls[0])).wrap_socket(raw, server_hostname="127.0.0.1") \
                    if self.tls else raw
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except (OSError, ssl.SSLError):
            return False

    def keys(self, pattern="*"):
        out = self.cli("--scan", "--pattern", pattern) if False else self.cli("KEYS", pattern)
        return [k for k in out.splitlines() if k]


# Passwords and tokens the tests use: no log line of any spool process may
# hold one (checked after every test by conftest's no_secrets_in_logs).
TEST_SECRETS = set()
# Every spool process's log file, in the order started.
ALL_LOGS = []


def secret(text):
    """Registers a password or token as one that must never be logged."""
    TEST_SECRETS.add(text)
    return text


class Process:
    """A spool binary running in the background, its output captured to a file."""

    def __init__(self, args, env, name):
        self.log_path = tempfile.mktemp(prefix=f"spool-{name}-", suffix=".log")
        ALL_LOGS.append(self.log_path)
        self.log_file = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env)
        self.proc = subprocess.Popen(args, stdout=self.log_file, stderr=subprocess.STDOUT, env=full_env)

    @property
    def pid(self):
        return self.proc.pid

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_lines(self):
        """The JSON log lines written so far (non-JSON lines are skipped)."""
        lines = []
        for line in self.output().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
        return lines

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout):
        return self.proc.wait(timeout)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


class API(Process):
    def __init__(self, redis_url, env=None, args=(), ca=None):
        """`ca`: the API serves HTTPS (its env names the certificate); requests
        verify it against this CA file."""
        self.port = free_port()
        self.ssl_context = ssl.create_default_context(cafile=str(ca)) if ca else None
        # No drain on SIGTERM unless a test asks: it would add seconds to every stop.
        # redis_url None: the process finds Redis through its env (REDIS_URL_FILE).
        e = {"SPOOL_API_ADDR": f"127.0.0.1:{self.port}", "SPOOL_API_THREADS": "2", "SPOOL_API_DRAIN_MS": "0"}
        if redis_url is not None:
            e["REDIS_URL"] = redis_url
            if redis_url.startswith("rediss://"):
                e.update(EXTRA_ENV)
        e.update(env or {})
        super().__init__([str(BIN_DIR / "spool-api"), *args], e, "api")
        wait_for(lambda: self.alive() and self.get("/healthz")[0] == 200, timeout=15,
                 what=f"spool-api on port {self.port}\n{self.output()}")
        if (redis_url or "").startswith("rediss://") and self.get("/readyz")[0] != 200:
            # Over TLS the first connection takes a handshake longer: give it a
            # moment, as a load balancer waits for /readyz (Redis may also be
            # down on purpose: then go on).
            try:
                wait_for(lambda: self.get("/readyz")[0] == 200, timeout=2, what="readiness")
            except AssertionError:
                pass

    def request(self, method, path, body=None, headers=None, timeout=10):
        """Returns (status, headers dict with lower-case names, parsed JSON body or raw text)."""
        if self.ssl_context:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.ssl_context)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if body is not None and not isinstance(body, (bytes, str)):
                body = json.dumps(body)
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            raw = resp.read()
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            try:
                data = json.loads(raw) if raw else None
            except ValueError:
                data = raw.decode("utf-8", "replace")
            return resp.status, hdrs, data
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body if body is not None else b"", **kw)

    def enqueue(self, queue, job):
        status, _, data = self.post(f"/v1/queues/{queue}/jobs", job)
        assert status == 201, (status, data)
        return data

    def job(self, job_id):
        status, _, data = self.get(f"/v1/jobs/{job_id}")
        assert status == 200, (status, data)
        return data

    def wait_state(self, job_id, states, timeout=20):
        if isinstance(states, str):
            states = {states}
        return wait_for(lambda: (lambda j: j if j["state"] in states else None)(self.job(job_id)),
                        timeout=timeout, what=f"job {job_id} to reach {states}")


class Worker(Process):
    def __init__(self, redis_url, queues="default", concurrency=2, env=None, args=()):
        e = {"SPOOL_QUEUES": queues, "SPOOL_CONCURRENCY": str(concurrency)}
        if redis_url is not None:
            e["REDIS_URL"] = redis_url
            if redis_url.startswith("rediss://"):
                e.update(EXTRA_ENV)
        e.update(env or {})
        super().__init__([str(BIN_DIR / "spool-worker"), *args], e, "worker")
        wait_for(lambda: "spool-worker started" in self.output() or not self.alive(), timeout=15,
                 what="spool-worker to start")
        assert self.alive(), self.output()


class Cluster:
    """A Redis Cluster of our own on loopback: `primaries` primaries with
    `replicas` replicas each, made with `redis-cli --cluster create`.

    Its `url` is the redis+cluster:// URL naming every node as a seed; `cli`
    follows redirections (-c), `keys` asks every primary."""

    def __init__(self, primaries=3, replicas=1, node_timeout_ms=2000, extra_args=()):
        self.node_timeout_ms = node_timeout_ms
        self.nodes = [Redis(port=free_cluster_port(), extra_args=["--cluster-enabled", "yes", "--cluster-node-timeout", str(node_timeout_ms),
                                        "--cluster-config-file", "nodes.conf", *extra_args])
                      for _ in range(primaries * (replicas + 1))]
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        out = subprocess.run(["redis-cli", "--cluster", "create", *addrs, "--cluster-replicas", str(replicas),
                              "--cluster-yes"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        wait_for(lambda: all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in self.nodes), timeout=30,
                 what="the cluster to be ok on every node")
        # Every replica attached and in sync, so that a test's failover finds it ready.
        wait_for(lambda: len(self.replica_nodes()) == primaries * replicas, timeout=30, what="replicas to attach")

    @property
    def url(self):
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def alive_nodes(self):
        return [n for n in self.nodes if n.proc and n.proc.poll() is None]

    def primary_nodes(self):
        return [n for n in self.alive_nodes() if n.cli("ROLE").splitlines()[:1] == ["master"]]

    def replica_nodes(self):
        return [n for n in self.alive_nodes()
                if n.cli("ROLE").splitlines()[:1] == ["slave"] and "connected" in n.cli("ROLE")]

    def node_for_key(self, key, required=True):
        slot = int(self.alive_nodes()[0].cli("CLUSTER", "KEYSLOT", key))
        for n in self.primary_nodes():
            for line in n.cli("CLUSTER", "NODES").splitlines():
                parts = line.split()
                if "myself" in parts[2]:
                    for r in parts[8:]:
                        lo, _, hi = r.partition("-")
                        if not lo.startswith("[") and int(lo) <= slot <= int(hi or lo):
                            return n
        if required:
            raise AssertionError(f"no primary serves the slot of {key}")
        return None

    def cli(self, *args):
        any_node = self.alive_nodes()[0]
        out = subprocess.run(["redis-cli", "-c", "-p", str(any_node.port), "--raw", *map(str, args)],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip()

    def keys(self, pattern="*"):
        return [k for n in self.primary_nodes() for k in n.keys(pattern)]

    def flush(self):
        for n in self.primary_nodes():
            n.cli("FLUSHALL")

    def ping(self):
        return all(n.ping() for n in self.alive_nodes())

    def cleanup(self):
        for n in self.nodes:
            n.cleanup()


class CertAuthority:
    """A certificate authority made for one test with the openssl command
    line: it signs server (and client) certificates for loopback names."""

    def __init__(self, directory, name="Spool Test CA"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert = self.dir / "ca.pem"
        self.key = self.dir / "ca.key"
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", f"/CN={name}")
        self.serial = 1000

    def _openssl(self, *args):
        out = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr

    def issue(self, name, dns=("localhost",), ips=("127.0.0.1",), client=False):
        """(certificate path, key path) for `name`, valid for the names given."""
        self.serial += 1
        key, csr, cert = self.dir / f"{name}.key", self.dir / f"{name}.csr", self.dir / f"{name}.pem"
        ext = self.dir / f"{name}.ext"
        alt = ",".join([f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips])
        ext.write_text((f"subjectAltName={alt}\n" if alt else "")
                       + ("extendedKeyUsage=clientAuth\n" if client else "extendedKeyUsage=serverAuth\n"))
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                      "-out", csr, "-subj", f"/CN={name}")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key, "-set_serial", self.serial,
                      "-out", cert, "-days", "2", "-extfile", ext)
        return cert, key
