"""A campaign's configuration file, validated into a ``Plan`` before the Dragon runtime starts.

The file (YAML) has four optional sections::

    pools:            # worker pools by name
      cpu: {workers: 4}                         # a Dragon pool: keys of dragon_campaign.WorkerPool
      gpu: {gpus: true}
      remote: {executor: parsl-local, workers: 2}   # an executor pool: keys of dragon_campaign.bridges.ExecutorSpec
    proxystore:       # per-topic ProxyStore backends: keys of dragon_campaign.bridges.ProxyStoreSettings
      backends: {train: file}
      file_dir: /path/every/site/reaches
    app:              # the application (name:, default moldesign) and its parameters (see --help-app)
      name: moldesign
      budget: 64
    run_dir: runs/my-run

A user's campaign function replaces ``app: name:`` with ``campaign: my_campaign.py[:function]`` (a file
relative to the configuration file, or a module); ``app:`` then holds the parameters of its ``Config``.
``--set KEY=VALUE`` (dotted keys, YAML values: ``--set app.budget=8 --set pools.cpu.workers=2``) overrides
the file, validated the same way; every problem is reported at once, with the key that was likely meant.

Every run writes the configuration it ran with to ``<run-dir>/config.yaml`` in this format, with every
default filled in: ``--config <run-dir>/config.yaml --run-dir NEW`` runs the same campaign again.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag
from pydantic.fields import FieldInfo

from dragon_campaign.apps import DEFAULT_APPLICATION, Application, BrokenApplication, installed
from dragon_campaign.bridges.executor_specs import ExecutorSpec
from dragon_campaign.bridges.proxystore_settings import ProxyStoreSettings
from dragon_campaign.cli.user_campaign import CampaignFunction
from dragon_campaign.journal.view import run_status
from dragon_campaign.runs import ConfigError, parse_config, read_config_data
from dragon_campaign.server.pool import WorkerPool

CONFIG_FILE = "config.yaml"  # in the run directory: the configuration the run started with


def _pool_kind(entry: Any) -> str:
    if isinstance(entry, dict):
        return "<executor>" if "executor" in entry else "<dragon>"
    return "<executor>" if isinstance(entry, ExecutorSpec) else "<dragon>"


# A pool entry is an executor pool when it has an ``executor:`` key, else a Dragon pool. The tags in
# angle brackets appear in pydantic's error locations; parse_config leaves them out of its messages.
PoolEntry = Annotated[Annotated[WorkerPool, Tag("<dragon>")] | Annotated[ExecutorSpec, Tag("<executor>")], Discriminator(_pool_kind)]


# What the launcher runs: an installed application or a user's campaign function (the same methods:
# config_class, default_pools, runner, summary; the flags example, checkpoints, proxystore)
Launchable = Application | CampaignFunction


class CampaignConfig(BaseModel):
    """The configuration file."""

    model_config = ConfigDict(extra="forbid")

    campaign: str | None = Field(None, description="A campaign function instead of an app: FILE.py[:FUNCTION] or MODULE[:FUNCTION]")
    pools: dict[str, PoolEntry] | None = Field(None, description="Pools by name (default: the app's default_pools, else one CPU pool with a worker per core)")
    proxystore: ProxyStoreSettings | None = Field(None, description="Per-topic ProxyStore backends (apps whose run() takes proxystore)")
    app: dict[str, Any] = Field(default_factory=dict, description="The application (name:) and its parameters")
    run_dir: str | None = Field(None, description="Run directory (default runs/<run-id>)")


class Plan(BaseModel):
    """Everything a run needs, validated before any work starts."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str  # the app's name, or the campaign function's target
    application: Launchable
    app_config: BaseModel
    pools: dict[str, WorkerPool]
    executors: dict[str, ExecutorSpec]
    proxystore: ProxyStoreSettings | None
    run_dir: Path | None

    def config(self) -> dict[str, Any]:
        """The plan as a configuration file's contents, every default filled in (no run_dir: a rerun goes
        elsewhere). It holds no credential: those come from the environment.
        """
        pools = {**{n: _fields(p) for n, p in self.pools.items()}, **{n: s.model_dump() for n, s in self.executors.items()}}
        if isinstance(self.application, CampaignFunction):
            described: dict[str, Any] = {"campaign": self.name, "app": self.app_config.model_dump()}
        else:
            described = {"app": {"name": self.name, **self.app_config.model_dump()}}
        described["pools"] = pools
        if self.proxystore is not None:
            described["proxystore"] = self.proxystore.model_dump()
        return described

    def describe(self) -> dict[str, Any]:
        """What --dry-run prints: the configuration and where the run would go."""
        return {**self.config(), "run_dir": str(self.run_dir) if self.run_dir else "runs/<run-id>"}

    def write(self, run_dir: Path, command: str) -> None:
        """``<run_dir>/config.yaml``: a valid ``--config`` that runs this campaign again."""
        header = (f"# The configuration of the run in {run_dir}, every default filled in.\n"
                  f"# Run it again with: {command} --config {run_dir / CONFIG_FILE} --run-dir NEW_DIR\n")
        (run_dir / CONFIG_FILE).write_text(header + yaml.safe_dump(self.config(), sort_keys=False), encoding="utf-8")


