"""A result's line in results.jsonl: whatever its inputs and value, the record is written."""

from __future__ import annotations

import json

from proxystore.connectors.local import LocalConnector
from proxystore.store import Store

from dragon_campaign import Result


def test_proxystore_objects_that_are_not_proxies_are_logged_as_values():
    with Store("log-test", LocalConnector()) as store:
        result = Result(inputs=((store.config(), 3), {}), method="check", value=1)
        line = json.loads(result.json_line())
    assert line["inputs"][0][1] == 3 and "log-test" in json.dumps(line["inputs"][0][0])


def test_an_input_whose_serialization_raises_leaves_the_record():
    class Awkward:
        def __repr__(self) -> str:
            raise RuntimeError("no text for this one")

    line = json.loads(Result(inputs=((Awkward(),), {}), method="check", value=2, success=True).json_line())
    assert line["method"] == "check" and line["success"] is True and "cannot hold" in line["inputs"][0][0]
    assert line["value"] == 2, "only what cannot be written is replaced"
