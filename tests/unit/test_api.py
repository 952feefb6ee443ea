"""The public API is closed: applications use only the names ``dragon_campaign`` exports (and their own
modules), launchers only the command lines, and every exported name resolves. Pure Python: no runtime."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dragon_campaign

APPS = Path(dragon_campaign.__file__).parent / "apps"


def imports_of(path: Path) -> list[str]:
    """Modules a file imports from dragon_campaign, as ``module`` or ``module:name``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dragon_campaign"):
            found += [f"{node.module}:{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("dragon_campaign")]
    return found


@pytest.mark.parametrize("path", sorted(p for p in APPS.rglob("*.py") if p.name != "__init__.py"), ids=lambda p: str(p.relative_to(APPS)))
def test_applications_use_only_the_public_api(path):
    app = path.relative_to(APPS).parts[0]
    outside = [name for name in imports_of(path)
               if not name.startswith(f"dragon_campaign.apps.{app}") and not (name.startswith("dragon_campaign:") and name.split(":")[1] in dragon_campaign.__all__)]
    assert outside == [], f"{path.name} reaches past the public API: {outside}"


@pytest.mark.parametrize("path", sorted((APPS.parents[1] / "launchers").glob("*.py")), ids=lambda p: p.name)
def test_launchers_are_thin_scripts_over_the_command_lines(path):
    """A launcher is the file Dragon runs as its head process; the command line itself is dragon_campaign.cli."""
    assert [name for name in imports_of(path) if not name.startswith("dragon_campaign.cli")] == []
    assert len(path.read_text(encoding="utf-8").splitlines()) < 25


def test_every_exported_name_resolves():
    for name in dragon_campaign.__all__:
        assert getattr(dragon_campaign, name) is not None, name
