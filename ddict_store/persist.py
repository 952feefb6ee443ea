"""Checkpoint a store to disk and restore it into another runtime (e.g. the next PBS job of a campaign).

What is persisted: every key of the chosen namespaces (default: all) with its value, whether it was
inline, in a managed-memory buffer or in chunks, so model versions and ProxyStore objects come back too.
Arrays and tensors are written as raw bytes with dtype/shape (``<n>.bin`` files beside ``manifest.json``).
What is not: DDict-internal state (managers, Dragon's own working-set checkpoints), buffer descriptors
and pool names (they belong to the old runtime; restore writes fresh ones), and anything outside the store.

Why not Dragon's DDict persistence (``persist_freq`` / ``PosixCheckpointPersister``): it saves what lives
inside the DDict, but large values here live in managed-memory pools outside it, so it would save
descriptors pointing at memory that is gone in the next runtime. It also persists on checkpoint retirement
rather than on demand, and a campaign needs "write everything now" at SIGTERM.

A checkpoint is written to ``<dir>.partial`` and renamed, so an interrupted checkpoint never replaces a
good one.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ddict_store.store import DDictStore

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def _keys(store: DDictStore, namespaces: Iterable[str] | None) -> list[str]:
    if namespaces is None:
        return store.keys()
    return sorted({f"{ns}/{key}" for ns in namespaces for key in store.namespace(*ns.split("/")).keys()})


def checkpoint(store: DDictStore, directory: str | Path, namespaces: Iterable[str] | None = None) -> Path:
    """Write the keys of ``namespaces`` (``"campaign/run"`` style; default: every key) to ``directory``."""
    target = Path(directory)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    entries = []
    for index, key in enumerate(_keys(store, namespaces)):
        kind, header, data = store.export_value(key)
        data.tofile(partial / f"{index}.bin")
        entries.append({"key": key, "kind": kind, "header": header, "nbytes": int(data.nbytes), "file": f"{index}.bin"})
    manifest = {
        "format": FORMAT_VERSION,
        "store": store.config.name,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "namespaces": list(namespaces) if namespaces is not None else None,
        "entries": entries,
    }
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=1))
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    return target


def restore(store: DDictStore, directory: str | Path) -> int:
    """Put every key of a checkpoint back into ``store``; returns how many keys were restored."""
    source = Path(directory)
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{source} holds no checkpoint ({MANIFEST} is missing)") from None
    if manifest.get("format") != FORMAT_VERSION:
        raise ValueError(f"{source}: checkpoint format {manifest.get('format')!r} is not {FORMAT_VERSION}")
    for entry in manifest["entries"]:
        data = np.fromfile(source / entry["file"], dtype=np.uint8)
        if data.nbytes != entry["nbytes"]:
            raise ValueError(f"{source / entry['file']}: {data.nbytes} bytes, expected {entry['nbytes']} (truncated checkpoint?)")
        store.import_value(entry["key"], entry["kind"], _tuples(entry["header"]), data)
    return len(manifest["entries"])


def _tuples(header: list) -> tuple:
    """JSON turned the header's tuples (shapes, the arrays of a dict) into lists; turn them back."""
    return tuple(_tuples(part) if isinstance(part, list) else part for part in header)
