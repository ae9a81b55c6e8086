"""Every `sh` example of the README runs as written against what `make run`
starts (issue 11, item 6): Redis, the API and one worker for the default queue,
logging JSON lines to .spool/logs/. The blocks run in order in one bash, so a
variable an early block sets (ID) serves the later ones. A block is left out
only when an HTML comment right before it says "not run by the README test"
(and why: it needs Docker, a cluster, or installs things).

The one change made to the text: `localhost:8080` becomes the test API's port."""
import json
import re
import subprocess

from harness import ROOT

SKIP_MARK = "not run by the README test"


def readme_blocks():
    lines = (ROOT / "README.md").read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            before = [l for l in lines[max(0, i - 3):i] if l.strip()]
            skipped = bool(before) and before[-1].lstrip().startswith("<!--") and SKIP_MARK in before[-1]
            j = i + 1
            while lines[j].strip() != "```":
                j += 1
            blocks.append((i + 1, "\n".join(lines[i + 1:j]), skipped))
            i = j
        i += 1
    return blocks


def test_the_readme_has_runnable_examples():
    blocks = readme_blocks()
    runnable = [b for b in blocks if not b[2]]
    assert len(runnable) >= 10, f"only {len(runnable)} runnable blocks"
    for line, text, skipped in blocks:
        if skipped:
            continue
        assert "localhost:8080" in text or ".spool/logs" in text, f"README block at line {line} talks to nothing"


def test_every_readme_example_runs_as_written(spawn, tmp_path):
    api = spawn.api()
    worker = spawn.worker(queues="default", env={"SPOOL_LOG_FORMAT": "json"})
    logs = tmp_path / ".spool" / "logs"
    logs.mkdir(parents=True)
    (logs / "api.log").symlink_to(api.log_path)
    (logs / "worker.log").symlink_to(worker.log_path)
    script = ["set -euo pipefail"]
    for line, text, skipped in readme_blocks():
        if skipped:
            continue
        script.append(f"echo '=== README line {line}'")
        script.append(text.replace("localhost:8080", f"localhost:{api.port}"))
        script.append("echo")  # curl prints no final newline
    out = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"a README example failed (exit {out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-2000:]}"
    # No example may answer an error: they show what works.
    errors = [l for l in out.stdout.splitlines() if re.search(r'"error":\s*\{"code"', l)]
    assert not errors, "README examples answered errors:\n" + "\n".join(errors[:5])
    sections = out.stdout.split("=== README line ")
    quick_start = sections[1]
    assert '"state": "succeeded"' in quick_start and '"hello": "world"' in quick_start, quick_start
    # The log example finds the quick start's job in the worker's JSON log.
    log_line = next(line for line, text, _ in readme_blocks() if ".spool/logs/worker.log" in text)
    log_section = next(s for s in sections if s.startswith(f"{log_line}\n"))
    found = [json.loads(l) for l in log_section.splitlines()[1:] if l.startswith("{")]
    assert any(f.get("msg") == "job succeeded" for f in found), log_section
