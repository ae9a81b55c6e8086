"""Dockerfile: hadolint, and the runtime stage installs every library the release
binaries load (checked by building them as the Dockerfile does and running ldd)."""
from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest

from deploy_tools import REPO, run

DOCKERFILE = REPO / "Dockerfile"
SCRATCH = REPO / ".build-static"
BINARIES = ("spool-api", "spool-worker")

# Packages that debian:bookworm-slim already carries, so the runtime stage need not
# install them. The slim image holds Debian's "Priority: required" set plus apt;
# libc6 is required, and apt Depends on libgcc-s1 and libstdc++6 (apt is C++), so
# all three are there. test_base_packages_are_in_bookworm_slim re-derives this from
# the package database of a Debian 12 host.
BOOKWORM_SLIM_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each instruction, continuation lines joined."""
    out, buf = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def stages(text: str) -> list[dict]:
    """[{"from": image, "name": alias, "runs": [RUN arguments]}] in order."""
    result = []
    for word, rest in instructions(text):
        if word == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            result.append({"from": parts[0], "name": name, "runs": []})
        elif word == "RUN":
            result[-1]["runs"].append(rest)
    return result


def apt_packages(runs: list[str]) -> dict[str, str | None]:
    """package -> version pattern (or None) of every `apt-get install` in runs."""
    pkgs: dict[str, str | None] = {}
    for run_args in runs:
        for command in re.split(r"&&|;|\|\|", run_args):
            words = shlex.split(command)
            while words and "=" in words[0] and not words[0].startswith("-"):
                words.pop(0)  # VAR=value prefixes
            if words[:2] != ["apt-get", "install"]:
                continue
            for w in words[2:]:
                if w.startswith("-"):
                    continue
                name, _, version = w.partition("=")
                pkgs[name] = version or None
    return pkgs


def swift_build_flags(runs: list[str]) -> list[str]:
    for run_args in runs:
        for command in run_args.split("&&"):
            words = shlex.split(command)
            if words[:2] == ["swift", "build"]:
                return words[2:]
    raise AssertionError("the build stage has no `swift build`")


# ---------------------------------------------------------------- hadolint


def test_hadolint_passes(hadolint):
    r = run([hadolint, "--no-color", DOCKERFILE])
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(
    "broken, rule",
    [
        # an instruction that does not exist: a parse error, reported at line 2
        ("FROM debian:bookworm-slim\nRUNN echo hello\n", "Dockerfile:2:"),
        # unpinned, recommends on, apt lists kept: DL3008, DL3015, DL3009
        ("FROM debian:bookworm-slim\nRUN apt-get update && apt-get install -y curl\n", "DL3008"),
        # an untagged base image and root as the last user
        ("FROM debian\nUSER root\nCMD [\"true\"]\n", "DL3006"),
    ],
    ids=["unknown-instruction", "unpinned-apt", "untagged-root"],
)
def test_hadolint_rejects_broken_dockerfile(hadolint, tmp_path, broken, rule):
    path = tmp_path / "Dockerfile"
    path.write_text(broken)
    r = run([hadolint, "--no-color", path])
    assert r.returncode != 0, f"hadolint accepted:\n{broken}"
    assert rule in (r.stdout + r.stderr)


# ---------------------------------------------------------------- structure


def test_dockerfile_shape():
    text = DOCKERFILE.read_text()
    st = stages(text)
    assert len(st) == 2, "a build stage and a runtime stage"
    build, runtime = st
    assert re.fullmatch(r"swift:[0-9][0-9.]*-bookworm", build["from"]), build["from"]
    assert runtime["from"] == "debian:bookworm-slim"
    assert {"libhiredis-dev", "libevent-dev", "pkg-config"} <= set(apt_packages(build["runs"]))
    flags = swift_build_flags(build["runs"])
    assert "--static-swift-stdlib" in flags and flags[flags.index("-c") + 1] == "release"
    ins = instructions(text)
    runtime_part = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM"):]
    users = [rest for w, rest in runtime_part if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the runtime runs as non-root"
    assert ("EXPOSE", "8080") in runtime_part
    copies = [rest for w, rest in runtime_part if w == "COPY"]
    assert any(c.startswith("--from=build") and "spool-api" in c and "spool-worker" in c
               and c.endswith("/usr/local/bin/") for c in copies), copies
    assert any(w == "CMD" for w, _ in runtime_part)
    for run_args in runtime["runs"]:
        if "apt-get install" in run_args:
            assert "--no-install-recommends" in run_args and "rm -rf /var/lib/apt/lists/*" in run_args


def test_local_toolchain_matches_build_image():
    """The completeness check below builds with the local toolchain: it speaks for
    the image only while that is the Swift release of the build stage's tag."""
    if shutil.which("swift") is None:
        pytest.skip("swift is not on PATH")
    tag = stages(DOCKERFILE.read_text())[0]["from"].split(":", 1)[1].split("-", 1)[0]
    r = run(["swift", "--version"])
    out = r.stdout + r.stderr
    local = re.search(r"Swift version ([0-9.]+)", out)
    assert local, out
    assert local.group(1) == tag or local.group(1).startswith(tag + "."), (
        f"local Swift {local.group(1)} but the Dockerfile builds with swift:{tag}: bump one of them")


