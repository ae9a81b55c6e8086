"""compose/sentinel.yml layered over docker-compose.yml with podman-compose, as its
header tells a user to: Redis, a replica, three sentinels, the API and two workers
finding the primary through the sentinels. Then the primary container is killed
under load: the sentinels promote the replica, API and workers follow by
themselves, and every job answered 201 (SPOOL_MIN_REPLICAS=1) succeeds."""
import re
import secrets
import shutil
import threading
import time
from collections import Counter

import pytest

from conftest import REPO, TOKENS, free_port, http, make_secrets, podman, ready, record_figure, run, wait_for


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    d = tmp_path_factory.mktemp("compose-sentinel")
    for name in ("docker-compose.yml", "sentinel.yml"):
        shutil.copy(REPO / "compose" / name, d)
    port = free_port()
    settings = {"SPOOL_API_PORT": str(port), "SPOOL_WORKER_REPLICAS": "2",
                "SPOOL_IMAGE": "spool:dev"}
    env = (REPO / "compose" / ".env.example").read_text()
    for key, value in settings.items():
        env, n = re.subn(rf"^{key}=.*$", f"{key}={value}", env, flags=re.M)
        assert n == 1, f"{key} is not in .env.example"
    (d / ".env").write_text(env)
    token = make_secrets(d)
    project = f"spoolsen{secrets.token_hex(4)}"

    def compose(*args, **kw):
        return run(["podman-compose", "-p", project, "-f", "docker-compose.yml", "-f", "sentinel.yml", *args],
                   cwd=d, **kw)

    base = f"http://127.0.0.1:{port}"
    TOKENS[base] = token
    try:
        compose("up", "-d", "--no-build", timeout=300)
        wait_for(lambda: ready(base), timeout=90, what="the API's /readyz through the sentinels")
        yield project, base
    finally:
        compose("down", "-v", "-t", "5", check=False, timeout=300)


def container(project, service):
    names = podman("ps", "--format", "{{.Names}}", "--filter", f"label=io.podman.compose.project={project}",
                   "--filter", f"label=com.docker.compose.service={service}").stdout.split()
    assert names, f"no running container of {service}"
    return names[0]


def test_the_primary_killed_under_load_loses_no_accepted_job(stack):
    project, base = stack
    status, job = http("POST", f"{base}/v1/queues/default/jobs", {"type": "echo", "payload": 1})
    assert status == 201, job
    wait_for(lambda: http("GET", f"{base}/v1/jobs/{job['id']}")[1]["state"] == "succeeded", timeout=30,
             what="a first job to succeed")

    accepted, refused = [], Counter()
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                status, body = http("POST", f"{base}/v1/queues/default/jobs", {"type": "noop"}, timeout=10)
            except OSError as e:
                refused[type(e).__name__] += 1
                continue
            if status == 201:
                accepted.append((time.monotonic(), body["id"]))
            else:
                refused[(status, body["error"]["code"] if isinstance(body, dict) else body)] += 1
            time.sleep(0.02)

    t = threading.Thread(target=load)
    t.start()
    try:
        time.sleep(2)
        killed_at = time.monotonic()
        podman("kill", "-s", "KILL", container(project, "redis"))
        try:
            wait_for(lambda: any(at > killed_at + 1 for at, _ in accepted), timeout=90,
                     what="an enqueue answered 201 from the promoted replica", interval=0.5)
        except AssertionError:
            for service in ("sentinel-1", "api"):
                r = podman("logs", "--tail", "30", container(project, service), check=False)
                print(f"--- {service}\n{r.stdout[-4000:]}{r.stderr[-4000:]}")
            print("refused:", dict(refused))
            raise
        back = min(at for at, _ in accepted if at > killed_at + 1) - killed_at
        time.sleep(2)
    finally:
        stop.set()
        t.join()
    assert all(r[0] == 503 if isinstance(r, tuple) else False for r in refused), refused
    ids = [i for _, i in accepted]

    def all_succeeded():
        return all(http("GET", f"{base}/v1/jobs/{i}")[1]["state"] == "succeeded" for i in ids) or None
    wait_for(all_succeeded, timeout=120, what=f"{len(ids)} jobs answered 201 to succeed", interval=1)
    record_figure("compose_sentinel_failover_s", round(back, 1))
    print(f"Sentinel profile: primary killed; 201 again after {back:.1f} s; {len(ids)} accepted, all succeeded; "
          f"refused meanwhile: {dict(refused)}")
