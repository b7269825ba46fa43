"""pyproject.toml never allows a dependency release with a published advisory it can reach."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parent.parent

# package -> the first release past every advisory that concerns tether's use of it
FIXED = {
    "orjson": (3, 11, 6),  # CVE-2024-27454 (loads), CVE-2025-67221 (dumps): unbounded recursion
    "h11": (0, 16),  # CVE-2025-43859: malformed chunked bodies accepted (request smuggling)
    "httpcore": (1, 0, 9),  # the first httpcore that takes h11 0.16
}


def _floors() -> dict[str, tuple[int, ...]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs += extra
    floors: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        found = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?>=([0-9.]+)(?:,.*)?", spec)
        if found:
            floors[found[1].lower()] = tuple(int(p) for p in found[2].split("."))
    return floors


@pytest.mark.parametrize(("package", "fixed"), sorted(FIXED.items()))
def test_floors_are_past_published_advisories(package: str, fixed: tuple[int, ...]) -> None:
    floors = _floors()
    assert package in floors, f"{package} has no >= floor in pyproject.toml"
    assert floors[package] >= fixed, f"{package}>={floors[package]} allows an advised release"