def resolve(*, app: str | None, config_file: Path | None, run_dir: Path | None, workers: int | None,
            resume: Path | None, stopping: bool = False, campaign: str | None = None,
            overrides: Sequence[str] = ()) -> Plan:
    """Load and validate everything a run needs, without starting Dragon: an application is imported only as
    far as its ``config`` module, a campaign function's module is imported (``checkpointing``: the run may
    checkpoint, with --stop-after). Every problem found is in the one ConfigError raised.
    """
    if resume is not None:
        for option, value in (("--config", config_file), ("--run-dir", run_dir), ("a campaign", campaign)):
            if value is not None:
                raise ConfigError(f"--resume takes the campaign, configuration and run directory from {resume}: drop {option}")
        config_file, run_dir = _resumable(resume), resume
    source = str(config_file) if config_file else "(no --config)"
    data = read_config_data(config_file) if config_file else {}
    data = _with_overrides(_upgraded(data) if resume is not None else data, overrides)
    source = f"{source} with --set" if overrides else source
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys to values, got {type(data).__name__}")
    problems: list[str] = []
    config: CampaignConfig | None = None
    try:
        config = parse_config(data, CampaignConfig, source=source)
    except ConfigError as exc:
        problems.append(str(exc))
    section: dict[str, Any] = data["app"] if isinstance(data.get("app"), dict) else {}
    try:
        name, application = choose(app, campaign or data.get("campaign"), section, source,
                                   relative_to=config_file.parent if config_file and not campaign else Path.cwd())
    except ConfigError as exc:  # without the application its parameters cannot be checked: report what there is
        raise ConfigError("\n".join([*problems, str(exc)])) from None
    if stopping and not application.checkpoints:
        problems.append(f"the {name} app cannot be checkpointed: --stop-after needs an app whose run() takes stop_after")
    if resume is not None and not application.resumes:
        problems.append(f"the {name} app cannot resume: --resume needs an app whose run() takes resume")
    parameters = {key: value for key, value in section.items() if key != "name" or isinstance(application, CampaignFunction)}
    hint = f"Start from {application.example} (--config); --help-app lists every key" if application.example else ""
    try:
        app_config = parse_config(parameters, application.config_class(), source=source, prefix="app.", missing_hint=hint)
    except ConfigError as exc:
        problems.append(str(exc))
    if problems or config is None:
        raise ConfigError("\n".join(problems))
    entries = dict(config.pools or application.default_pools(app_config) or {"cpu": WorkerPool()})
    pools = {name: entry for name, entry in entries.items() if isinstance(entry, WorkerPool)}
    executors = {name: entry for name, entry in entries.items() if isinstance(entry, ExecutorSpec)}
    if workers is not None:
        if "cpu" in executors:
            raise ConfigError("--workers sets the Dragon pool 'cpu', but 'cpu' is an executor pool in the configuration")
        pools["cpu"] = WorkerPool(**{**_fields(pools.get("cpu", WorkerPool())), "workers": workers})
    if config.proxystore is not None and not application.proxystore:
        raise ConfigError(f"{source}: proxystore: the {name} app does not take per-topic ProxyStore settings")
    run_dir = run_dir or (Path(config.run_dir) if config.run_dir else None)
    if resume is None and run_dir is not None and (run_dir / "results.jsonl").exists():
        raise ConfigError(f"{run_dir} holds the results of an earlier run: resume it with --resume {run_dir} "
                          "(if it checkpointed), or start in another run directory")
    return Plan(name=name, application=application, app_config=app_config, pools=pools, executors=executors,
                proxystore=config.proxystore, run_dir=run_dir)


def choose(option: str | None, campaign: Any, app_section: dict[str, Any], source: str,
           relative_to: Path | None = None) -> tuple[str, Launchable]:
    """The campaign function (the command line's target, else the file's ``campaign:``) or the application
    (``--app``, else the file's ``app: name:``, else the default), by name.
    """
    if campaign is not None:
        if option is not None:
            raise ConfigError(f"--app {option} and the campaign {campaign}: name one of them")
        if not isinstance(campaign, str):
            raise ConfigError(f"{source}: campaign: expected FILE.py[:FUNCTION] or MODULE[:FUNCTION], got {campaign!r}")
        function = CampaignFunction.parse(campaign, relative_to)
        try:
            function.module()
        except Exception as exc:
            raise ConfigError(f"campaign {campaign}: importing {function.location} failed: {type(exc).__name__}: {exc}") from exc
        return function.target, function
    name = app_name(option, app_section, source)
    return name, application_named(name)


