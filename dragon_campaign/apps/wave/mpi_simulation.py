"""The wave simulation decomposed over MPI ranks (mpi4py): the MPI example of the project.

Each rank computes one band of grid rows of every frame (a ``sim_sleep`` share of 1/ranks per step, as
the emulated compute divides among them) and rank 0 gathers the bands with ``Gatherv``. The result is
byte for byte what ``simulate`` computes in one process. Run it
as ``MPIMethod(simulate_decomposed)`` (see ``dragon_campaign.mpi``); ranks other than 0 return None.
"""

from __future__ import annotations

import time

import numpy as np

from dragon_campaign.apps.wave.kept import keep
from dragon_campaign.apps.wave.simulation import TIME_STEP, parameters, wave_field


def row_bands(grid_size: int, ranks: int) -> np.ndarray:
    """Row boundaries: rank r computes rows ``bands[r]:bands[r + 1]``."""
    return np.linspace(0, grid_size, ranks + 1).astype(int)


def simulate_decomposed(sim_id: int, grid_size: int, num_steps: int, sim_sleep: float = 0.0,
                        keep_dir: str | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """One simulation over every rank of COMM_WORLD; rank 0 returns (inputs, outputs) as ``simulate`` does
    (and keeps them in ``keep_dir``, if given).
    """
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    bands = row_bands(grid_size, size)
    rows = slice(int(bands[rank]), int(bands[rank + 1]))
    frequency, centre = parameters(sim_id)
    band = np.empty((rows.stop - rows.start, num_steps + 1, grid_size), dtype=np.float32)  # rows outermost: one block per rank
    for step in range(num_steps + 1):
        band[:, step] = wave_field(grid_size, step * TIME_STEP, frequency, centre, rows)
        if sim_sleep > 0 and step < num_steps:
            time.sleep(sim_sleep / size)
    counts = [int(bands[r + 1] - bands[r]) * (num_steps + 1) * grid_size for r in range(size)]
    gathered = np.empty((grid_size, num_steps + 1, grid_size), dtype=np.float32) if rank == 0 else None
    comm.Gatherv(band, [gathered, counts, MPI.FLOAT] if rank == 0 else None, root=0)
    if gathered is None:  # not rank 0
        return None
    frames = np.ascontiguousarray(gathered.transpose(1, 0, 2))[:, None]
    arrays = frames[:-1].copy(), frames[1:].copy()
    if keep_dir is not None:
        keep(keep_dir, sim_id, arrays)
    return arrays
