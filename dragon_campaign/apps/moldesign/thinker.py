"""The steering policies of the molecular-design campaign, one thinker class each.

All of them share the bookkeeping of ``MolDesignThinker``: simulation results, the current ranking of
the search space by upper confidence bound (``mean + kappa * spread`` of the ensemble's predictions), and
``retrain()``, which trains the ensemble (one task per member, on GPU workers), publishes it to the store
and infers every chunk of the search space from there.

* ``random``: no model; molecules in a seeded random order (the baseline).
* ``batch``: simulate a batch, wait for all of it, retrain, pick the next batch from the new ranking.
* ``streaming``: a new simulation starts as soon as one finishes, taken from the newest ranking; the
  ensemble retrains every ``retrain_every`` results while simulations go on from the previous ranking.
  Before the first model there is no ranking to go on with: the first ``retrain_every`` molecules are
  random and the next simulations wait for the first model (else fast simulations would spend the
  budget on random picks while it trains).
* ``interleaved``: as streaming, but a queue of waiting simulations is kept (``queue_depth`` per worker);
  after each retraining the waiting tasks are reordered by their new scores with ``update_priority``.

During a retraining, ``ml_slots`` simulation slots move to the "ml" task type through the resource
counter, so that on CPU-only nodes training does not compete with simulations for cores (0 on GPU nodes).

Every policy can be checkpointed: the results, the ranking and the model version are saved; simulations
that had not finished carry on in the next job with their priorities, and a retraining that was cut
short is started again there (its data are the results, which the checkpoint holds).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dragon_campaign import (
    BaseThinker,
    DragonQueues,
    ResourceCounter,
    Result,
    Resumption,
    TimeoutException,
    agent,
    event_responder,
    result_processor,
    task_submitter,
)
from dragon_campaign.apps.moldesign.tasks import publish_member

CHOICES_POLL_S = 0.5  # while the ensemble trains or infers, how often the thinker checks the budget is not spent


@dataclass
class SearchState:
    """What the thinker knows; read by the outputs once the campaign ends."""

    results: list[dict[str, Any]] = field(default_factory=list)  # successful simulations, in completion order
    failures: list[dict[str, Any]] = field(default_factory=list)
    trainings: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    unused_trainings: int = 0  # retrainings abandoned (tasks cancelled) because the budget's last molecule was chosen meanwhile


class MolDesignThinker(BaseThinker):
    """Shared state and the retraining step; subclasses decide when to simulate what."""

    rec: ResourceCounter  # always given one

    policy = ""
    resumable_topics = ("simulate",)  # an interrupted retraining is redone from the results instead
    waits_for_first_model = False  # past the initial random molecules, simulations wait for the first model
    retrains_on_results = False  # every retrain_every new results trigger a retraining (else the policy calls retrain)

    def __init__(self, queues: DragonQueues, config: Any, space: tuple[str, ...], chunks: int, sim_workers: int,
                 store_handle: str, namespace: str, train_remote: bool = False) -> None:
        super().__init__(queues, ResourceCounter(sim_workers * self.slots_per_worker(config), ["simulate", "ml"]))
        self.config = config
        self.space = space
        self.chunks = chunks
        self.sim_workers = sim_workers
        self.store_args = (store_handle, namespace)
        self.train_remote = train_remote  # trainers cannot reach the store: their weights come back with the results
        self.state = SearchState()
        self.rank = np.random.default_rng(config.seed).permutation(len(space))  # order of preference; random until a model exists
        self.scores = np.zeros(len(space))
        self.cursor = 0
        self.submitted: set[int] = set()
        self.waiting: dict[str, int] = {}  # task id -> molecule, for tasks that may still be waiting
        self.recorded: set[str] = set()  # task ids of the simulations in the results and failures
        self.carried_on = 0  # simulations a resume brought back (requeued, or finished and delivered again)
        self.model_version = -1
        self.new_results = 0
        self.start_training = threading.Event()
        self.first_model = threading.Event()
        self.lock = threading.Lock()
        self.rec.reallocate(None, "simulate", "all")

    @staticmethod
    def slots_per_worker(config: Any) -> int:
        """Resource-counter slots per simulation worker."""
        return 1

    # -- choosing and submitting ------------------------------------------------------------------------------
    def next_molecule(self) -> int | None:
        """The best-ranked molecule not chosen yet, or None once the budget is chosen."""
        with self.lock:
            if len(self.submitted) >= min(self.config.budget, len(self.space)):
                return None
            while self.rank[self.cursor] in self.submitted:
                self.cursor += 1
            chosen = int(self.rank[self.cursor])
            self.submitted.add(chosen)
            return chosen

    def wait_for_ranking(self) -> bool:
        """Past the initial random molecules, wait for the first model (if the policy does); False if the campaign ended."""
        if not self.waits_for_first_model:
            return True
        while not self.first_model.wait(0.1):
            with self.lock:  # an initial simulation that fails is replaced by another random one
                if len(self.submitted) - len(self.state.failures) < self.config.retrain_every:
                    return True
            if self.done.is_set():
                return False
        return True

    def submit_simulation(self, molecule: int) -> None:
        """Submit a simulation of ``molecule`` with its current score as priority."""
        task_id = self.queues.send_inputs(self.space[molecule], method="simulate", topic="simulate",
                                          input_kwargs={"adiabatic": self.config.adiabatic},
                                          priority=float(self.scores[molecule]), task_info={"molecule": molecule})
        with self.lock:
            self.waiting[task_id] = molecule

    # -- results -------------------------------------------------------------------------------------------
    def record(self, result: Result) -> None:
        """Store one simulation result; ask for a retraining when enough new data arrived."""
        with self.lock:
            self.waiting.pop(result.task_id, None)
            if result.task_id in self.recorded:
                return  # delivered again after a resume from a snapshot that had it already
            self.recorded.add(result.task_id)
            elapsed = time.monotonic() - self.state.started
            if result.success:
                self.state.results.append({**result.value, "wall_s": elapsed, "compute_s": result.time.running,
                                           "molecule": result.task_info["molecule"]})
                self.new_results += 1
            else:
                reason = result.failure_reason
                self.state.failures.append({"smiles": result.args[0] if result.args else None, "molecule": result.task_info["molecule"],
                                            "reason": reason, "wall_s": elapsed})
                self.logger.warning(f"Simulation failed: {reason}")
            finished = len(self.state.results) + len(self.state.failures)
            if result.success and len(self.state.results) % 10 == 0:
                self.logger.info(f"[{finished}/{self.config.budget}] best IP so far {max(r['ip_ev'] for r in self.state.results):.3f} eV")
            if self.retrains_on_results and self.new_results >= self.config.retrain_every and self._choices_left():
                self.start_training.set()
        if finished >= self.config.budget:
            self.done.set()

    # -- checkpoints ---------------------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the search (see ``restore_state``)."""
        with self.lock:  # copies: the journal's snapshots are taken while the agents go on
            return {"results": list(self.state.results), "failures": list(self.state.failures), "trainings": list(self.state.trainings),
                    "unused_trainings": self.state.unused_trainings, "recorded": set(self.recorded),
                    "elapsed_s": time.monotonic() - self.state.started, "rank": self.rank, "scores": self.scores,
                    "model_version": self.model_version}

    def restore_state(self, resumption: Resumption) -> None:
        """Take the results and ranking back; the simulations that carry on hold their slots again."""
        saved = resumption.state
        self.state = SearchState(saved["results"], saved["failures"], saved["trainings"], time.monotonic() - saved["elapsed_s"],
                                 saved.get("unused_trainings", 0))
        self.rank, self.scores, self.model_version, self.cursor = saved["rank"], saved["scores"], saved["model_version"], 0
        self.recorded = saved.get("recorded", set())
        simulations = [r for r in resumption.carried if r.method == "simulate"]
        self.carried_on = len(simulations)  # each comes back through get_result, recorded already or not
        self.waiting = {r.task_id: r.task_info["molecule"] for r in simulations if r.task_id not in self.recorded}
        finished = {r["molecule"] for r in self.state.results} | {f["molecule"] for f in self.state.failures}
        self.submitted = finished | set(self.waiting.values())
        trained_on = self.state.trainings[-1]["samples"] if self.state.trainings else 0
        self.new_results = len(self.state.results) - trained_on
        if self.model_version >= 0:
            self.first_model.set()
        if self.retrains_on_results and self.new_results >= self.config.retrain_every:
            self.start_training.set()
        if resumption.allocation is not None:
            self.rec.restore(resumption.allocation, in_use={"simulate": self.carried_on})
        if len(finished) >= self.config.budget:  # checkpointed after the last result: nothing left to run
            self.done.set()
        self.logger.info(f"Resumed with {len(self.state.results)} results, model v{self.model_version}, "
                         f"{len(self.waiting)} simulation(s) carried on")

    # -- learning ------------------------------------------------------------------------------------------
    def choices_left(self) -> bool:
        """Whether a new ranking can still change what is simulated (else a retraining would never be used)."""
        with self.lock:
            return self._choices_left()

    def _choices_left(self) -> bool:  # with the lock held
        return len(self.submitted) < min(self.config.budget, len(self.space))

    def _collect(self, task_ids: list[str], topic: str) -> list[Result] | None:
        """The results of these tasks; or None once no choice is left to make, after cancelling those still
        running and discarding the results of the others (a model nobody uses is not worth finishing).
        """
        results: list[Result] = []
        while len(results) < len(task_ids):
            try:
                results.append(self.queues.get_result(topic, timeout=CHOICES_POLL_S))
            except TimeoutException:
                if self.choices_left():
                    continue
                self.state.unused_trainings += 1
                cancelled = self.queues.cancel(set(task_ids) - {r.task_id for r in results})
                for _ in range(len(task_ids) - len(results) - len(cancelled)):  # finished before the cancel: drop
                    self.queues.get_result(topic)
                return None
        return results

    def retrain(self) -> None:
        """Train the ensemble on every result so far, infer the whole space, and rerank it; skipped once every
        molecule of the budget has been chosen, since no ranking would be used any more.
        """
        with self.lock:  # in search-space order, not completion order: the same data trains the same networks
            data = sorted(self.state.results, key=lambda r: r["molecule"])
            self.new_results = 0
        if len(data) < 2 or not self.choices_left():
            return
        version = self.model_version + 1
        start = time.monotonic()
        smiles, ips = [r["smiles"] for r in data], [r["ip_ev"] for r in data]
        train_store = (None, self.store_args[1]) if self.train_remote else self.store_args
        trained = self._collect([self.queues.send_inputs(smiles, ips, member, version, self.config.seed, self.config.epochs,
                                                         *train_store, method="train", topic="train")
                                 for member in range(self.config.ensemble)], "train")
        if trained is None:
            self.logger.info(f"Model v{version} abandoned: every molecule of the budget was chosen while it trained")
            return
        failed = [r.failure_reason for r in trained if not r.success]
        if failed:
            self.logger.error(f"Training failed, keeping the previous ranking: {failed[0]}")
            self.first_model.set()  # simulations waiting for a first model go on in random order
            return
        if self.train_remote:
            for result in trained:
                publish_member(*self.store_args, result.value["member"], result.value["state"], version)
        inferred = self._collect([self.queues.send_inputs(chunk, self.config.ensemble, version, *self.store_args,
                                                          method="infer", topic="infer") for chunk in range(self.chunks)], "infer")
        if inferred is None:
            self.logger.info(f"Model v{version} not used: every molecule of the budget was chosen while it ranked the space")
            return
        failed = [r.failure_reason for r in inferred if not r.success]
        if failed:
            self.logger.error(f"Inference failed, keeping the previous ranking: {failed[0]}")
            self.first_model.set()
            return
        mean = np.concatenate([r.value[1] for r in sorted(inferred, key=lambda r: r.value[0])])
        spread = np.concatenate([r.value[2] for r in sorted(inferred, key=lambda r: r.value[0])])
        scores = mean + self.config.kappa * spread
        with self.lock:
            self.scores, self.rank, self.cursor = scores, np.argsort(-scores, kind="stable"), 0
            self.model_version = version
            waiting = dict(self.waiting)
        self.first_model.set()
        if waiting:
            self.queues.update_priority(list(waiting), [float(scores[m]) for m in waiting.values()])
        losses = [r.value["last_loss"] for r in trained]
        ml_seconds = sum(r.time.running for r in trained + inferred)
        self.state.trainings.append({"version": version, "samples": len(data), "seconds": time.monotonic() - start, "ml_task_s": ml_seconds,
                                     "mean_last_loss": float(np.mean(losses)), "wall_s": time.monotonic() - self.state.started})
        self.logger.info(f"Model v{version} trained on {len(data)} molecules in {time.monotonic() - start:.1f} s; "
                         f"top predicted IP {scores.max():.2f} eV (UCB)")


