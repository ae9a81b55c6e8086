"""Collects the figures the chaos suite measures into `.spool/chaos-figures.json`,
which `scripts/write-reliability-doc.py` renders into `docs/reliability.md`.

Layout:

    {"runs": {"full": {"started_at", "finished_at", "exit_status", "machine": {...},
                       "figures": {section: {name: value, ..., "measured_at": ts}},
                       "tests": {nodeid: {"outcome", "duration_s", "at"}}},
              "short": {...}}}

Each scale keeps its own run. A section is replaced as a whole when a test
measures it again, so a partial run (`-k`) updates what it ran and keeps the rest,
each section with its own date. The file is rewritten atomically after every
change: an interrupted run still leaves what it measured.
"""
import json
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PATH = ROOT / ".spool" / "chaos-figures.json"


def now_iso():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def machine_info():
    """nproc, CPU model, memory, kernel and redis-server version of this machine."""
    info = {"nproc": os.cpu_count(), "cpu_model": None, "mem_total_mb": None,
            "kernel": platform.release(), "redis_version": None}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_total_mb"] = int(line.split()[1]) // 1024
    except OSError:
        pass
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10)
        info["redis_version"] = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        out = subprocess.run(["nproc"], capture_output=True, text=True, timeout=10)
        info["nproc"] = int(out.stdout.strip())
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %cI %s"], capture_output=True,
                             text=True, timeout=10)
        info["git_commit"] = out.stdout.strip()[:120] or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    bin_dir = Path(os.environ.get("SPOOL_BIN_DIR", ROOT / ".build" / "debug"))
    info["binaries"] = str(bin_dir)
    try:
        mtime = (bin_dir / "spool-worker").stat().st_mtime
        info["binaries_built_at"] = datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except OSError:
        info["binaries_built_at"] = None
    return info


class Figures:
    def __init__(self, scale, path=None):
        self.scale = scale
        self.path = Path(path or os.environ.get("CHAOS_FIGURES", DEFAULT_PATH))
        self.data = self._load()
        run = self.data.setdefault("runs", {}).setdefault(scale, {})
        run.update({"scale": scale, "started_at": now_iso(), "finished_at": None, "exit_status": None,
                    "machine": machine_info()})
        run.setdefault("figures", {})
        run.setdefault("tests", {})
        self.run = run
        self._t0 = time.monotonic()
        self.save()

    def _load(self):
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def record(self, section, **values):
        """Replaces `section` with these values (and the time they were measured)."""
        values["measured_at"] = now_iso()
        values["scale"] = self.scale
        self.run["figures"][section] = values
        self.save()

    def outcome(self, nodeid, outcome, duration_s, message=None):
        entry = {"outcome": outcome, "duration_s": duration_s, "at": now_iso()}
        if message:
            entry["message"] = message
        self.run["tests"][nodeid] = entry
        self.save()

    def finish(self, exit_status):
        self.run["finished_at"] = now_iso()
        self.run["exit_status"] = int(exit_status)
        self.run["wall_s"] = round(time.monotonic() - self._t0, 1)
        self.save()

    def save(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(tmp, self.path)
