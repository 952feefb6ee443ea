"""Streaming optimizer: as soon as one evaluation finishes, refit the surrogate and submit the single
most promising point, so the workers never wait for a whole batch.

    PATH=$PWD/.venv/bin:$PATH dragon examples/colmena_optimizers/streaming.py --num-guesses 40 --num-parallel 4
"""

from __future__ import annotations

import time
from functools import partial, update_wrapper
from pathlib import Path

import numpy as np
from common import ackley, expected_improvement, make_gpr, make_server, parse_args, prepare_run, random_points, run

from dragon_campaign import BaseThinker, DragonQueues, agent


class Thinker(BaseThinker):
    """Keeps ``batch_size`` evaluations running; each finished one is replaced by the best next guess."""

    def __init__(self, queues: DragonQueues, output_dir: Path, dim: int = 2, n_guesses: int = 100, batch_size: int = 10,
                 opt_delay: float = 0.0) -> None:
        super().__init__(queues)
        self.n_guesses = n_guesses
        self.batch_size = batch_size
        self.dim = dim
        self.opt_delay = opt_delay
        self.min_training_size = 8
        self.output_path = output_dir / "results.json"
        self.train_X: list[list[float]] = []
        self.train_y: list[float] = []

    @agent
    def operate(self) -> None:
        initial = min(self.batch_size + self.min_training_size, self.n_guesses)
        for point in random_points(initial, self.dim):
            self.queues.send_inputs(point.tolist(), method="ackley")
        self.logger.info(f"Submitted {initial} random guesses")
        submitted, received = initial, 0
        gpr = make_gpr()
        while received < submitted:
            result = self.queues.get_result()
            received += 1
            with open(self.output_path, "a") as fp:
                print(result.json(), file=fp)
            if result.success:
                self.train_X.append(result.args[0])
                self.train_y.append(result.value)
            else:
                self.logger.warning(f"An evaluation failed: {result.failure_info.exception}")
            self.logger.info(f"Completed {received}/{self.n_guesses}")
            if submitted >= self.n_guesses or len(self.train_y) < self.min_training_size:
                continue
            time.sleep(self.opt_delay)  # stands in for a more expensive optimizer
            gpr.fit(np.vstack(self.train_X), self.train_y)
            candidates = random_points(self.batch_size * 1024, self.dim)
            improvement = expected_improvement(gpr, candidates, min(self.train_y))
            best = int(np.argmax(improvement))
            self.queues.send_inputs(candidates[best].tolist(), method="ackley")
            submitted += 1
            self.logger.info(f"Sent a new point, expected improvement {improvement[best]:.3g}")
        best = int(np.argmin(self.train_y))
        self.logger.info(f"Done! Best result {np.array2string(np.array(self.train_X[best]), precision=2)} = {self.train_y[best]:.2f}")


def add_options(parser) -> None:
    parser.add_argument("--opt-delay", type=float, default=0.0, help="seconds the optimizer takes at least (default 0)")


if __name__ == "__main__":
    args = parse_args("streaming", add_options)
    out_dir = prepare_run("streaming", args)
    queues = DragonQueues(keep_inputs=True)
    thinker = Thinker(queues, out_dir, dim=args.dim, n_guesses=args.num_guesses, batch_size=args.num_parallel,
                      opt_delay=args.opt_delay)

    my_ackley = partial(ackley, mean_rt=np.log(args.runtime), std_rt=args.runtime_var)
    update_wrapper(my_ackley, ackley)
    doer = make_server([my_ackley], queues, out_dir, args)

    run("streaming", thinker, doer, queues, out_dir)