def application_named(name: str) -> Application:
    """An installed application (ConfigError naming what is installed, or why this one cannot load)."""
    found = installed()
    application = found.get(name)
    if isinstance(application, BrokenApplication):
        raise ConfigError(f"the {name} app ({application.value}) is installed but cannot be loaded: {application.error}")
    if application is None:
        raise ConfigError(f"unknown application {name!r}{_did_you_mean(name, found)} (installed: {', '.join(sorted(found))})")
    return application


def app_name(option: str | None, app_section: dict[str, Any], source: str) -> str:
    """The application: ``--app``, else the file's ``app: name:``, else the default; the two must agree."""
    named = app_section.get("name")
    if option is not None and named is not None and option != named:
        raise ConfigError(f"--app {option}, but {source} configures the {named} app (app.name)")
    return option or named or DEFAULT_APPLICATION


def _with_overrides(data: Any, overrides: Sequence[str]) -> Any:
    """``data`` with each ``KEY.PATH=VALUE`` set (the value read as YAML: 8, 0.5, true, [a, b], text)."""
    if not overrides:
        return data
    if not isinstance(data, dict):
        return data  # parse_config reports the malformed file
    data = _copy(data)
    for setting in overrides:
        key, equals, text = setting.partition("=")
        parts = key.strip().split(".")
        if not equals or not all(parts):
            raise ConfigError(f"--set {setting!r}: expected KEY=VALUE, e.g. app.budget=8 or pools.cpu.workers=2")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {setting!r}: the value is not valid YAML: {exc}") from None
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"--set {setting!r}: {part} is {child!r}, not a section")
            node = child
        node[parts[-1]] = value
    return data


def _copy(data: dict[str, Any]) -> dict[str, Any]:
    return {key: _copy(value) if isinstance(value, dict) else value for key, value in data.items()}


def _did_you_mean(key: str, known: Any) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _resumable(run_dir: Path) -> Path:
    """The configuration a run started with, after checking there is something to resume (see ``run_status``)."""
    config_file = run_dir / CONFIG_FILE
    if not config_file.exists():
        raise ConfigError(f"--resume {run_dir}: no {CONFIG_FILE} there; is it a run directory of dragon-campaign run?")
    status = run_status(run_dir)
    if not status.resumable:
        raise ConfigError(f"--resume {run_dir}: nothing to resume: {status.how}")
    return config_file


def _upgraded(described: Any) -> Any:
    """A config.yaml in the earlier format (``app: NAME`` beside ``app_config:``) in today's, so that runs
    checkpointed by an earlier version resume.
    """
    if isinstance(described, dict) and "app_config" in described:
        return {"app": {"name": described["app"], **(described["app_config"] or {})}, "pools": described.get("pools"),
                "proxystore": described.get("proxystore")}
    return described


def _fields(pool: WorkerPool) -> dict[str, Any]:
    return {name: getattr(pool, name) for name in pool.__dataclass_fields__}


def describe_app(name: str, application: Launchable) -> str:
    """The parameters of an application's ``app:`` section: default, allowed values, meaning."""
    what = f"campaign {name}" if isinstance(application, CampaignFunction) else f"{name} app (app.name: {name})"
    lines = [f"Parameters of the {what}, the app: section (--set app.KEY=VALUE):"]
    fields = application.config_class().model_fields
    if not fields:
        lines.append("  (none: its module defines no Config model)")
    for key, field in fields.items():
        default = "required" if field.is_required() else f"default {field.get_default(call_default_factory=True)!r}"
        lines.append(f"  {key:<22} {default:<18} {field.description or ''}{_allowed(field)}")
    if application.example:
        lines.append(f"An example to start from: {application.example}")
    return "\n".join(lines)


BOUNDS = ((annotated_types.Ge, ">="), (annotated_types.Gt, ">"), (annotated_types.Le, "<="), (annotated_types.Lt, "<"))


def _allowed(field: FieldInfo) -> str:
    """`` [one of: a, b]`` for an enumeration, `` [>= 1]`` for a bounded number, else nothing."""
    choices = [a for arg in (field.annotation, *typing.get_args(field.annotation)) if typing.get_origin(arg) is typing.Literal
               for a in typing.get_args(arg)]
    if choices:
        return f" [one of: {', '.join(map(str, choices))}]"
    bounds = [f"{symbol} {getattr(m, cls.__name__.lower())}" for m in field.metadata for cls, symbol in BOUNDS if isinstance(m, cls)]
    return f" [{', '.join(bounds)}]" if bounds else ""
