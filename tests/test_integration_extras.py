"""An integration imported without its framework says which extra installs it."""

from __future__ import annotations

import importlib
import re
import sys

import pytest


@pytest.mark.parametrize(
    ("module", "framework", "extra"),
    [
        ("adk", "google.adk", "adk"),
        ("celery", "celery", "celery"),
        ("langchain", "langchain_core", "langchain"),
        ("openai_agents", "agents", "openai-agents"),
        ("pydantic_ai", "pydantic_ai", "pydantic-ai"),
    ],
)
def test_an_integration_without_its_framework_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, framework: str, extra: str
) -> None:
    # None: "not installed" to the importer, for the framework and its modules already imported
    for name in [framework, *(n for n in sys.modules if n.startswith(f"{framework}."))]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, f"tether.integrations.{module}", raising=False)
    with pytest.raises(ImportError, match=re.escape(f"pip install 'tether[{extra}]'")) as raised:
        importlib.import_module(f"tether.integrations.{module}")
    assert f"tether.integrations.{module} needs " in str(raised.value)
    assert isinstance(raised.value.__cause__, ImportError)
