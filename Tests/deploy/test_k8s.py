"""k8s/: kubernetes-validate --strict on the built-in kinds, yamllint on all the
deployment YAML, and the rules of the brief the schemas cannot express."""
from __future__ import annotations

import copy
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from deploy_tools import COMPOSE_DIR, K8S, REPO, find, load_k8s_docs, run

# The versions the manifests are validated against: the oldest Kubernetes still
# common in managed offerings, and a current one (kubernetes-validate 1.37.0 ships
# schemas for 1.25 to 1.37).
K8S_VERSIONS = ("1.30.0", "1.34.0")
YAMLLINT_CONFIG = Path(__file__).resolve().parent / "yamllint.yaml"
BUILTIN_GROUPS = {"v1", "apps/v1", "autoscaling/v2", "policy/v1"}
HAND_BACK_MARGIN_MS = 5_000


def builtin(doc: dict) -> bool:
    return doc["apiVersion"] in BUILTIN_GROUPS


def write_docs(tmp_path: Path, docs: list[dict]) -> list[Path]:
    paths = []
    for i, d in enumerate(docs):
        p = tmp_path / f"{i:02d}-{d['kind'].lower()}-{d['metadata']['name']}.yaml"
        p.write_text(yaml.safe_dump(d, sort_keys=False))
        paths.append(p)
    return paths


def kv(kubernetes_validate, version: str, files) -> tuple[int, str]:
    r = run([kubernetes_validate, "--strict", "-k", version, *files], timeout=120)
    return r.returncode, r.stdout + r.stderr


# ---------------------------------------------------------------- kubernetes-validate


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_kinds_validate_strictly(kubernetes_validate, k8s_docs, tmp_path, version):
    docs = [d for _, d in k8s_docs if builtin(d)]
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "ConfigMap", "Secret", "StatefulSet", "Service", "Deployment",
            "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    # Every document outside the built-in groups is a KEDA one (test_keda.py).
    assert {d["apiVersion"] for _, d in k8s_docs if not builtin(d)} == {"keda.sh/v1alpha1"}
    rc, out = kv(kubernetes_validate, version, write_docs(tmp_path, docs))
    assert rc == 0, out
    # Each resource was really checked (an unknown kind is only a warning).
    assert "Couldn't find schema" not in out, out
    assert out.count(" passed ") == len(docs), out


def _deployment(k8s_docs, name):
    return copy.deepcopy(find(k8s_docs, "Deployment", name))


def test_broken_wrong_typed_field_fails(kubernetes_validate, k8s_docs, tmp_path):
    d = _deployment(k8s_docs, "spool-api")
    d["spec"]["replicas"] = "two"
    rc, out = kv(kubernetes_validate, K8S_VERSIONS[-1], write_docs(tmp_path, [d]))
    assert rc != 0, out
    assert "spec.replicas: 'two' is not of type 'integer'" in out, out


def test_broken_unknown_field_fails_in_strict_mode(kubernetes_validate, k8s_docs, tmp_path):
    d = _deployment(k8s_docs, "spool-worker")
    c = d["spec"]["template"]["spec"]["containers"][0]
    c["livenesProbe"] = c.pop("livenessProbe")  # a typo drops the probe silently in non-strict mode
    rc, out = kv(kubernetes_validate, K8S_VERSIONS[-1], write_docs(tmp_path, [d]))
    assert rc != 0, out
    assert "'livenesProbe' was unexpected" in out, out


def test_broken_missing_required_field_fails(kubernetes_validate, k8s_docs, tmp_path):
    d = _deployment(k8s_docs, "spool-api")
    del d["spec"]["template"]["spec"]["containers"][0]["name"]
    rc, out = kv(kubernetes_validate, K8S_VERSIONS[-1], write_docs(tmp_path, [d]))
    assert rc != 0, out
    assert "'name' is a required property" in out, out


# ---------------------------------------------------------------- yamllint


def yaml_targets() -> list[Path]:
    return sorted([*K8S.glob("*.yaml"), *COMPOSE_DIR.glob("*.yml"), *Path(__file__).parent.glob("*.yaml")])


