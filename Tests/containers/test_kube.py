"""The Kubernetes manifests (k8s/) played with `podman kube play`, as far as
podman 4.3 supports them: the ConfigMap, the Secret, Redis, and the API and
worker Deployments, against the image `make image` built. Jobs flow end to end.

What podman cannot exercise, and stays validated offline (Tests/deploy):
- the HorizontalPodAutoscaler (api-hpa.yaml), the KEDA ScaledObject and
  TriggerAuthentication (worker-keda.yaml), the PodDisruptionBudgets (pdb.yaml),
  the Namespace and the headless Service: podman has no controllers or services;
- readiness and liveness probes: podman turns them into health checks that only
  run under systemd, which this machine does not have, and a named probe port
  needs the container's `ports`, which the play file leaves out (below); the
  probes' paths are the API's and the health port's /readyz and /healthz, which
  the image test and compose test call;
- the containers' `ports`: podman 4.3 publishes each on the host, so a second
  replica could not start; the play file drops them and the test reaches the
  API pod by its address on the podman network;
- the Redis StatefulSet: podman plays Pods and Deployments only, so its pod
  template is played as a Pod named `redis` with a PersistentVolumeClaim (a
  podman volume) in place of the volume claim template; the cluster DNS name
  `redis.spool.svc.cluster.local` in the Secret's REDIS_URL becomes `redis`, the
  pod's name on the podman network;
- the Secret: podman 4.3 reads a `kind: Secret` of the YAML but cannot then
  resolve a secretKeyRef to it, so the same keys go into a podman secret of the
  JSON form it reads; and the API's auth file (the spool-api-clients Secret,
  mounted as a volume) is played as a hostPath holding a clients.json with the
  test's token, at the same mount path;
- `$(REDIS_PASSWORD)` in the Redis container's args: Kubernetes expands it
  from the container's env, podman 4.3 does not; the play file carries the
  expanded value;
- topologySpreadConstraints, resources, preStop hooks, rolling-update strategy.
Everything else of the Deployments' pod specs is played as written: image,
command, envFrom the ConfigMap, secretKeyRef env, runAsUser 10001,
readOnlyRootFilesystem, dropped capabilities, the emptyDir on /tmp, the shared
process namespace of the worker pod, and the replica count."""
import base64
import hashlib
import json
import secrets
import time
import uuid

import pytest
import yaml

from conftest import REPO, TOKENS, http, podman, run, wait_for

K8S = REPO / "k8s"


def load(name):
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


