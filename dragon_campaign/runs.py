"""Run directories, the results log and YAML configuration files.

A run directory (``runs/<run-id>/`` by default) holds everything a campaign leaves behind. The results log
is appended one JSON line per completed task as results arrive, and flushed each time, so a crash or a
walltime kill keeps every result obtained so far.
"""

from __future__ import annotations

import dataclasses
import difflib
import threading
import time
import types
import typing
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from dragon_campaign.models import Result

ConfigModel = TypeVar("ConfigModel", bound=BaseModel)


def new_run_id() -> str:
    """A sortable, unique run name: UTC time plus a short random suffix."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


class RunDirectory:
    """The folder of one campaign run, created on first use."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else Path("runs") / new_run_id()
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def results_path(self) -> Path:
        """``results.jsonl`` of the run."""
        return self.path / "results.jsonl"

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"


class ResultLog:
    """Appends results to a JSONL file, thread-safe, flushed after every batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open for the whole run; close() closes it)

    def append(self, results: Iterable[Result]) -> None:
        """Append one line per result and flush, so that a crash loses nothing already received."""
        lines = "".join(result.json_line() + "\n" for result in results)
        with self._lock:
            if self._file.closed:
                raise ValueError(f"The results log {self.path} is closed")
            self._file.write(lines)
            self._file.flush()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()


def read_results(path: str | Path) -> list[Result]:
    """Load every result of a results.jsonl file."""
    with open(path, encoding="utf-8") as fp:
        return [Result.model_validate_json(line) for line in fp if line.strip()]


class ConfigError(ValueError):
    """A configuration file is malformed: the message names the file and the offending keys."""


def read_config_data(path: str | Path) -> Any:
    """The parsed YAML of a configuration file (ConfigError if it is missing or not YAML)."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def load_config(path: str | Path, model: type[ConfigModel], prepare: Callable[[Any], Any] | None = None) -> ConfigModel:
    """Read a YAML file into a pydantic model, reporting problems by file and key (``prepare`` may rewrite the
    parsed data first, e.g. an earlier format into today's).
    """
    data = read_config_data(path)
    return parse_config(prepare(data) if prepare is not None else data, model, source=str(path))


def parse_config(data: object, model: type[ConfigModel], source: str, prefix: str = "", missing_hint: str = "") -> ConfigModel:
    """Validate a mapping against a model; errors read ``<source>: <prefix><key>: <reason>``, every one of
    them, an unknown key with the known key it most resembles, followed by ``missing_hint`` (e.g. which
    example file to start from) if a required key is missing.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix or 'the top level'} must be a mapping of keys to values, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            parts = [str(part) for part in error["loc"] if not str(part).startswith("<")]  # "<...>": tags of tagged unions
            key = prefix + (".".join(parts) or "(top level)")
            if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
                close = difflib.get_close_matches(parts[-1] if parts else "", _keys_at(model, parts[:-1]), n=1, cutoff=0.6)
                reason = f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"
            else:
                reason = error["msg"]
            problems.append(f"{source}: {key}: {reason}")
        if missing_hint and any(error["type"] == "missing" for error in exc.errors()):
            problems.append(missing_hint)
        raise ConfigError("\n".join(problems)) from None


def _keys_at(model: Any, path: list[str]) -> list[str]:
    """The keys a model (pydantic or dataclass, through dicts, lists and unions) accepts at ``path``."""
    kinds = _unwrapped(model)
    for part in path:
        kinds = [inner for kind in kinds for inner in _inside(kind, part)]
    return sorted({name for kind in kinds for name in _field_types(kind)})


def _field_types(kind: Any) -> dict[str, Any]:
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return {name: field.annotation for name, field in kind.model_fields.items()}
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        return {field.name: field.type for field in dataclasses.fields(kind)}
    return {}


def _inside(kind: Any, part: str) -> list[Any]:
    """What a key of ``kind`` (a field of a model, a key of a dict, an index of a list) holds."""
    fields = _field_types(kind)
    if fields:
        return _unwrapped(fields[part]) if part in fields else []
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is dict and len(args) == 2:
        return _unwrapped(args[1])
    if origin is list and args:
        return _unwrapped(args[0])
    return []


def _unwrapped(kind: Any) -> list[Any]:
    """The classes behind an annotation: Optional, unions and Annotated taken apart."""
    origin = typing.get_origin(kind)
    if origin is typing.Annotated:
        return _unwrapped(typing.get_args(kind)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [inner for arg in typing.get_args(kind) for inner in _unwrapped(arg)]
    return [kind]