def test_dockerignore_keeps_build_state_out():
    lines = {l.strip() for l in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".build", ".build-*", ".spool", ".git"} <= lines


# ---------------------------------------------------------------- runtime libraries


def _host_is_debian12() -> bool:
    try:
        return Path("/etc/debian_version").read_text().startswith("12.")
    except OSError:
        return False


needs_debian12 = pytest.mark.skipif(
    not _host_is_debian12() or shutil.which("dpkg") is None,
    reason="maps libraries to Debian 12 packages: needs a Debian 12 host with dpkg",
)


def _inputs_newest_mtime() -> float:
    files = [p for p in (REPO / "Sources").rglob("*") if p.is_file()]
    files += [p for p in (REPO / "Package.swift", REPO / "Package.resolved") if p.exists()]
    return max(p.stat().st_mtime for p in files)


@pytest.fixture(scope="module")
def static_binaries() -> list[Path]:
    """The release binaries, built exactly as the Dockerfile builds them (same
    flags) into .build-static; the build is skipped while the binaries are newer
    than every file of Sources/ and the package manifest."""
    if shutil.which("swift") is None:
        pytest.skip("swift is not on PATH")
    flags = swift_build_flags(stages(DOCKERFILE.read_text())[0]["runs"])
    bins = [SCRATCH / "release" / b for b in BINARIES]
    fresh = all(b.exists() for b in bins) and min(b.stat().st_mtime for b in bins) > _inputs_newest_mtime()
    if not fresh:
        cmd = ["swift", "build", *flags, "--scratch-path", str(SCRATCH)]
        r = run(cmd, cwd=REPO, timeout=3600)
        assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
        for b in bins:  # an up-to-date no-op build does not touch them
            os.utime(b)
    return bins


def ldd_paths(binary: Path) -> list[str]:
    r = run(["ldd", binary])
    assert r.returncode == 0, r.stderr
    assert "not found" not in r.stdout, f"{binary.name} misses libraries on this host:\n{r.stdout}"
    paths = []
    for line in r.stdout.splitlines():
        line = line.strip()
        if "=>" in line:
            target = line.split("=>", 1)[1].split("(")[0].strip()
            if target:
                paths.append(target)
        elif line.startswith("/"):
            paths.append(line.split()[0])  # the dynamic loader
        # linux-vdso.so.1 is the kernel's, no file
    return paths


