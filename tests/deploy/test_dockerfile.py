"""The Dockerfile (hadolint at warning level plus our policy) and the hashed lock it shares with `make`."""

from __future__ import annotations

import re
import subprocess
import tomllib

from tests.deploy.tools import ROOT, tool

DOCKERFILE = ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def policy(text: str) -> list[str]:
    """What a production image must have; each problem as a sentence."""
    ins = instructions(text)
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM") :]
    problems = []
    users = [rest for w, rest in final if w == "USER"]
    if not users or not re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]) or users[-1].startswith("0"):
        problems.append("the final stage needs a numeric non-root USER")
    if not any(w == "HEALTHCHECK" and "NONE" not in rest for w, rest in final):
        problems.append("no HEALTHCHECK")
    entry = [rest for w, rest in final if w == "ENTRYPOINT"]
    if not entry or not entry[-1].startswith("[") or "tini" not in entry[-1]:
        problems.append("ENTRYPOINT must be exec form under tini")
    if not any(w == "ARG" and rest.startswith("BASE=") for w, rest in ins):
        problems.append("no ARG BASE")
    if any(w == "FROM" and rest.split()[0].endswith(":latest") for w, rest in ins):
        problems.append("a FROM uses :latest")
    if not any(w == "RUN" and "--require-hashes" in rest for w, rest in ins):
        problems.append("dependencies are not installed from the hashed lock")
    if any(w == "RUN" and re.search(r"\b(gcc|build-essential|g\+\+)\b", rest) for w, rest in final):
        problems.append("a compiler in the final stage")
    return problems


def test_hadolint_warning_level():
    out = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "warning", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_policy():
    assert policy(DOCKERFILE.read_text()) == []


def test_policy_sees_a_missing_user_or_healthcheck():
    text = DOCKERFILE.read_text()
    assert "the final stage needs a numeric non-root USER" in policy(text.replace("USER 10001:10001", ""))
    assert "the final stage needs a numeric non-root USER" in policy(text.replace("USER 10001:10001", "USER lockgate"))
    assert "no HEALTHCHECK" in policy(re.sub(r"HEALTHCHECK[^\n]*\\\n[^\n]*\n", "", text))


def _locked(path) -> dict[str, tuple[str, frozenset[str]]]:
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)(.*)$", line)
        if m:
            out[m.group(1).lower().split("[")[0]] = (m.group(2), frozenset(re.findall(r"--hash=(\S+)", m.group(3))))
    return out


def test_locks_follow_the_pyproject_pins_and_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime, full = _locked(ROOT / "requirements.lock"), _locked(ROOT / "requirements-test.lock")
    for spec in project["dependencies"] + project["optional-dependencies"]["test"]:
        name, version = re.match(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)", spec).groups()
        lock = full if spec in project["optional-dependencies"]["test"] else runtime
        assert lock[name.lower()][0] == version, f"{name}: pyproject {version}, lock {lock[name.lower()][0]}: run make lock"
    for name, (version, hashes) in runtime.items():
        assert hashes, f"{name} has no hash"
        assert full[name] == (version, hashes), f"{name}: the image's lock and make's lock disagree: run make lock"
