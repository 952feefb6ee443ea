"""Task bodies of the molecular-design campaign: simulate and featurize on CPU workers, train and infer on GPU workers.

Models and search-space features never travel through the task queue: trainers publish weights to the
store (``publish_model``), inference tasks read them and one chunk of precomputed graph features from it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dragon_campaign.apps.moldesign.simulate import ionization_potential

SCALING_KEY = "_scaling"  # ensemble member metadata stored beside its tensors

def _namespace(store_handle: str, namespace: str) -> Any:
    """This run's namespace of the store (ddict_store is imported here: the module must import without Dragon)."""
    from ddict_store import attached

    return attached(store_handle).namespace(*namespace.split("/"))


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def simulate(smiles: str, adiabatic: bool = False) -> dict[str, Any]:
    """GFN2-xTB ionization potential; a failure raises with its reason (the result then says why)."""
    return ionization_potential(smiles, adiabatic=adiabatic).as_dict()


def featurize(chunk: int, smiles: list[str], store_handle: str, namespace: str) -> int:
    """Store the graph features of one chunk of the search space (read by every inference task); returns its size.

    A molecule RDKit cannot parse gets an empty graph instead of failing the chunk: it is still ranked, and
    fails with its reason if it is ever simulated.
    """
    from dragon_campaign.apps.moldesign.features import featurize as to_graphs

    _namespace(store_handle, namespace).put(f"features/chunk{chunk}", to_graphs(smiles, strict=False).as_arrays())
    return len(smiles)


def train(smiles: list[str], ips: list[float], member: int, version: int, seed: int, epochs: int,
          store_handle: str | None, namespace: str) -> dict[str, Any]:
    """Train one ensemble member on a bootstrap resample and publish it as ``member<i>`` version ``version``.

    Without a store (``store_handle`` None: a trainer at another site) the weights come back with the result
    as ``state``, for the steering process to publish with ``publish_member``.
    """
    from dragon_campaign.apps.moldesign.features import featurize
    from dragon_campaign.apps.moldesign.mpnn import train_member

    trained = train_member(featurize(smiles), np.asarray(ips), seed=seed * 1000 + member, epochs=epochs, device=_device())
    scaling = {"mean": trained.mean, "std": trained.std, "hidden": trained.hidden, "layers": trained.layers}
    state = {**trained.state_dict, SCALING_KEY: scaling}
    summary = {"member": member, "version": version, "first_loss": trained.losses[0], "last_loss": trained.losses[-1],
               "samples": len(smiles), "weights_bytes": sum(tensor.nbytes for tensor in trained.state_dict.values())}
    if store_handle is None:
        return {**summary, "state": state}
    publish_member(store_handle, namespace, member, state, version)
    return summary


def publish_member(store_handle: str, namespace: str, member: int, state: dict[str, Any], version: int) -> None:
    """Publish one ensemble member's weights where inference tasks read them."""
    from ddict_store import publish_model

    publish_model(_namespace(store_handle, namespace), f"member{member}", state, version=version)


def infer(chunk: int, members: int, version: int, store_handle: str, namespace: str) -> tuple[int, np.ndarray, np.ndarray]:
    """Ensemble mean and spread of the predicted IP for every molecule of one chunk of the search space."""
    from ddict_store import model
    from dragon_campaign.apps.moldesign.features import GraphBatch
    from dragon_campaign.apps.moldesign.mpnn import TrainedModel, predict

    run = _namespace(store_handle, namespace)
    ensemble = []
    for member in range(members):
        state = model(run, f"member{member}", version)
        scaling = state.pop(SCALING_KEY)
        ensemble.append(TrainedModel(state, scaling["mean"], scaling["std"], scaling["hidden"], scaling["layers"], []))
    batch = GraphBatch.from_arrays(run.get(f"features/chunk{chunk}"))
    mean, spread = predict(ensemble, batch, device=_device())
    return chunk, mean.astype(np.float32), spread.astype(np.float32)