class RandomSearch(MolDesignThinker):
    """No model: molecules in a seeded random order (the baseline)."""
    policy = "random"

    @task_submitter(task_type="simulate")
    def submit(self) -> None:
        """Each free slot: simulate the best molecule not chosen yet."""
        if not self.wait_for_ranking():
            return
        molecule = self.next_molecule()
        if molecule is not None:  # past the budget the slot stays taken, so this agent waits until the end
            self.submit_simulation(molecule)

    @result_processor(topic="simulate")
    def receive(self, result: Result) -> None:
        """Each simulation result: record it and free its slot."""
        self.rec.release("simulate", 1)
        self.record(result)


class StreamingSearch(RandomSearch):
    """A new simulation as soon as one ends; the ensemble retrains every ``retrain_every`` results."""
    policy = "streaming"
    waits_for_first_model = True
    retrains_on_results = True

    @event_responder(event_name="start_training", reallocate_resources=True, gather_from="simulate",
                     gather_to="ml", disperse_to="simulate", max_slots="ml_slots")
    def learn(self) -> None:
        """Retrain when enough new results arrived, with ``ml_slots`` lent from the simulations."""
        self.retrain()

    @property
    def ml_slots(self) -> int:
        """Slots lent to learning: ``ml_slots`` workers' worth, always leaving one worker simulating."""
        return min(self.config.ml_slots, self.sim_workers - 1) * self.slots_per_worker(self.config)