@pytest.fixture
def played(tmp_path):
    tag = uuid.uuid4().hex[:6]
    net = f"spool-kube-{tag}"
    password = secrets.token_hex(12)
    secret = load("secret.yaml")[0]
    data = dict(secret["stringData"])
    data["REDIS_PASSWORD"] = password
    data["REDIS_URL"] = data["REDIS_URL"].replace(":change-me@", f":{password}@") \
                                         .replace("redis.spool.svc.cluster.local", "redis")
    assert "@redis:6379" in data["REDIS_URL"], data["REDIS_URL"]
    secret_name = secret["metadata"]["name"]
    secret_json = json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in data.items()})

    docs = load("configmap.yaml")
    statefulset = next(d for d in load("redis.yaml") if d["kind"] == "StatefulSet")
    template = statefulset["spec"]["template"]
    claim = statefulset["spec"]["volumeClaimTemplates"][0]
    pod_spec = dict(template["spec"])
    # Kubernetes expands $(VAR) in args from the container's env; podman 4.3
    # does not, so the play file carries the expansion the kubelet would make.
    for c in pod_spec["containers"]:
        c["args"] = [a.replace("$(REDIS_PASSWORD)", password) for a in c.get("args", [])]
    pod_spec["volumes"] = [{"name": claim["metadata"]["name"],
                            "persistentVolumeClaim": {"claimName": f"redis-data-{tag}"}}]
    docs.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                 "metadata": {"name": f"redis-data-{tag}"}, "spec": claim["spec"]})
    docs.append({"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": "redis", "labels": template["metadata"]["labels"]}, "spec": pod_spec})
    deployments = [d for f in ("api.yaml", "worker.yaml") for d in load(f) if d["kind"] == "Deployment"]
    docs += deployments
    token = "spool_" + secrets.token_urlsafe(32)
    auth_dir = tmp_path / "auth"
    auth_dir.mkdir()
    (auth_dir / "clients.json").write_text(json.dumps({"clients": [
        {"id": "kube-test", "token_sha256": hashlib.sha256(token.encode()).hexdigest(), "scopes": ["admin"], "queues": ["*"]}]}))
    auth_dir.chmod(0o755)
    (auth_dir / "clients.json").chmod(0o644)
    for d in deployments:
        for v in d["spec"]["template"]["spec"].get("volumes", []):
            if "secret" in v:
                v.pop("secret")
                v["hostPath"] = {"path": str(auth_dir), "type": "Directory"}
    # podman 4.3 publishes every containerPort on the host, so a second
    # replica could not start: the ports (which only name what a pod listens
    # on) are left out of the play file; pods are reached by their address.
    for d in docs:
        spec = d["spec"]["template"]["spec"] if d["kind"] == "Deployment" else d["spec"] if d["kind"] == "Pod" else None
        for c in (spec or {}).get("containers", []):
            c.pop("ports", None)
            for probe in ("readinessProbe", "livenessProbe"):
                c.pop(probe, None)
    for d in docs:
        d["metadata"].pop("namespace", None)
    play = tmp_path / "spool.yaml"
    play.write_text(yaml.safe_dump_all(docs))

    podman("network", "create", net)
    podman("secret", "create", secret_name, "-", input=secret_json)
    try:
        r = podman("kube", "play", "--network", net, play, timeout=180)
        yield {"net": net, "play": play, "deployments": deployments, "output": r.stdout + r.stderr, "token": token}
    finally:
        podman("kube", "down", play, check=False, timeout=120)
        podman("volume", "rm", "-f", f"redis-data-{tag}", check=False)
        podman("secret", "rm", secret_name, check=False)
        podman("network", "rm", "-f", net, check=False)


def containers_of(prefix):
    names = podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    return sorted(n for n in names if n.startswith(prefix) and not n.endswith("-infra"))


def test_manifests_play_and_jobs_flow(played):
    api_replicas = next(d for d in played["deployments"] if d["metadata"]["name"] == "spool-api")["spec"]["replicas"]
    worker_replicas = next(d for d in played["deployments"] if d["metadata"]["name"] == "spool-worker")["spec"]["replicas"]
    apis = containers_of("spool-api-pod-")
    workers = containers_of("spool-worker-pod-")
    assert len(apis) == api_replicas and len(workers) == worker_replicas, (apis, workers, played["output"])

    for name in apis + workers:
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        denied = podman("exec", name, "touch", "/usr/local/bin/x", check=False)
        assert denied.returncode != 0, "the root filesystem is read-only"
        assert podman("exec", name, "touch", "/tmp/x").returncode == 0, "/tmp is the emptyDir"

    ip = podman("inspect", "--format", f"{{{{(index .NetworkSettings.Networks \"{played['net']}\").IPAddress}}}}",
                apis[0]).stdout.strip()
    base = f"http://{ip}:8080"
    TOKENS[base] = played["token"]
    wait_for(lambda: http("GET", f"{base}/readyz", timeout=1)[0] == 200, timeout=60, what="the API pod's /readyz")
    ids = []
    for i in range(200):
        status, body = http("POST", f"{base}/v1/queues/default/jobs", {"type": "echo", "payload": {"n": i}})
        assert status == 201, body
        ids.append(body["id"])
    wait_for(lambda: all(http("GET", f"{base}/v1/jobs/{j}")[1]["state"] == "succeeded" for j in ids), timeout=60,
             what="200 jobs to succeed through the played Deployments", interval=0.5)
    assert http("GET", f"{base}/v1/jobs/{ids[7]}")[1]["result"] == {"n": 7}
    # The worker pod shares its process namespace (worker.yaml): the pause
    # process is PID 1 and reaps orphaned handler children.
    top = podman("exec", workers[0], "cat", "/proc/1/cmdline").stdout
    assert "spool-worker" not in top, f"PID 1 of the worker pod is {top!r}, not the pod's pause process"
