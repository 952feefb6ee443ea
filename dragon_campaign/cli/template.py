"""``dragon-campaign new NAME``: a campaign package to start from, registered as an app when installed.

It has a config model, a thinker that checkpoints, a task, the function that joins them (``app.py``), a
``pyproject.toml`` with the entry point, and a test that runs the campaign through ``dragon-campaign run``.
"""

from __future__ import annotations

import keyword
import sys
from collections.abc import Iterator
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

PLACEHOLDER = "__NAME__"
DIST_PLACEHOLDER = "__DIST__"


def write_template(name: str, where: str | Path = ".") -> int:
    """Write ``<where>/<name>/``; exit status 0, or 2 (said why) for a bad name or an existing folder."""
    if not name.isidentifier() or keyword.iskeyword(name) or not name.islower():
        print(f"dragon-campaign new: {name!r} must be a lower-case Python identifier (e.g. my_search): "
              "it names the package and the app", file=sys.stderr)
        return 2
    target = Path(where) / name
    if target.exists():
        print(f"dragon-campaign new: {target} exists; choose another name or --dir", file=sys.stderr)
        return 2
    template = files("dragon_campaign.cli") / "template"
    written = []
    for source, relative in _walk(template, Path()):
        parts = [name if part == "package" else part for part in relative.parts]
        destination = target.joinpath(*parts).with_suffix("")  # drop .tmpl
        destination.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text(encoding="utf-8").replace(DIST_PLACEHOLDER, name.replace("_", "-"))
        destination.write_text(text.replace(PLACEHOLDER, name), encoding="utf-8")
        written.append(destination)
    print(f"Wrote the campaign package {target}/:")
    for path in sorted(written):
        print(f"  {path.relative_to(target)}")
    print(f"Next: pip install -e {target} && dragon-campaign run --app {name} --workers 2   (and: pytest {target}/tests)")
    return 0


def _walk(folder: Traversable, relative: Path) -> Iterator[tuple[Traversable, Path]]:
    for entry in folder.iterdir():
        if entry.is_dir():
            yield from _walk(entry, relative / entry.name)
        elif entry.name.endswith(".tmpl"):
            yield entry, relative / entry.name