def test_yamllint_passes(yamllint):
    targets = yaml_targets()
    assert len(targets) >= 10
    r = run([yamllint, "--strict", "-f", "parsable", "-c", YAMLLINT_CONFIG, *targets])
    assert r.returncode == 0, r.stdout + r.stderr


def test_yamllint_rejects_duplicate_key(yamllint, tmp_path):
    bad = tmp_path / "dup.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n"
        "  SPOOL_QUEUES: \"default\"\n  SPOOL_QUEUES: \"other\"\n"
    )
    r = run([yamllint, "-f", "parsable", "-c", YAMLLINT_CONFIG, bad])
    assert r.returncode != 0, r.stdout
    assert "[error]" in r.stdout and "key-duplicates" in r.stdout, r.stdout


def test_yamllint_rejects_bare_yes(yamllint, tmp_path):
    bad = tmp_path / "truthy.yaml"
    bad.write_text("command:\n  - redis-server\n  - --appendonly\n  - yes\n")
    r = run([yamllint, "--strict", "-f", "parsable", "-c", YAMLLINT_CONFIG, bad])
    assert r.returncode != 0 and "truthy" in r.stdout, r.stdout


# ---------------------------------------------------------------- probes


def pod_specs(docs):
    for _, d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]


def liveness_problems(docs) -> list[str]:
    """Liveness must not depend on Redis: /readyz asks Redis, so a Redis outage
    would restart every pod at once."""
    problems = []
    for name, spec in pod_specs(docs):
        for c in spec["containers"]:
            path = ((c.get("livenessProbe") or {}).get("httpGet") or {}).get("path")
            if path == "/readyz":
                problems.append(f"{name}/{c['name']}: liveness probe on /readyz")
    return problems


def test_liveness_probes_never_hit_readyz(k8s_docs):
    assert liveness_problems(k8s_docs) == []


