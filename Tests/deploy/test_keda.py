"""k8s/worker-keda.yaml: the ScaledObject and TriggerAuthentication against JSON
Schemas derived from KEDA 2.20's CRDs (Tests/deploy/schemas, made by
gen_keda_schemas.py), plus what the CRDs' CEL rules and the scaler's semantics
require."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

import gen_keda_schemas
from deploy_tools import find

SCHEMAS = Path(__file__).resolve().parent / "schemas"
PRIORITIES = ("urgent", "high", "normal", "low")


def validator(kind: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{kind.lower()}.v1alpha1.json").read_text())
    return Draft202012Validator(schema)


def errors(doc: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(doc["kind"]).iter_errors(doc)]


@pytest.fixture(scope="module")
def keda_docs(k8s_docs) -> list[dict]:
    docs = [d for _, d in k8s_docs if d["apiVersion"].startswith("keda.sh/")]
    assert sorted(d["kind"] for d in docs) == ["ScaledObject", "TriggerAuthentication"]
    return docs


@pytest.fixture()
def scaled_object(k8s_docs) -> dict:
    return copy.deepcopy(find(k8s_docs, "ScaledObject", "spool-worker"))


# ---------------------------------------------------------------- the schemas


def test_schemas_are_valid_json_schemas():
    files = sorted(SCHEMAS.glob("*.json"))
    assert [f.name for f in files] == ["scaledobject.v1alpha1.json", "triggerauthentication.v1alpha1.json"]
    for f in files:
        Draft202012Validator.check_schema(json.loads(f.read_text()))


@pytest.mark.skipif(not gen_keda_schemas.DEFAULT_CRD_DIR.is_dir(),
                    reason="shared/schemas/keda is not beside the repository")
def test_committed_schemas_are_what_the_generator_derives():
    rendered = gen_keda_schemas.render(gen_keda_schemas.DEFAULT_CRD_DIR)
    for name, text in rendered.items():
        assert (SCHEMAS / name).read_text() == text, f"{name} is stale: run python Tests/deploy/gen_keda_schemas.py"


# ---------------------------------------------------------------- the manifests


def test_keda_manifests_validate(keda_docs):
    for d in keda_docs:
        assert errors(d) == [], d["kind"]


def test_broken_numeric_trigger_metadata_fails(scaled_object):
    scaled_object["spec"]["triggers"][0]["metadata"]["listLength"] = 16
    errs = errors(scaled_object)
    assert any("spec.triggers.0.metadata.listLength" in e and "is not of type 'string'" in e for e in errs), errs


def test_broken_unknown_field_fails(scaled_object):
    scaled_object["spec"]["pollingIntervall"] = 10
    assert any("'pollingIntervall' was unexpected" in e for e in errors(scaled_object))


def test_broken_missing_triggers_and_bad_enum_fail(scaled_object):
    del scaled_object["spec"]["triggers"]
    scaled_object["spec"]["advanced"]["scalingModifiers"]["metricType"] = "Utilization"
    errs = errors(scaled_object)
    assert any("'triggers' is a required property" in e for e in errs), errs
    assert any("scalingModifiers.metricType" in e for e in errs), errs


def test_broken_trigger_authentication_fails(k8s_docs):
    ta = copy.deepcopy(find(k8s_docs, "TriggerAuthentication", "spool-redis"))
    del ta["spec"]["secretTargetRef"][0]["key"]
    assert any("'key' is a required property" in e for e in errors(ta))


def test_min_replicas_not_above_max(scaled_object):
    """The CRD's CEL rule, which JSON Schema cannot express."""
    spec = scaled_object["spec"]
    assert spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100)


# ---------------------------------------------------------------- the scaling design


def test_worker_never_scales_to_zero(scaled_object):
    """Workers promote delayed jobs and retries and recover expired leases; with
    none running, a delayed job would never reach a pending list the triggers see."""
    assert scaled_object["spec"]["minReplicaCount"] >= 1


def test_triggers_cover_every_pending_list(k8s_docs, scaled_object):
    config = find(k8s_docs, "ConfigMap", "spool-config")["data"]
    prefix = config.get("SPOOL_PREFIX", "spool")
    queues = config.get("SPOOL_QUEUES", "default").split(",")
    expected = {f"{prefix}:{{{q}}}:pending:{p}" for q in queues for p in PRIORITIES}
    triggers = scaled_object["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis"}
    assert {t["metadata"]["listName"] for t in triggers} == expected
    worker = find(k8s_docs, "Deployment", "spool-worker")
    assert scaled_object["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]


def test_formula_sums_every_trigger(scaled_object):
    mods = scaled_object["spec"]["advanced"]["scalingModifiers"]
    names = {t["name"] for t in scaled_object["spec"]["triggers"]}
    assert set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", mods["formula"])) == names
    assert set(re.findall(r"[^\sA-Za-z0-9_]", mods["formula"])) == {"+"}
    assert int(mods["target"]) > 0


def test_triggers_authenticate_from_the_secret(k8s_docs, scaled_object):
    secret = find(k8s_docs, "Secret", "spool-redis")
    for t in scaled_object["spec"]["triggers"]:
        assert "password" not in t["metadata"] and "passwordFromEnv" not in t["metadata"]
        ref = t["authenticationRef"]
        assert ref.get("kind", "TriggerAuthentication") == "TriggerAuthentication"
        ta = find(k8s_docs, "TriggerAuthentication", ref["name"])
        params = {s["parameter"]: s for s in ta["spec"]["secretTargetRef"]}
        assert params["password"]["name"] == secret["metadata"]["name"]
        assert params["password"]["key"] in secret["stringData"]
        # KEDA's operator runs in its own namespace: the address must be the full name.
        host = t["metadata"]["address"].rsplit(":", 1)[0]
        assert host == f"redis.{scaled_object['metadata']['namespace']}.svc.cluster.local"
