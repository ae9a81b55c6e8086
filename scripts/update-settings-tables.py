#!/usr/bin/env python3
"""Writes the README's settings tables from the binaries' own declarations
(`--settings-markdown shared|own`, see Sources/Shared/Config/SettingSpec.swift).
Each table sits between `<!-- settings:NAME -->` and `<!-- /settings:NAME -->`.
Run after changing a setting: `python3 scripts/update-settings-tables.py`
(Tests/e2e/test_settings_tables.py fails while the README differs)."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("SPOOL_BIN_DIR", ROOT / ".build" / "debug"))
TABLES = {"shared": ("spool-api", "shared"), "api": ("spool-api", "own"), "worker": ("spool-worker", "own")}


def generated(name):
    binary, which = TABLES[name]
    return subprocess.run([str(BIN / binary), "--settings-markdown", which], capture_output=True, text=True,
                          check=True).stdout.strip()


def with_tables(text):
    for name in TABLES:
        pattern = re.compile(rf"(<!-- settings:{name} -->\n)(?:.*?\n)?(<!-- /settings:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README has no <!-- settings:{name} --> block")
        table = generated(name)
        text = pattern.sub(lambda m: m.group(1) + table + "\n" + m.group(2), text)
    return text


if __name__ == "__main__":
    readme = ROOT / "README.md"
    new = with_tables(readme.read_text())
    readme.write_text(new)
    print("README settings tables written from", BIN)
    sys.exit(0)