def test_liveness_check_catches_readyz(k8s_docs):
    docs = copy.deepcopy(k8s_docs)
    d = find(docs, "Deployment", "spool-worker")
    d["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["path"] = "/readyz"
    assert liveness_problems(docs) == ["spool-worker/worker: liveness probe on /readyz"]


@pytest.mark.parametrize("name, port", [("spool-api", "http"), ("spool-worker", "health")])
def test_spool_probes(k8s_docs, name, port):
    c = find(k8s_docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    assert port in {p["name"] for p in c["ports"]}


def test_worker_health_port_matches_its_container_port(k8s_docs):
    c = find(k8s_docs, "Deployment", "spool-worker")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert int(env["SPOOL_HEALTH_PORT"]) == next(p["containerPort"] for p in c["ports"] if p["name"] == "health")


def test_api_listens_where_its_port_is(k8s_docs):
    c = find(k8s_docs, "Deployment", "spool-api")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["SPOOL_API_ADDR"] == f"0.0.0.0:{next(p['containerPort'] for p in c['ports'] if p['name'] == 'http')}"


# ---------------------------------------------------------------- shutdown, scaling, safety


def test_worker_grace_exceeds_shutdown_grace(k8s_docs):
    grace_ms = int(find(k8s_docs, "ConfigMap", "spool-config")["data"].get("SPOOL_SHUTDOWN_GRACE_MS", "25000"))
    tgps = find(k8s_docs, "Deployment", "spool-worker")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert tgps * 1000 >= grace_ms + HAND_BACK_MARGIN_MS


def test_api_drains_within_its_grace(k8s_docs):
    data = find(k8s_docs, "ConfigMap", "spool-config")["data"]
    drain, grace = int(data["SPOOL_API_DRAIN_MS"]), int(data["SPOOL_API_SHUTDOWN_GRACE_MS"])
    tgps = find(k8s_docs, "Deployment", "spool-api")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert 0 < drain <= grace < tgps * 1000, (drain, grace, tgps)


def test_api_replicas_hpa_and_pdbs(k8s_docs):
    api = find(k8s_docs, "Deployment", "spool-api")
    assert api["spec"]["replicas"] >= 2
    hpa = find(k8s_docs, "HorizontalPodAutoscaler", "spool-api")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "spool-api"}
    assert hpa["spec"]["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    for name in ("spool-api", "spool-worker"):
        pdb = find(k8s_docs, "PodDisruptionBudget", name)
        labels = find(k8s_docs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # The API's CPU request is what the HPA's utilization is relative to.
    assert api["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]


@pytest.mark.parametrize("kind, name", [("Deployment", "spool-api"), ("Deployment", "spool-worker"),
                                        ("StatefulSet", "redis")])
def test_pods_are_locked_down(k8s_docs, kind, name):
    spec = find(k8s_docs, kind, name)["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]


def test_redis_statefulset(k8s_docs):
    sts = find(k8s_docs, "StatefulSet", "redis")
    c = sts["spec"]["template"]["spec"]["containers"][0]
    args = c["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction", "an eviction policy deletes jobs silently"
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"]}
    assert env["REDIS_PASSWORD"] == {"name": "spool-redis", "key": "REDIS_PASSWORD"}
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] in {m["name"] for m in c["volumeMounts"]}
    assert find(k8s_docs, "Service", "redis")["spec"]["ports"][0]["port"] == 6379


def test_references_resolve(k8s_docs):
    """Every ConfigMap/Secret key a pod reads exists; the Secret's URL carries its
    password."""
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for _, d in k8s_docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"]: {**d.get("data", {}), **d.get("stringData", {})}
               for _, d in k8s_docs if d["kind"] == "Secret"}
    for name, spec in pod_specs(k8s_docs):
        for c in spec["containers"]:
            for ef in c.get("envFrom", []):
                assert ef["configMapRef"]["name"] in configmaps, name
            for e in c.get("env", []):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]], f"{name}: {ref}"
    s = secrets["spool-redis"]
    assert urlparse(s["REDIS_URL"]).password == s["REDIS_PASSWORD"]


def test_every_object_is_in_the_namespace(k8s_docs):
    for _, d in k8s_docs:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "spool", d["metadata"]["name"]


def test_kustomization_lists_every_manifest():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == files
    assert kust["namespace"] == "spool"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (optional check)")
def test_kustomize_renders_every_object():
    r = run(["kubectl", "kustomize", K8S], timeout=120)
    assert r.returncode == 0, r.stderr
    rendered = [d for d in yaml.safe_load_all(r.stdout) if d]
    assert len(rendered) == len(load_k8s_docs())


def test_readme_exists():
    text = (REPO / "k8s" / "README.md").read_text()
    for word in ("kubectl apply -k", "SIGTERM", "lease", "KEDA", "terminationGracePeriodSeconds"):
        assert word in text, word


def test_the_api_reads_its_auth_file_from_a_secret(k8s_docs):
    """The API pods get SPOOL_AUTH_FILE inside a read-only mount of the
    spool-api-clients Secret (not subPath: that would never see an update), and
    the Secret as shipped admits nobody: a placeholder token would be a hole."""
    import json
    api = find(k8s_docs, "Deployment", "spool-api")["spec"]["template"]["spec"]
    c = api["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    mount = next(m for m in c["volumeMounts"] if m["name"] == "auth")
    assert mount.get("readOnly") is True and "subPath" not in mount
    assert env["SPOOL_AUTH_FILE"] == mount["mountPath"].rstrip("/") + "/clients.json"
    volume = next(v for v in api["volumes"] if v["name"] == "auth")
    secret = find(k8s_docs, "Secret", volume["secret"]["secretName"])
    assert json.loads(secret["stringData"]["clients.json"]) == {"clients": []}
    # The worker needs no tokens: it never calls the API.
    worker = find(k8s_docs, "Deployment", "spool-worker")["spec"]["template"]["spec"]
    assert all(e["name"] != "SPOOL_AUTH_FILE" for e in worker["containers"][0]["env"])
