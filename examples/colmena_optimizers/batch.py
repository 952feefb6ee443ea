"""Batch optimizer: evaluate a batch of points, fit the surrogate to every value so far, choose the next
batch by expected improvement, and repeat until the budget is spent.

    PATH=$PWD/.venv/bin:$PATH dragon examples/colmena_optimizers/batch.py --num-guesses 40 --num-parallel 4
"""

from __future__ import annotations

from functools import partial, update_wrapper
from pathlib import Path

import numpy as np
from common import ackley, expected_improvement, make_gpr, make_server, parse_args, prepare_run, random_points, run

from dragon_campaign import BaseThinker, DragonQueues, agent


class Thinker(BaseThinker):
    """Submits a batch, waits for all of it, refits, submits the next."""

    def __init__(self, queues: DragonQueues, output_dir: Path, dim: int = 2, n_guesses: int = 100, batch_size: int = 10) -> None:
        super().__init__(queues)
        self.n_guesses = n_guesses
        self.batch_size = batch_size
        self.dim = dim
        self.output_path = output_dir / "results.json"
        self.train_X: list[list[float]] = []
        self.train_y: list[float] = []

    @agent
    def optimize(self) -> None:
        self.run_batch(random_points(self.batch_size, self.dim))
        self.logger.info("Evaluated the initial random batch")
        gpr = make_gpr()
        while len(self.train_y) < self.n_guesses:
            gpr.fit(np.vstack(self.train_X), self.train_y)
            candidates = random_points(self.batch_size * 1024, self.dim)
            improvement = expected_improvement(gpr, candidates, min(self.train_y))
            best = np.argsort(improvement)[-min(self.batch_size, self.n_guesses - len(self.train_y)):]
            self.logger.info(f"Selected {len(best)} points, expected improvement up to {improvement[best].max():.3g}")
            self.run_batch(candidates[best])
        best = int(np.argmin(self.train_y))
        self.logger.info(f"Done! Best result {np.array2string(np.array(self.train_X[best]), precision=2)} = {self.train_y[best]:.2f}")

    def run_batch(self, points: np.ndarray) -> None:
        for point in points:
            self.queues.send_inputs(point.tolist(), method="ackley")
        with open(self.output_path, "a") as fp:
            for _ in range(len(points)):
                result = self.queues.get_result()
                print(result.json(), file=fp)
                if not result.success:
                    self.logger.warning(f"An evaluation failed: {result.failure_info.exception}")
                    continue
                self.train_X.append(result.args[0])
                self.train_y.append(result.value)


if __name__ == "__main__":
    args = parse_args("batch")
    out_dir = prepare_run("batch", args)
    queues = DragonQueues(keep_inputs=True)
    thinker = Thinker(queues, out_dir, dim=args.dim, n_guesses=args.num_guesses, batch_size=args.num_parallel)

    my_ackley = partial(ackley, mean_rt=np.log(args.runtime), std_rt=args.runtime_var)
    update_wrapper(my_ackley, ackley)
    doer = make_server([my_ackley], queues, out_dir, args)

    run("batch", thinker, doer, queues, out_dir)
