import os
import signal
import uuid

import pytest

import harness
from harness import API, Cluster, Redis, Worker

# SPOOL_TEST_REDIS=cluster runs the suite against a Redis Cluster (3 primaries,
# 3 replicas) instead of one redis-server: one cluster for the whole session,
# emptied before each test.
CLUSTER_MODE = os.environ.get("SPOOL_TEST_REDIS", "single") == "cluster"
# SPOOL_TEST_REDIS=acl: the API and workers log in as the least-privileged ACL
# user the README's Security section writes down (its ACL SETUSER line, read
# from the README itself), so a command Spool needs and the README forgets
# fails the run with NOPERM.
ACL_MODE = os.environ.get("SPOOL_TEST_REDIS", "single") == "acl"
ACL_PASSWORD = harness.secret("acl-pw-5Tq8v")
# SPOOL_TEST_REDIS=tls: the redis-server listens with TLS only (a CA made for
# the session), every spool process gets a rediss:// URL and the CA.
TLS_MODE = os.environ.get("SPOOL_TEST_REDIS", "single") == "tls"


def readme_acl():
    """The README's ACL line, as redis-cli would pass it (quotes and the
    backslash before a `|` are the shell's)."""
    line = next(l for l in (harness.ROOT / "README.md").read_text().splitlines()
                if l.startswith("redis-cli ACL SETUSER spool "))
    return line[len("redis-cli "):].replace("'", "").replace("\\|", "|")


def pytest_collection_modifyitems(config, items):
    """In cluster mode, tests marked single_redis (they stop, restart or
    reconfigure the one redis-server) are skipped with the reason given."""
    if not (CLUSTER_MODE or ACL_MODE or TLS_MODE):
        return
    for item in items:
        mark = item.get_closest_marker("single_redis")
        if mark:
            item.add_marker(pytest.mark.skip(reason="own redis-server setup: " + (mark.args[0] if mark.args else "")))


def pytest_configure(config):
    config.addinivalue_line("markers", "single_redis(why): needs one redis-server of its own (skipped on a cluster)")


@pytest.fixture(scope="session")
def shared_cluster():
    if not CLUSTER_MODE:
        yield None
        return
    c = Cluster()
    yield c
    c.cleanup()
from helpers import pgrep


@pytest.fixture(autouse=True)
def no_secrets_in_logs():
    """After each test: no log line of the spool processes it started holds a
    password or token the tests registered (harness.secret), whatever the
    log level, error or path taken."""
    first = len(harness.ALL_LOGS)
    yield
    for path in harness.ALL_LOGS[first:]:
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            continue
        for s in harness.TEST_SECRETS:
            assert s not in text, f"a test secret appears in {path}: " + next(l for l in text.splitlines() if s in l)[:300]


@pytest.fixture
def marker():
    """A unique string that only the processes a test's handler starts carry in
    their command line (never the worker's: it is written inside the scripts).
    Any such process still alive at the end is killed by pid."""
    m = f"spool-e2e-{uuid.uuid4().hex}"
    yield m
    for pid in pgrep(m):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="session")
def redis_tls(tmp_path_factory):
    """(CA, certificate, key) for the TLS mode's redis-servers, else None."""
    if not TLS_MODE:
        return None
    ca = harness.CertAuthority(tmp_path_factory.mktemp("redis-pki"))
    cert, key = ca.issue("redis")
    harness.EXTRA_ENV["SPOOL_REDIS_CA_FILE"] = str(ca.cert)
    return (ca.cert, cert, key)


@pytest.fixture
def redis(shared_cluster, redis_tls):
    if shared_cluster:
        shared_cluster.flush()
        yield shared_cluster
        return
    r = Redis(tls=redis_tls)
    if ACL_MODE:
        r.acl_user(readme_acl(), ACL_PASSWORD)
    yield r
    r.cleanup()


@pytest.fixture
def spawn(redis):
    """Starts APIs and workers against the test's Redis; stops them all after."""
    started = []

    class Spawner:
        def api(self, env=None, args=(), ca=None):
            p = API(redis.url, env=env, args=args, ca=ca)
            started.append(p)
            return p

        def worker(self, queues="default", concurrency=2, env=None, args=()):
            p = Worker(redis.url, queues=queues, concurrency=concurrency, env=env, args=args)
            started.append(p)
            return p

    yield Spawner()
    for p in reversed(started):
        p.stop()
