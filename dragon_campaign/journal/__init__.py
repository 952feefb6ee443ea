"""The campaign journal: a durable record, written while the campaign runs, of every task and result.

``<run-dir>/journal.sqlite`` (SQLite in WAL mode) holds what was submitted (id, topic, method, inputs,
priority and its later changes, cancellations), what finished (each result, as in results.jsonl, with
its value pickled), periodic snapshots of the thinker's state, and one row per job. The task server
writes it (``.database``) in group commits; ``results.jsonl`` is its readable export, appended after each
commit. After any end of a job, ``--resume`` carries on from it (``.resume``); ``dragon-campaign status``
reads it without starting Dragon (``.view``).
"""

from dragon_campaign.journal.database import COMMIT_INTERVAL_S, JOURNAL_FILE, SNAPSHOT_S, Journal
from dragon_campaign.journal.events import TaskEvents
from dragon_campaign.journal.resume import resume_script

__all__ = ["COMMIT_INTERVAL_S", "JOURNAL_FILE", "SNAPSHOT_S", "Journal", "TaskEvents", "resume_script"]
