"""Run in a fresh runtime by test_persist.py: dragon tests/restore_checkpoint.py CHECKPOINT_DIR

Restores the checkpoint into a new store and prints a JSON digest of every key, for comparison."""

import json
import multiprocessing
import sys

from digest import digest

from ddict_store import DDictStore, latest_model, restore

if __name__ == "__main__":
    multiprocessing.set_start_method("dragon")
    with DDictStore() as store:
        count = restore(store, sys.argv[1])
        run = store.namespace("campaign", "run1")
        version, weights = latest_model(run, "surrogate")
        result = {
            "restored": count,
            "digests": {key: digest(store.get(key)) for key in store.keys()},
            "latest_model": [version, digest(weights["w"])],
        }
    print("RESULT " + json.dumps(result))
