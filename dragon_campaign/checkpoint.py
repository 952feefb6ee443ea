"""Checkpoint a campaign when its job must end, and resume it in the next job (a chain of PBS jobs).

A checkpoint is the folder ``<run-dir>/checkpoint/``:

* ``campaign.pkl``: the tasks set aside (waiting, or interrupted on a worker; with their ids, priorities
  and inputs as they were sent), the results that arrived but the thinker had not taken, the thinker's
  own state (``BaseThinker.checkpoint_state``), the resource counter's allocation, and how long
  ``results.jsonl`` was;
* ``checkpoint.json``: the same in numbers, for people (why and when, tasks per topic);
* ``store/``: the application's store data (``ddict_store.checkpoint``), when it gives one.

It is written into ``checkpoint.partial/`` and renamed, so a job killed while checkpointing keeps the
previous checkpoint. Every task runs to completion exactly once over the chain: a result is logged when
its task completes, set-aside tasks were never logged and run again from the start in the next job, and
results logged after the checkpoint by a job that then died without one (SIGKILL) are moved out of
``results.jsonl`` into ``results.after-checkpoint-<time>.jsonl`` on resume, since their tasks run again.
"""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dragon_campaign.journal.database import JOURNAL_FILE, connect
from dragon_campaign.models import Result
from dragon_campaign.queues.waiting import WaitingTask
from dragon_campaign.runs import RunDirectory

if TYPE_CHECKING:
    from ddict_store import DDictStore

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
FORMAT_VERSION = 1


class NoCheckpoint(FileNotFoundError):
    """The run directory holds no checkpoint to resume from."""


@dataclass
class SavedCampaign:
    """What a campaign needs to go on in another job."""

    reason: str
    tasks: list[WaitingTask]
    results: list[Result]
    thinker_state: Any
    allocation: dict[str, int] | None
    results_bytes: int

    def describe(self) -> dict[str, Any]:
        """What ``checkpoint.json`` says about this checkpoint."""
        return {
            "format": FORMAT_VERSION,
            "reason": self.reason,
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "tasks_set_aside": dict(Counter(task.result.topic for task in self.tasks)),
            "results_not_taken": dict(Counter(result.topic for result in self.results)),
            "allocation": self.allocation,
            "results_bytes": self.results_bytes,
        }


class Checkpointer:
    """Where a campaign checkpoints to and resumes from: ``<run-dir>/checkpoint/``, with the store's data."""

    def __init__(self, run_dir: RunDirectory, store: DDictStore | None = None, namespaces: list[str] | None = None) -> None:
        """
        Args:
            store: The application's store; its keys (of ``namespaces``, default all) go into the checkpoint.
        """
        self.run_dir = run_dir
        self.store = store
        self.namespaces = namespaces

    @property
    def path(self) -> Path:
        """The checkpoint's folder: ``<run-dir>/checkpoint/``."""
        return self.run_dir.path / CHECKPOINT_DIR

    def exists(self) -> bool:
        """Whether there is a checkpoint to resume from."""
        return (self.path / "campaign.pkl").exists()

    def current(self) -> bool:
        """Whether the checkpoint is where the run stopped: no job ran after the one that wrote it (the journal's
        last job ended suspended; a run without a journal has only its checkpoint). Else resume from the journal.
        """
        if not self.exists():
            return False
        journal = self.run_dir.path / JOURNAL_FILE
        if not journal.exists():
            return True
        db = connect(journal, readonly=True)
        try:
            last = db.execute("SELECT outcome FROM sessions ORDER BY session DESC LIMIT 1").fetchone()
        finally:
            db.close()
        return last is not None and last[0] == "suspended"

    def save(self, saved: SavedCampaign) -> Path:
        """Write the checkpoint (store data first, the campaign last) and replace the previous one."""
        from ddict_store import checkpoint as checkpoint_store

        start = time.monotonic()
        partial = self.path.with_name(CHECKPOINT_DIR + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        if self.store is not None:
            checkpoint_store(self.store, partial / "store", self.namespaces)
        with open(partial / "campaign.pkl", "wb") as fp:
            pickle.dump(saved, fp, protocol=pickle.HIGHEST_PROTOCOL)
        (partial / "checkpoint.json").write_text(json.dumps(saved.describe(), indent=1))
        shutil.rmtree(self.path, ignore_errors=True)
        partial.rename(self.path)
        logger.info(f"Checkpoint written to {self.path} in {time.monotonic() - start:.1f} s: "
                    f"{len(saved.tasks)} task(s) set aside, {len(saved.results)} result(s) not yet taken")
        return self.path

    def load(self) -> SavedCampaign:
        """Read the checkpoint, put its data back into the store, and move results logged after it aside."""
        from ddict_store import restore as restore_store

        if not self.exists():
            raise NoCheckpoint(f"{self.run_dir.path} holds no checkpoint ({self.path}/campaign.pkl is missing): nothing to resume")
        with open(self.path / "campaign.pkl", "rb") as fp:
            saved: SavedCampaign = pickle.load(fp)
        if self.store is not None and (self.path / "store").exists():
            restored = restore_store(self.store, self.path / "store")
            logger.info(f"Restored {restored} key(s) into the store")
        self._set_aside_later_results(saved.results_bytes)
        return saved

    def discard(self) -> None:
        """Remove the checkpoint once the campaign has finished (its results are all in results.jsonl)."""
        shutil.rmtree(self.path, ignore_errors=True)

    def _set_aside_later_results(self, length: int) -> None:
        """Results logged after the checkpoint belong to tasks that run again: keep them, but out of the log."""
        log = self.run_dir.results_path
        if not log.exists() or log.stat().st_size <= length:
            return
        data = log.read_bytes()
        aside = self.run_dir.path / f"results.after-checkpoint-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.jsonl"
        aside.write_bytes(data[length:])
        with open(log, "r+b") as fp:
            fp.truncate(length)
        moved = data[length:].count(b"\n")
        logger.warning(f"{moved} result(s) logged after the checkpoint were moved to {aside.name}: "
                       "the job that logged them ended without a checkpoint, and their tasks run again")
