"""A user's campaign function, run like a built-in application: ``dragon-campaign run my_campaign.py``.

The target is ``FILE.py[:NAME]`` or ``MODULE[:NAME]`` (``NAME`` defaults to ``campaign``): a function that
takes a ``RunContext`` and returns the thinker and the task server
(a ``Campaign`` or a plain pair). Its module may define ``Config`` (a
pydantic model of the ``app:`` section, so ``--set app.KEY=VALUE`` and config files are validated) and
``default_pools(config)``. The launcher does the rest: the run directory, logging, progress lines, the
report, Ctrl-C, the exit statuses, and checkpoints when the thinker implements ``checkpoint_state``.

A file's folder goes on ``PYTHONPATH`` before the runtime starts, so the workers import the file's
functions by the same module name as the head process, and the file may import its neighbours.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict

from dragon_campaign.apps import first_paragraph
from dragon_campaign.runs import ConfigError, RunDirectory, read_results

DEFAULT_FUNCTION = "campaign"


class NoParameters(BaseModel):
    """The ``app:`` section of a campaign whose module defines no ``Config``: no keys."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class CampaignFunction:
    """A campaign function named on the command line or in a configuration file's ``campaign:`` key."""

    location: str  # an absolute file path, or a module name
    function_name: str = DEFAULT_FUNCTION
    example: str | None = None
    checkpoints: bool = True  # decided once the thinker exists: a thinker without checkpoint_state is refused then
    resumes: bool = True  # from the journal: a thinker without checkpoint_state by memoization
    proxystore: bool = False

    @classmethod
    def parse(cls, target: str, relative_to: Path | None = None) -> CampaignFunction:
        """``FILE.py[:NAME]`` or ``MODULE[:NAME]``, checked to exist (a relative file from ``relative_to``)."""
        location, _, name = target.partition(":")
        if not location or (name and not name.isidentifier()):
            raise ConfigError(f"campaign {target!r}: expected FILE.py[:FUNCTION] or MODULE[:FUNCTION]")
        if location.endswith(".py") or "/" in location:
            path = Path(location).expanduser()
            path = (relative_to / path if relative_to is not None and not path.is_absolute() else path).resolve()
            if not path.is_file():
                raise ConfigError(f"campaign {target!r}: no such file {path}")
            location = str(path)
        elif importlib.util.find_spec(location.split(".")[0]) is None:
            raise ConfigError(f"campaign {target!r}: no module {location.split('.')[0]!r} on the path (is its package installed?)")
        return cls(location, name or DEFAULT_FUNCTION)

    @property
    def target(self) -> str:
        """The target as the configuration file records it."""
        return f"{self.location}:{self.function_name}"

    @property
    def is_file(self) -> bool:
        """Whether the target is a file (else a module on the path)."""
        return self.location.endswith(".py") or "/" in self.location

    def search_path(self) -> str | None:
        """The folder the workers must import the file from (None for a module)."""
        return str(Path(self.location).parent) if self.is_file else None

    def module(self) -> ModuleType:
        """The campaign's module, imported once per process (a file under its own name, as the workers see it)."""
        if not self.is_file:
            return importlib.import_module(self.location)
        path = Path(self.location)
        loaded = sys.modules.get(path.stem)
        if loaded is not None and getattr(loaded, "__file__", None) == str(path):
            return loaded
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module  # pydantic and pickle resolve the file's classes by module name
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[path.stem]
            raise
        return module

    def function(self) -> Callable[..., Any]:
        """The campaign function (ConfigError if the module has none of that name)."""
        function = getattr(self.module(), self.function_name, None)
        if not callable(function):
            raise ConfigError(f"campaign {self.target}: the module defines no function {self.function_name}(run) "
                              "returning (thinker, server)")
        return function

    def config_class(self) -> type[BaseModel]:
        """The module's ``Config``, else a model without keys."""
        model = getattr(self.module(), "Config", NoParameters)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ConfigError(f"campaign {self.target}: Config must be a pydantic model class")
        return model

    def default_pools(self, config: BaseModel) -> dict[str, Any] | None:
        """The module's ``default_pools(config)`` (or a dict of that name), else None."""
        chooser = getattr(self.module(), "default_pools", None)
        if chooser is None:
            return None
        return dict(chooser(config) if callable(chooser) else chooser)

    def summary(self) -> str:
        """What the module's docstring says first."""
        return first_paragraph(self.module())

    def runner(self) -> Callable[..., dict[str, Any]]:
        """``run``, the same call as an application's ``run``."""
        return self.run

    def run(self, config: BaseModel, pools: dict[str, Any], run_dir: RunDirectory, stop_after: float | None = None,
            resume: bool = False) -> dict[str, Any]:
        """Build the campaign, run it to its end (or its checkpoint) and write ``summary.json``; in the head process."""
        from dragon_campaign.campaign import RunContext, run_campaign
        from dragon_campaign.checkpoint import Checkpointer

        context = RunContext(config, pools, run_dir)
        with context._closing:
            campaign = self._build(context)
            thinker = campaign.thinker
            if not thinker.can_checkpoint and stop_after is not None:
                raise ConfigError(f"{type(thinker).__name__} cannot be checkpointed: --stop-after needs a thinker that implements "
                                  "checkpoint_state and restore_state (--resume works without: finished tasks are answered from the journal)")
            checkpointer = Checkpointer(run_dir) if thinker.can_checkpoint else None
            saved = checkpointer.load() if checkpointer is not None and resume and checkpointer.current() else None
            run_campaign(thinker, campaign.server, timeout=stop_after, checkpointer=checkpointer, resume_from=saved, resume=resume)
            extra = campaign.summary() if campaign.summary is not None else {}
        summary = {"campaign": self.target, **result_counts(run_dir), **extra}
        (run_dir.path / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        return summary

    def _build(self, context: Any) -> Any:
        from dragon_campaign.campaign import Campaign
        from dragon_campaign.server.task_server import DragonTaskServer
        from dragon_campaign.thinker.base import BaseThinker

        built = self.function()(context)
        try:
            campaign = Campaign(*built)
        except TypeError:
            raise ConfigError(f"campaign {self.target} returned {type(built).__name__}; return (thinker, server) "
                              "or Campaign(thinker, server, summary)") from None
        if not isinstance(campaign.thinker, BaseThinker) or not isinstance(campaign.server, DragonTaskServer):
            raise ConfigError(f"campaign {self.target} must return a BaseThinker and a DragonTaskServer, got "
                              f"{type(campaign.thinker).__name__} and {type(campaign.server).__name__}")
        if campaign.server.run_dir.path.resolve() != context.run_dir.path.resolve():
            raise ConfigError(f"campaign {self.target}: the task server writes to {campaign.server.run_dir.path}; "
                              "give it the run's directory: DragonTaskServer(..., run_dir=run.run_dir)")
        return campaign


def result_counts(run_dir: RunDirectory) -> dict[str, Any]:
    """What ``results.jsonl`` holds: results, successes and failures, results per topic."""
    results = read_results(run_dir.results_path) if run_dir.results_path.exists() else []
    succeeded = sum(bool(result.success) for result in results)
    return {"results": len(results), "succeeded": succeeded, "failed": len(results) - succeeded,
            "results_by_topic": dict(Counter(result.topic for result in results)), "results_file": str(run_dir.results_path)}
