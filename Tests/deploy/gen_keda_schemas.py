#!/usr/bin/env python3
"""Derives JSON Schemas for KEDA's ScaledObject and TriggerAuthentication from
KEDA's CustomResourceDefinitions, so the manifests in k8s/ can be validated
offline with `jsonschema` (Tests/deploy/test_keda.py).

    python Tests/deploy/gen_keda_schemas.py [CRD_DIR]

CRD_DIR defaults to ../shared/schemas/keda beside the repository (KEDA 2.20's
config/crd/bases). The output, Tests/deploy/schemas/<kind>.<version>.json, is kept
in the repository: the tests need no network and no shared/ folder, and
test_keda.py checks that it is still what this script derives.

What the derivation does with the CRD's `spec.versions[].schema.openAPIV3Schema`:
- keeps it as JSON Schema (OpenAPI v3's schema object is a JSON Schema dialect);
- `nullable: true` adds "null" to `type`;
- `x-kubernetes-int-or-string: true` becomes integer-or-string;
- objects with `properties` and neither `additionalProperties` nor
  `x-kubernetes-preserve-unknown-fields` get `additionalProperties: false`, the
  equivalent of kubectl's strict field validation (an unknown or misspelled field is
  an error, as `kubernetes-validate --strict` makes it for the built-in kinds);
- pins `apiVersion` and `kind`, and requires `metadata.name`, `spec`;
- keeps the CEL rules (`x-kubernetes-validations`), which JSON Schema cannot
  express, as `$comment`s; test_keda.py checks the one that matters here
  (minReplicaCount <= maxReplicaCount) in Python.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_CRD_DIR = REPO.parent / "shared" / "schemas" / "keda"
OUT_DIR = HERE / "schemas"
CRD_FILES = ("keda.sh_scaledobjects.yaml", "keda.sh_triggerauthentications.yaml")
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def convert(node):
    """Returns a JSON Schema for one OpenAPI v3 (structural) schema node."""
    if isinstance(node, list):
        return [convert(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    comments = []
    for key, value in node.items():
        if key == "x-kubernetes-validations":
            comments += [f"CEL ({r.get('message', '')}): {r['rule']}" for r in value]
        elif key.startswith("x-kubernetes-"):
            continue  # handled below or irrelevant to validation (list/map types)
        elif key == "nullable":
            continue
        elif key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: convert(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = convert(value) if isinstance(value, (dict, list)) else value
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = convert(value)
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = types + ["null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if comments:
        out["$comment"] = "; ".join(comments)
    return out


def derive(crd: dict) -> dict[str, dict]:
    """One JSON Schema per served version of the CRD, keyed by file name."""
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    schemas = {}
    for version in crd["spec"]["versions"]:
        if not version.get("served", True):
            continue
        schema = convert(version["schema"]["openAPIV3Schema"])
        api_version = f"{group}/{version['name']}"
        props = schema.setdefault("properties", {})
        props["apiVersion"] = {"type": "string", "const": api_version}
        props["kind"] = {"type": "string", "const": kind}
        # The CRD says only `metadata: {type: object}`; the API server requires a name.
        props["metadata"] = {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
        schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
        # `status` is written by KEDA, never by a manifest.
        props.pop("status", None)
        schemas[f"{kind.lower()}.{version['name']}.json"] = {
            "$schema": DRAFT,
            "$id": f"spool-deploy/{kind.lower()}.{version['name']}.json",
            "title": f"{kind} ({api_version})",
            "$comment": f"Generated by Tests/deploy/gen_keda_schemas.py from KEDA's CRD {crd['metadata']['name']}; do not edit.",
            **schema,
        }
    return schemas


def render(crd_dir: Path) -> dict[str, str]:
    """File name -> file text, for every schema derived from the CRDs in crd_dir."""
    files = {}
    for name in CRD_FILES:
        crd = yaml.safe_load((crd_dir / name).read_text())
        for file_name, schema in derive(crd).items():
            files[file_name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def main(argv: list[str]) -> int:
    crd_dir = Path(argv[1]) if len(argv) > 1 else DEFAULT_CRD_DIR
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for file_name, text in render(crd_dir).items():
        (OUT_DIR / file_name).write_text(text)
        print(f"wrote {(OUT_DIR / file_name).relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
