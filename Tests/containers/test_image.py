"""Facts about the image as built from the project's Dockerfile (make image)."""
import hashlib
import json
import secrets
import time
import uuid

from conftest import IMAGE, TOKENS, free_port, host_rss_kb, http, podman, ready, record_figure, start_redis, wait_for


def test_runs_as_uid_10001():
    assert podman("image", "inspect", "--format", "{{.Config.User}}", IMAGE).stdout.strip() == "10001:10001"
    assert podman("run", "--rm", "--entrypoint", "id", IMAGE, "-u").stdout.strip() == "10001"


def test_runtime_image_holds_no_compiler_or_swift_toolchain():
    # (Built with podman on this machine, the toolchain was lent through
    # `podman build -v`, which leaves its empty mount points, /opt/swift and
    # /opt/swift-packages, in every stage: files are what count.)
    probe = ("for c in swift swiftc swift-build clang gcc cc c++ ld as; do command -v $c; done;"
             " find / -xdev -type f \\( -name 'libswiftCore*' -o -name 'swift-frontend' -o -name '*.swiftmodule' \\)"
             " 2>/dev/null; true")
    found = podman("run", "--rm", "--entrypoint", "bash", IMAGE, "-c", probe).stdout.split()
    assert found == [], f"the runtime image carries build tools: {found}"
    # The binaries need no Swift runtime library: it is linked in statically.
    for binary in ("spool-api", "spool-worker"):
        libs = podman("run", "--rm", "--entrypoint", "bash", IMAGE, "-c",
                      f"cat /proc/self/maps >/dev/null; ldd /usr/local/bin/{binary} || true").stdout
        assert "libswift" not in libs and "not found" not in libs, libs


def test_image_size():
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    base = int(podman("image", "inspect", "--format", "{{.Size}}", "debian:bookworm-slim").stdout)
    record_figure("image_mb", round(size / 1e6, 1))
    record_figure("image_over_base_mb", round((size - base) / 1e6, 1))
    assert size <= 120e6, f"the image is {size / 1e6:.0f} MB ({(size - base) / 1e6:.0f} MB over its base)"


def test_the_image_refuses_to_serve_everyone_without_an_auth_file():
    """Secure by default: the image listens on 0.0.0.0, so without an auth file
    (or SPOOL_AUTH=none) the API does not start, and says why."""
    r = podman("run", "--rm", "-e", "REDIS_URL=redis://127.0.0.1:1", IMAGE, check=False, timeout=60)
    assert r.returncode == 2, r
    assert "SPOOL_AUTH_FILE" in r.stderr and "SPOOL_AUTH=none" in r.stderr, r.stderr


def test_api_ready_within_2s_and_both_binaries_run_with_a_read_only_root(network, tmp_path):
    net, containers = network
    redis = start_redis(net, containers)
    port = free_port()
    api = f"api-{uuid.uuid4().hex[:8]}"
    token = "spool_" + secrets.token_urlsafe(32)
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps({"clients": [{"id": "t", "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
                                                "scopes": ["admin"], "queues": ["*"]}]}))
    clients.chmod(0o644)
    started = time.monotonic()
    podman("run", "-d", "--name", api, "--network", net, "--read-only", "-p", f"127.0.0.1:{port}:8080",
           "-v", f"{clients}:/run/secrets/api-clients.json:ro", "-e", "SPOOL_AUTH_FILE=/run/secrets/api-clients.json",
           "-e", f"REDIS_URL=redis://{redis}:6379", IMAGE)
    containers.append(api)
    base = f"http://127.0.0.1:{port}"
    TOKENS[base] = token
    wait_for(lambda: ready(base), timeout=10, what="the API's /readyz")
    ready_s = time.monotonic() - started
    record_figure("api_start_to_ready_s", round(ready_s, 2))
    assert ready_s <= 2.0, f"/readyz answered 200 only {ready_s:.2f} s after podman run"
    # The mounted auth file is in force: no token, no answer.
    assert http("GET", f"{base}/v1/queues", auth=False)[0] == 401

    worker = f"worker-{uuid.uuid4().hex[:8]}"
    # A command handler that leaves a background child behind: /bin/sh runs
    # under the read-only root, and the orphan, killed with the handler's
    # group when the job ends, is reaped by the init (no zombie is left).
    handlers = '{"orphaning": "(sleep 30 &); cat"}'
    podman("run", "-d", "--name", worker, "--network", net, "--read-only", "--init",
           "-e", f"REDIS_URL=redis://{redis}:6379", "-e", "SPOOL_QUEUES=ro", "-e", f"SPOOL_HANDLERS_JSON={handlers}",
           IMAGE, "spool-worker")
    containers.append(worker)
    ids = []
    for job in ({"type": "echo", "payload": {"read_only": True}}, {"type": "orphaning", "payload": {"shell": True}}):
        status, body = http("POST", f"{base}/v1/queues/ro/jobs", job)
        assert status == 201, body
        ids.append(body["id"])
    for jid, result in zip(ids, ({"read_only": True}, {"shell": True})):
        job = wait_for(lambda: (lambda j: j if j["state"] in ("succeeded", "dead") else None)(
            http("GET", f"{base}/v1/jobs/{jid}")[1]), timeout=15, what=f"job {jid} to end")
        assert job["state"] == "succeeded" and job["result"] == result, job
    time.sleep(0.5)
    # Every process of the container, as "pid (name) state ..." (the image has
    # no ps; bash reads /proc itself).
    stats = podman("exec", worker, "bash", "-c",
                   'for p in /proc/[0-9]*/stat; do read -r l < "$p" && echo "$l"; done').stdout.splitlines()
    names_states = [(line.split(") ")[0].split(" (")[1], line.split(") ")[1].split()[0]) for line in stats]
    assert not [n for n, st in names_states if n == "sleep" or st == "Z"], names_states

    time.sleep(1)
    record_figure("idle_rss_api_kb", host_rss_kb(api))
    record_figure("idle_rss_worker_kb", host_rss_kb(worker))
    for name in (api, worker):
        podman("stop", "-t", "30", name)
        code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert code == "0", f"{name} exited {code} on SIGTERM:\n{podman('logs', name).stdout[-3000:]}"
