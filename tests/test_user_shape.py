"""The campaign shape a Colmena user writes (issue 1, point 7) works exactly as shown."""

from __future__ import annotations

from dragon_campaign import BaseThinker, DragonQueues, DragonTaskServer, Result, WorkerPool, agent, result_processor


def simulate(x: float) -> float:
    return x * x


def train(values: list[float]) -> float:
    return sum(values) / len(values)


class MyThinker(BaseThinker):
    def __init__(self, queues: DragonQueues) -> None:
        super().__init__(queues)
        self.values: list[float] = []
        self.model: float | None = None
        self.trained_on: str | None = None

    @agent
    def submit(self) -> None:
        for x in range(8):
            self.queues.send_inputs(x, method="simulate", topic="simulate")
        for _ in range(8):
            self.values.append(self.queues.get_result(topic="simulate", timeout=60).value)
        self.queues.send_inputs(self.values, method="train", topic="train")

    @result_processor(topic="train")
    def receive_model(self, result: Result) -> None:
        self.model = result.value
        self.trained_on = result.worker_info.pool


def test_colmena_shape(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default run directory is runs/<run-id> under the working directory
    queues = DragonQueues(topics=["simulate", "train"])
    server = DragonTaskServer(
        methods=[simulate, (train, {"pool": "gpu"})],
        queues=queues,
        pools={"cpu": WorkerPool(workers=4), "gpu": WorkerPool(gpus=True)},
    )
    server.start()
    thinker = MyThinker(queues)
    thinker.start()
    thinker.join(timeout=120)
    queues.send_kill_signal()
    assert server.join(timeout=60)
    assert sorted(thinker.values) == [x * x for x in range(8)]
    assert thinker.model == sum(x * x for x in range(8)) / 8 and thinker.trained_on == "gpu"
    [run_dir] = (tmp_path / "runs").iterdir()
    assert len((run_dir / "results.jsonl").read_text().splitlines()) == 9
