"""A stand-in simulation code, run as an MPI program: the Ackley function of one point, its dimensions
split over the ranks and the partial sums combined with an MPI reduction; rank 0 prints the value.

    mpiexec -n 2 python simulate.py '[1.0, -2.5, 0.3, 4.0]' --runtime 0.5

Used by mpi_executable.py through MPIExecutableMethod, the way Colmena campaigns run compiled codes.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time

from mpi4py import MPI


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("point", help="the point, as a JSON list of numbers")
    parser.add_argument("--runtime", type=float, default=0.0, help="mean seconds the simulation takes (log-normal, sigma 0.1)")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    point = [float(x) for x in json.loads(args.point)]
    mine = point[comm.Get_rank()::comm.Get_size()]  # this rank's dimensions
    squares = comm.allreduce(sum(x * x for x in mine), op=MPI.SUM)
    cosines = comm.allreduce(sum(math.cos(2 * math.pi * x) for x in mine), op=MPI.SUM)
    if args.runtime > 0:
        time.sleep(random.lognormvariate(math.log(args.runtime), 0.1))
    comm.Barrier()
    if comm.Get_rank() == 0:
        d = len(point)
        print(-20 * math.exp(-0.2 * math.sqrt(squares / d)) - math.exp(cosines / d) + 20 + math.e, flush=True)


if __name__ == "__main__":
    main()
