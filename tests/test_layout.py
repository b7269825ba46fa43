"""Rules of the source layout that ARCHITECTURE.md states, checked so they cannot drift."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "tether"


def _imports(source: str, package: tuple[str, ...]) -> list[tuple[int, str]]:
    """Every name a module in ``package`` (a path under tether) imports from tether, as a
    dotted path relative to the tether package, with its line."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("tether."):
                    found.append((node.lineno, alias.name.removeprefix("tether.")))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - (node.level - 1)])
            elif node.module and node.module.startswith("tether"):
                base = []
            else:
                continue
            module = (node.module or "").removeprefix("tether").lstrip(".")
            parts = base + ([p for p in module.split(".") if p] if module else [])
            for alias in node.names:
                found.append((node.lineno, ".".join([*parts, alias.name])))
    return found


def test_nothing_outside_the_agent_package_imports_its_private_modules() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.relative_to(SRC).parts[0] == "agent":
            continue
        source = path.read_text(encoding="utf-8")
        for line, name in _imports(source, path.relative_to(SRC).parent.parts):
            parts = name.split(".")
            if parts[0] == "agent" and any(p.startswith("_") for p in parts[1:]):
                offenders.append(f"{path.relative_to(SRC)}:{line} imports {name}")
    assert offenders == [], (
        "use the public tether.agent.stored (or add what you need there) instead of:\n"
        + "\n".join(offenders)
    )


def test_the_import_scanner_resolves_every_import_form() -> None:
    # The rule above is only as good as the scanner.
    source = (
        "from ..agent import _turn\n"
        "from ..agent._turn import Review\n"
        "import tether.agent._turn\n"
        "from tether.agent import stored\n"
        "from . import render\n"
    )
    names = [name for _, name in _imports(source, ("cli",))]
    assert names == [
        "agent._turn",
        "agent._turn.Review",
        "agent._turn",
        "agent.stored",
        "cli.render",
    ]