class InterleavedSearch(StreamingSearch):
    """Streaming with a queue of waiting simulations, reordered after each retraining."""
    policy = "interleaved"

    @staticmethod
    def slots_per_worker(config: Any) -> int:
        """One running and ``queue_depth`` waiting simulations per worker."""
        return 1 + config.queue_depth  # the extra slots are tasks waiting in the queue


class BatchSearch(MolDesignThinker):
    """Simulate a batch, wait for all of it, retrain, pick the next batch."""
    policy = "batch"

    @agent
    def run_batches(self) -> None:
        """Batches until the budget is spent."""
        for _ in range(self.carried_on):  # simulations of a batch cut short by a checkpoint or a kill
            self.record(self.queues.get_result("simulate"))
        if self.new_results and not self.done.is_set():  # resumed with data the model has not seen
            self.retrain()
        while not self.done.is_set():
            batch = [m for m in (self.next_molecule() for _ in range(self.config.batch_size)) if m is not None]
            if not batch:
                return
            for molecule in batch:
                self.submit_simulation(molecule)
            for _ in batch:
                self.record(self.queues.get_result("simulate"))
            if not self.done.is_set():
                self.retrain()


POLICIES: dict[str, type[MolDesignThinker]] = {
    "random": RandomSearch,
    "batch": BatchSearch,
    "streaming": StreamingSearch,
    "interleaved": InterleavedSearch,
}
