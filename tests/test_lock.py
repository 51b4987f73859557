"""The lock files pin every dependency of pyproject.toml, within its bounds and with hashes.

`make` installs from requirements-dev.lock with --require-hashes; a dependency added to
pyproject.toml without `make lock` would be missing from it (or pinned outside the new bound).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def _pins(lock: Path) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    lines = lock.read_text().splitlines()
    for index, line in enumerate(lines):
        if match := PIN.match(line):
            following = lines[index + 1] if index + 1 < len(lines) else ""
            assert "--hash=sha256:" in line + following, f"{lock.name}: {line} has no hash"
            pins[canonicalize_name(match[1])] = Version(match[2])
    return pins


def _requirements(*, dev: bool) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    if dev:
        declared += project["optional-dependencies"]["dev"]
    return [Requirement(text) for text in declared]


@pytest.mark.parametrize(
    ("lock", "dev"), [("requirements.lock", False), ("requirements-dev.lock", True)]
)
def test_every_dependency_is_pinned_within_its_bounds(lock: str, dev: bool) -> None:
    pins = _pins(ROOT / lock)
    problems = []
    for requirement in _requirements(dev=dev):
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            problems.append(f"{requirement} is not in {lock}")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{requirement} but {lock} pins {pinned}")
    assert not problems, "run `make lock`: " + "; ".join(problems)
