"""The batch optimizer with its evaluations run by an MPI program (simulate.py) instead of a Python
function: Colmena's ExecutableMethod pattern, where preprocess builds the command line and postprocess
parses the program's output.

    PATH=$PWD/.venv/bin:$PATH dragon examples/colmena_optimizers/mpi_executable.py --num-guesses 20 --num-parallel 2 --ranks 2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from batch import Thinker
from common import make_server, parse_args, prepare_run, run

from dragon_campaign import DragonQueues, MPIExecutableMethod
from dragon_campaign.mpi import default_mpiexec

HERE = Path(__file__).resolve().parent


class Simulation(MPIExecutableMethod):
    """simulate.py over ``ranks`` MPI ranks; the task's value is the number rank 0 prints."""

    def __init__(self, ranks: int, runtime: float) -> None:
        super().__init__([sys.executable, str(HERE / "simulate.py"), "--runtime", str(runtime)], name="ackley",
                         mpi_command_string=f"{default_mpiexec()} -n {ranks}", timeout=max(60.0, 20 * runtime))

    def preprocess(self, run_dir: Path, args: tuple, kwargs: dict) -> tuple[list[str], str | None]:
        return [json.dumps(args[0])], None

    def postprocess(self, run_dir: Path) -> float:
        return float((run_dir / "colmena.stdout").read_text())


def add_options(parser) -> None:
    parser.add_argument("--ranks", type=int, default=2, help="MPI ranks per evaluation (default 2)")


if __name__ == "__main__":
    args = parse_args("mpi_executable", add_options)
    out_dir = prepare_run("mpi_executable", args)
    queues = DragonQueues(keep_inputs=True)
    thinker = Thinker(queues, out_dir, dim=args.dim, n_guesses=args.num_guesses, batch_size=args.num_parallel)
    doer = make_server([Simulation(args.ranks, args.runtime)], queues, out_dir, args)

    run("mpi_executable", thinker, doer, queues, out_dir)
