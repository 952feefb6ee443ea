"""Interleaved optimizer: one agent keeps the workers busy from a list of candidate points while another
agent, again and again, has a task on a pool of its own refit the surrogate and reorder that list, so the
most promising candidates run next. Steering never stops the evaluations.

    PATH=$PWD/.venv/bin:$PATH dragon examples/colmena_optimizers/interleaved.py --num-guesses 40 --num-parallel 4
"""

from __future__ import annotations

import threading
import time
from functools import partial, update_wrapper
from pathlib import Path

import numpy as np
from common import ackley, expected_improvement, make_gpr, make_server, parse_args, prepare_run, random_points, run

from dragon_campaign import BaseThinker, DragonQueues, agent


def reprioritize_queue(database: list[tuple[list[float], float]], candidates: np.ndarray, opt_delay: float = 0.0) -> np.ndarray:
    """Indices of ``candidates`` from the least to the most promising, by expected improvement of a GPR fit
    to ``database`` (the list is worked from its end)."""
    time.sleep(opt_delay)  # stands in for a more expensive optimizer
    train_X, train_y = zip(*database)
    gpr = make_gpr().fit(np.vstack(train_X), train_y)
    return np.argsort(expected_improvement(gpr, candidates, min(train_y)))


class Thinker(BaseThinker):
    """Two agents share the candidate list: one submits from it, one reorders it."""

    def __init__(self, queues: DragonQueues, output_dir: Path, dim: int = 2, n_guesses: int = 100, batch_size: int = 10,
                 search_space_size: int = 1000) -> None:
        super().__init__(queues)
        self.n_guesses = n_guesses
        self.batch_size = batch_size
        self.output_path = output_dir / "results.json"
        self.task_queue = list(random_points(search_space_size, dim))  # the next point to run is the last
        self.database: list[tuple[list[float], float]] = []
        self.train_y: list[float] = []
        self.has_data = threading.Event()
        self.queue_lock = threading.Lock()

    @agent
    def simulation_worker(self) -> None:
        """Keep ``batch_size`` evaluations running until ``n_guesses`` have come back."""
        submitted = 0
        with self.queue_lock:
            for _ in range(min(self.batch_size, self.n_guesses)):
                self.queues.send_inputs(self.task_queue.pop().tolist(), method="ackley", topic="doer")
                submitted += 1
        for received in range(1, self.n_guesses + 1):
            result = self.queues.get_result(topic="doer")
            if submitted < self.n_guesses:
                with self.queue_lock:
                    self.queues.send_inputs(self.task_queue.pop().tolist(), method="ackley", topic="doer")
                submitted += 1
            with open(self.output_path, "a") as fp:
                print(result.json(exclude={"inputs"}), file=fp)
            if result.success:
                self.database.append((result.args[0], result.value))
                self.train_y.append(result.value)
                self.has_data.set()
            else:
                self.logger.warning(f"An evaluation failed: {result.failure_info.exception}")
        self.logger.info(f"Done running {self.n_guesses} evaluations; best {min(self.train_y):.2f}")
        self.has_data.set()  # the reordering agent may still be waiting for its first data

    @agent
    def thinker_worker(self) -> None:
        """Reorder the candidates by the surrogate's latest opinion, over and over."""
        self.has_data.wait()
        while not self.done.is_set():
            with self.queue_lock:
                snapshot = list(self.task_queue)
                self.queues.send_inputs(list(self.database), np.array(snapshot), method="reprioritize_queue", topic="thinker")
            order = self.queues.get_result(topic="thinker").value
            if order is None:  # the reordering task failed (or was cut short at the end): keep the order
                continue
            with self.queue_lock:
                started = len(snapshot) - len(self.task_queue)  # taken from the end of the list meanwhile
                self.task_queue = [snapshot[i] for i in order if i < len(snapshot) - started]
            self.logger.info(f"Reordered {len(self.task_queue)} candidates ({started} started meanwhile)")


def add_options(parser) -> None:
    parser.add_argument("--opt-delay", type=float, default=2.0, help="seconds each reordering takes at least (default 2)")
    parser.add_argument("--search-space-size", type=int, default=1000, help="candidate points (default 1000)")


if __name__ == "__main__":
    args = parse_args("interleaved", add_options)
    out_dir = prepare_run("interleaved", args)
    queues = DragonQueues(keep_inputs=True, topics=["thinker", "doer"])
    thinker = Thinker(queues, out_dir, dim=args.dim, n_guesses=args.num_guesses, batch_size=args.num_parallel,
                      search_space_size=max(args.search_space_size, args.num_guesses))

    my_ackley = partial(ackley, mean_rt=np.log(args.runtime), std_rt=args.runtime_var)
    update_wrapper(my_ackley, ackley)
    my_rep = partial(reprioritize_queue, opt_delay=args.opt_delay)
    update_wrapper(my_rep, reprioritize_queue)
    doer = make_server([my_ackley, (my_rep, {"pool": "optimizer"})], queues, out_dir, args, optimizer_workers=1)

    run("interleaved", thinker, doer, queues, out_dir)
