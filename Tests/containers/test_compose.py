"""compose/docker-compose.yml run with podman-compose the way its header tells a
user to: `.env` from `.env.example`, Redis with AOF and a password, the API, four
workers. Then faults: a worker SIGKILLed and one stopped while running jobs, and
Redis restarted under load."""
import json
import re
import secrets
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO, TOKENS, free_port, http, make_secrets, podman, ready, run, wait_for

LEASE_MS = 8000
STOP_GRACE_S = 20


class Deployment:
    def __init__(self, directory, project, port):
        self.dir, self.project, self.port = directory, project, port
        self.base = f"http://127.0.0.1:{port}"

    def compose(self, *args, **kw):
        return run(["podman-compose", "-p", self.project, *args], cwd=self.dir, **kw)

    def containers(self, service, all_states=False):
        args = ["ps", "--format", "{{.Names}}", "--filter", f"label=io.podman.compose.project={self.project}",
                "--filter", f"label=com.docker.compose.service={service}"]
        if all_states:
            args.insert(1, "-a")
        return sorted(podman(*args).stdout.split())

    def logs(self, container):
        r = podman("logs", container)
        return r.stdout + r.stderr

    def enqueue_batch(self, queue, jobs):
        status, body = http("POST", f"{self.base}/v1/queues/{queue}/jobs/batch", {"jobs": jobs}, timeout=30)
        assert status == 201, body
        return [j["id"] for j in body["jobs"]]

    def job(self, jid):
        return http("GET", f"{self.base}/v1/jobs/{jid}")[1]

    def wait_all_succeeded(self, ids, timeout):
        def done():
            states = [self.job(j)["state"] for j in ids]
            return all(s == "succeeded" for s in states) or None
        wait_for(done, timeout=timeout, what=f"{len(ids)} jobs to succeed", interval=0.5)

    def queue_stats(self, queue):
        return http("GET", f"{self.base}/v1/queues/{queue}")[1]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    d = tmp_path_factory.mktemp("compose")
    shutil.copy(REPO / "compose" / "docker-compose.yml", d)
    port = free_port()
    settings = {
        "SPOOL_API_PORT": str(port),
        "SPOOL_WORKER_REPLICAS": "4",
        "SPOOL_IMAGE": "spool:dev",
        # Shorter than the defaults so the faults below resolve in seconds
        # (the Redis timeout and the kill grace must fit in the lease).
        "SPOOL_LEASE_MS": str(LEASE_MS),
        "SPOOL_WORKER_REDIS_TIMEOUT_MS": str(LEASE_MS // 4),
        "SPOOL_KILL_GRACE_MS": str(LEASE_MS // 6),
        "SPOOL_SHUTDOWN_GRACE_MS": "10000",
        "SPOOL_WORKER_STOP_GRACE": f"{STOP_GRACE_S}s",
    }
    env = (REPO / "compose" / ".env.example").read_text()
    for key, value in settings.items():
        env, n = re.subn(rf"^{key}=.*$", f"{key}={value}", env, flags=re.M)
        assert n == 1, f"{key} is not in .env.example"
    (d / ".env").write_text(env)
    token = make_secrets(d)
    dep = Deployment(d, f"spoole2e{secrets.token_hex(4)}", port)
    TOKENS[dep.base] = token
    started = time.monotonic()
    try:
        dep.compose("up", "-d", "--no-build", timeout=300)
        wait_for(lambda: ready(dep.base), timeout=60, what="the API's /readyz through the published port")
        assert len(dep.containers("worker")) == 4, dep.compose("ps").stdout
        print(f"compose up to ready: {time.monotonic() - started:.1f} s")
        yield dep
    finally:
        dep.compose("down", "-v", "-t", "5", check=False, timeout=300)


def test_every_health_check_passes(deployment):
    # Without systemd podman does not run health checks on a timer; `podman
    # healthcheck run` runs the compose file's command once, as Docker would.
    for service in ("redis", "api", "worker"):
        for container in deployment.containers(service):
            r = podman("healthcheck", "run", container, check=False)
            assert r.returncode == 0, f"{container}: {r.stdout}{r.stderr}"


def test_twenty_thousand_jobs_through_the_published_port(deployment):
    ids = []
    started = time.monotonic()
    for _ in range(20):
        ids += deployment.enqueue_batch("default", [{"type": "noop"}] * 1000)
    wait_for(lambda: deployment.queue_stats("default")["processed_total"] >= 20_000, timeout=120,
             what="20,000 jobs processed", interval=0.5)
    print(f"20,000 jobs enqueued and run in {time.monotonic() - started:.1f} s")
    stats = deployment.queue_stats("default")
    assert stats["processed_total"] == 20_000 and stats["failed_total"] == 0 and stats["dead"] == 0, stats
    assert stats["pending_total"] == 0 and stats["running"] == 0, stats

    wanted = set(ids)
    events = Counter()
    workers_used = set()
    for container in deployment.containers("worker"):
        for line in deployment.logs(container).splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)  # every line a worker writes is one JSON object
            assert "level" in entry and "msg" in entry and "ts" in entry, entry
            if entry.get("job_id") in wanted:
                events[(entry["job_id"], entry["msg"])] += 1
                workers_used.add(container)
    for jid in ids:
        assert events[(jid, "job started")] == 1 and events[(jid, "job succeeded")] == 1, (
            jid, {m: n for (j, m), n in events.items() if j == jid})
    assert len(workers_used) == 4, f"only {workers_used} ran jobs"


def running_on(deployment, container, ids):
    """Ids of `ids` the container's log says it started and has not finished."""
    started, finished = set(), set()
    for line in deployment.logs(container).splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("job_id") in ids:
            (started if e["msg"] == "job started" else finished).add(e["job_id"])
    return started - finished


def test_a_sigkilled_worker_loses_nothing(deployment):
    ids = set(deployment.enqueue_batch("default", [{"type": "sleep", "payload": {"ms": 3000}}] * 48))
    victim = deployment.containers("worker")[0]
    held = wait_for(lambda: running_on(deployment, victim, ids), timeout=20, what=f"{victim} to run jobs")
    killed_at = time.monotonic()
    podman("kill", "-s", "KILL", victim)
    deployment.wait_all_succeeded(sorted(ids), timeout=LEASE_MS / 1000 + 60)
    took = time.monotonic() - killed_at
    for jid in held:
        job = deployment.job(jid)
        assert job["state"] == "succeeded" and job["attempts"] == 2, job
    # Back within one lease (plus the 3 s the job takes, and recovery's heartbeat).
    assert took <= LEASE_MS / 1000 + 3 + 10, f"the killed worker's jobs took {took:.1f} s to finish elsewhere"
    print(f"SIGKILL: {len(held)} jobs held by {victim} finished elsewhere within {took:.1f} s; 0 lost of {len(ids)}")


def test_a_stopped_worker_drains_and_exits_0(deployment):
    workers = [c for c in deployment.containers("worker")]
    victim = workers[-1]
    ids = set(deployment.enqueue_batch("default", [{"type": "sleep", "payload": {"ms": 2000}}] * 32))
    held = wait_for(lambda: running_on(deployment, victim, ids), timeout=20, what=f"{victim} to run jobs")
    started = time.monotonic()
    podman("stop", "-t", str(STOP_GRACE_S), victim, timeout=STOP_GRACE_S + 30)
    took = time.monotonic() - started
    code = podman("inspect", "--format", "{{.State.ExitCode}}", victim).stdout.strip()
    assert code == "0", f"exit code {code}:\n{deployment.logs(victim)[-3000:]}"
    assert took < STOP_GRACE_S, f"stop took {took:.1f} s: the worker did not drain within its grace"
    deployment.wait_all_succeeded(sorted(ids), timeout=60)
    for jid in held:
        job = deployment.job(jid)
        assert job["attempts"] == 1, job  # finished in the drain, not run again
    print(f"stop: {victim} finished its {len(held)} running jobs and exited 0 in {took:.1f} s")


def test_redis_restart_under_load_loses_no_accepted_job(deployment):
    accepted, refused = [], Counter()
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                status, body = http("POST", f"{deployment.base}/v1/queues/default/jobs", {"type": "noop"}, timeout=5)
            except OSError as e:
                refused[type(e).__name__] += 1
                continue
            if status == 201:
                accepted.append(body["id"])
            else:
                refused[status] += 1
            time.sleep(0.01)

    t = threading.Thread(target=load)
    t.start()
    try:
        time.sleep(2)
        redis = deployment.containers("redis")[0]
        podman("restart", "-t", "10", redis, timeout=60)
        wait_for(lambda: ready(deployment.base), timeout=60, what="the API ready again after the Redis restart")
        time.sleep(2)
    finally:
        stop.set()
        t.join()
    assert accepted and set(refused) <= {503, "ConnectionResetError", "RemoteDisconnected", "TimeoutError"}, refused
    deployment.wait_all_succeeded(accepted, timeout=120)
    print(f"Redis restart: {len(accepted)} jobs answered 201 all succeeded; refused meanwhile: {dict(refused)}")