def owning_package(path: str) -> str:
    """The Debian package shipping a library; tries the path as ldd gives it and its
    /usr-merged twin (/lib -> /usr/lib), then the resolved symlink."""
    candidates = [path]
    candidates.append(path[4:] if path.startswith("/usr/") else "/usr" + path)
    real = os.path.realpath(path)
    candidates += [real, real[4:] if real.startswith("/usr/") else "/usr" + real]
    for c in candidates:
        r = run(["dpkg", "-S", c])
        if r.returncode == 0:
            return r.stdout.split(":", 1)[0].strip()
    raise AssertionError(f"no Debian package ships {path}")


@needs_debian12
def test_release_binaries_link_no_swift_runtime(static_binaries):
    for b in static_binaries:
        libs = ldd_paths(b)
        assert not [l for l in libs if "swift" in l.lower()], f"{b.name} loads Swift runtime libraries: {libs}"


@pytest.fixture(scope="module")
def needed_packages(static_binaries) -> dict[str, set[str]]:
    """Debian package -> the libraries of the binaries it ships (ldd + dpkg -S)."""
    needed: dict[str, set[str]] = {}
    for b in static_binaries:
        for lib in ldd_paths(b):
            needed.setdefault(owning_package(lib), set()).add(f"{b.name}: {lib}")
    return needed


def runtime_stage_problems(dockerfile_text: str, needed: dict[str, set[str]]) -> list[str]:
    """What is wrong with the runtime stage's apt-get line for these needs."""
    installed = set(apt_packages(stages(dockerfile_text)[-1]["runs"]))
    problems = [f"not installed: {p} ({', '.join(sorted(v))})"
                for p, v in sorted(needed.items()) if p not in installed | BOOKWORM_SLIM_PACKAGES]
    # ... and nothing beyond what the binaries load.
    problems += [f"installed but loaded by no binary: {p}" for p in sorted(installed - set(needed))]
    return problems


@needs_debian12
def test_runtime_stage_installs_every_needed_library(needed_packages):
    assert runtime_stage_problems(DOCKERFILE.read_text(), needed_packages) == []
    # The libraries the binaries are known to load are among them (a sanity check
    # of the ldd -> dpkg mapping).
    assert {"libhiredis0.14", "libevent-2.1-7", "libevent-pthreads-2.1-7", "libc6"} <= set(needed_packages)


@needs_debian12
def test_runtime_check_catches_a_missing_library(needed_packages):
    text = DOCKERFILE.read_text()
    line = next(l for l in text.splitlines() if "libevent-pthreads-2.1-7=" in l)
    broken = text.replace(line + "\n", "")
    assert broken != text
    problems = runtime_stage_problems(broken, needed_packages)
    assert any("not installed: libevent-pthreads-2.1-7" in p for p in problems), problems


@needs_debian12
def test_base_packages_are_in_bookworm_slim():
    """BOOKWORM_SLIM_PACKAGES, re-derived: each is Priority required, or a direct
    dependency of apt (which the slim image carries)."""
    r = run(["dpkg-query", "-W", "-f", "${Depends} ${Pre-Depends}", "apt"])
    apt_deps = {d.strip().split()[0].split(":")[0] for d in re.split(r"[,|]", r.stdout) if d.strip()}
    for pkg in BOOKWORM_SLIM_PACKAGES:
        prio = run(["dpkg-query", "-W", "-f", "${Priority}", pkg]).stdout.strip()
        assert prio == "required" or pkg in apt_deps, f"{pkg} may not be in debian:bookworm-slim"


@needs_debian12
def test_version_pins_match_debian12():
    """Every pinned package of both stages exists in that version on Debian 12
    (checked against this host's installed version, when it has the package)."""
    checked = 0
    for stage in stages(DOCKERFILE.read_text()):
        for pkg, pattern in apt_packages(stage["runs"]).items():
            if pattern is None:
                continue
            r = run(["dpkg-query", "-W", "-f", "${Version}", pkg])
            if r.returncode != 0 or not r.stdout:
                continue
            assert fnmatch.fnmatchcase(r.stdout.strip(), pattern), f"{pkg}: Debian 12 has {r.stdout}, pin is {pattern}"
            checked += 1
    assert checked >= 4
