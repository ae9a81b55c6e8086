"""Each setting is declared once (Sources/Shared/Config/SettingSpec.swift and the
binaries' *Settings.swift): the README's settings tables must be what the
binaries print from those declarations, and --help must list every flag."""
import importlib.util
import subprocess

from harness import BIN_DIR, ROOT


def load_updater():
    spec = importlib.util.spec_from_file_location("update_settings_tables", ROOT / "scripts" / "update-settings-tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.BIN = BIN_DIR
    return module


def test_readme_settings_tables_match_the_declarations():
    readme = (ROOT / "README.md").read_text()
    expected = load_updater().with_tables(readme)
    assert readme == expected, ("the README's settings tables differ from the binaries' declarations; "
                                "run `python3 scripts/update-settings-tables.py`")


def test_help_lists_every_declared_flag_with_its_variable():
    for binary in ("spool-api", "spool-worker"):
        table = subprocess.run([str(BIN_DIR / binary), "--settings-markdown", "own"], capture_output=True, text=True,
                               check=True).stdout
        help_text = subprocess.run([str(BIN_DIR / binary), "--help"], capture_output=True, text=True, check=True).stdout
        rows = [l for l in table.splitlines()[2:] if l.startswith("|")]
        assert len(rows) >= 10
        for row in rows:
            flag, env = [c.strip().strip("`") for c in row.split("|")[1:3]]
            assert env in help_text, (binary, env)
            if flag != "–":
                assert f"{flag} <value>" in help_text, (binary, flag)
        bad = subprocess.run([str(BIN_DIR / binary), "--settings-markdown", "all"], capture_output=True, text=True)
        assert bad.returncode == 64 and "shared, own" in bad.stderr
