"""The image, the compose file and the Kubernetes manifests, run for real with
podman (`make deploy-e2e`). `make image` has built spool:dev before these run."""
import json
import os
import shutil
import sys
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The e2e harness' helpers (free_port, wait_for) serve these tests too.
sys.path.insert(0, str(REPO / "Tests" / "e2e"))
from harness import free_port, wait_for  # noqa: E402,F401
IMAGE = os.environ.get("SPOOL_IMAGE", "spool:dev")
FIGURES = REPO / ".spool" / "container-figures.json"


def run(args, check=True, timeout=300, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def podman(*args, **kw):
    return run(["podman", *args], **kw)


# API tokens by base URL (http://host:port): every request to that API carries its own.
TOKENS = {}


def make_secrets(directory):
    """Runs compose/make-secrets.sh in a copy of compose/ as a user would;
    returns the admin token it made."""
    shutil.copy(REPO / "compose" / "make-secrets.sh", directory)
    run(["bash", directory / "make-secrets.sh"])
    return (directory / "secrets" / "admin-token").read_text().strip()


def http(method, url, body=None, timeout=5, auth=True):
    """(status, parsed JSON body or text); never raises for an HTTP status.
    `auth`: with the API's token (TOKENS) when it has one."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    token = next((t for base, t in TOKENS.items() if url.startswith(base + "/")), None) if auth else None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def ready(base):
    try:
        return http("GET", f"{base}/readyz", timeout=1)[0] == 200
    except (OSError, urllib.error.URLError):
        return False


def record_figure(name, value):
    """Figures the README quotes (image size, start-to-ready, idle RSS)."""
    FIGURES.parent.mkdir(exist_ok=True)
    figures = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    figures[name] = value
    FIGURES.write_text(json.dumps(figures, indent=2))
    print(f"figure {name}: {value}")


def host_rss_kb(container):
    """Resident memory of the container's spool process (PID 1, or PID 1's
    child under --init), read from the host's /proc."""
    pid = podman("inspect", "--format", "{{.State.Pid}}", container).stdout.strip()
    if not Path(f"/proc/{pid}/comm").read_text().startswith("spool-"):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pid = next(c for c in children if Path(f"/proc/{c}/comm").read_text().startswith("spool-"))
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


@pytest.fixture(scope="session", autouse=True)
def image():
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make image` (it installs and sets it up)")
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.fail(f"image {IMAGE} is missing: run `make image` first")
    return IMAGE


@pytest.fixture
def network():
    """A podman network of the test's own, removed with everything on it."""
    name = f"spool-e2e-{uuid.uuid4().hex[:8]}"
    podman("network", "create", name)
    containers = []
    yield name, containers
    for c in containers:
        podman("rm", "-f", "-t", "0", c, check=False)
    podman("network", "rm", "-f", name, check=False)


def start_redis(network_name, containers, name=None, args=()):
    name = name or f"redis-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, "--network", network_name, "redis:7", "redis-server", "--save", "",
           "--appendonly", "no", *args)
    containers.append(name)
    wait_for(lambda: podman("exec", name, "redis-cli", "ping", check=False).stdout.strip() == "PONG", timeout=20,
             what="redis in its container to answer PING")
    return name
