"""Each simulation's arrays kept in the run directory, so that a killed run resumes without running it again.

The data paths of Dragon keep their data in the job's memory (the DDict), which ends with the job. With
``keep_data`` a simulation also writes its arrays here, after its timed write and before it returns, so
a simulation the journal records as finished has its file: the next job puts the file's arrays in its own
store instead of simulating again. Written to a temporary name, flushed to disk, then renamed: a kill
leaves either the whole file or none.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

Arrays = tuple[np.ndarray, np.ndarray]


def kept_path(directory: str | Path, sim_id: int) -> Path:
    """Where simulation ``sim_id`` keeps its arrays."""
    return Path(directory) / f"sim{sim_id}.npz"


def keep(directory: str | Path, sim_id: int, arrays: Arrays) -> None:
    """Write one simulation's (inputs, outputs) to its file, whole or not at all."""
    path = kept_path(directory, sim_id)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    with open(partial, "wb") as fp:
        np.savez(fp, inputs=arrays[0], outputs=arrays[1])
        fp.flush()
        os.fsync(fp.fileno())
    os.replace(partial, path)


def load_kept(directory: str | Path, sim_id: int) -> Arrays | None:
    """A simulation's kept arrays; None if it kept none (an earlier job without ``keep_data``)."""
    path = kept_path(directory, sim_id)
    if not path.exists():
        return None
    with np.load(path) as kept:
        return kept["inputs"], kept["outputs"]
