"""A message-passing neural network on molecular graphs, trained as a bootstrap ensemble.

Each layer sends a message along every bond (an MLP of the neighbour's state and the bond's features),
sums the messages at each atom and updates its state with a GRU cell; a sum over atoms and an MLP give
the molecule's value. Several networks trained on bootstrap resamples of the data give, at inference,
a mean and a spread (the uncertainty the thinker's upper-confidence-bound selection needs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dragon_campaign.apps.moldesign.features import ATOM_FEATURES, BOND_FEATURES, GraphBatch


class MPNN(nn.Module):
    """A message-passing network that predicts one number per molecule from its graph."""
    def __init__(self, hidden: int = 64, layers: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(ATOM_FEATURES, hidden)
        self.messages = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden + BOND_FEATURES, hidden), nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(layers)
        )
        self.update = nn.GRUCell(hidden, hidden)
        self.readout = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, atoms: torch.Tensor, edges: torch.Tensor, edge_features: torch.Tensor, graph: torch.Tensor, count: int) -> torch.Tensor:
        """Predictions for a batch of graphs (``graph`` maps each atom to its molecule)."""
        state = self.embed(atoms)
        source, target = edges
        for message in self.messages:
            sent = message(torch.cat([state[source], edge_features], dim=1))
            received = torch.zeros_like(state).index_add_(0, target, sent)
            state = self.update(received, state)
        pooled = torch.zeros(count, state.shape[1], device=state.device, dtype=state.dtype).index_add_(0, graph, state)
        return self.readout(pooled).squeeze(1)


@dataclass
class TrainedModel:
    """One ensemble member: weights plus the target scaling it was trained with."""

    state_dict: dict[str, torch.Tensor]
    mean: float
    std: float
    hidden: int
    layers: int
    losses: list[float]


def _tensors(batch: GraphBatch, device: torch.device) -> tuple[torch.Tensor, ...]:
    return (torch.as_tensor(batch.atoms, device=device), torch.as_tensor(batch.edges, device=device),
            torch.as_tensor(batch.edge_features, device=device), torch.as_tensor(batch.graph, device=device))


@dataclass
class _MoleculeIndex:
    """Where each molecule's atoms and edges sit in a batch: computed once, used for every minibatch."""

    atom_start: np.ndarray  # (molecules + 1,): molecule i owns atoms atom_start[i]:atom_start[i + 1]
    edges_by_molecule: list[np.ndarray]

    @classmethod
    def of(cls, batch: GraphBatch) -> _MoleculeIndex:
        edge_owner = batch.graph[batch.edges[0]]
        split_at = np.searchsorted(np.sort(edge_owner), np.arange(1, batch.count))
        return cls(np.searchsorted(batch.graph, np.arange(batch.count + 1)), np.split(np.argsort(edge_owner, kind="stable"), split_at))


def _subset(batch: GraphBatch, index: _MoleculeIndex, molecules: np.ndarray) -> GraphBatch:
    """The graphs of these molecules (in this order, repeats allowed), renumbered."""
    atom_ids, edge_ids, graph = [], [], []
    atom_start, edges_by_molecule = index.atom_start, index.edges_by_molecule
    offset = 0
    new_edges = []
    for new_index, molecule in enumerate(molecules):
        atoms = np.arange(atom_start[molecule], atom_start[molecule + 1])
        atom_ids.append(atoms)
        graph.append(np.full(len(atoms), new_index))
        edges = edges_by_molecule[molecule]
        edge_ids.append(edges)
        new_edges.append(batch.edges[:, edges] - atom_start[molecule] + offset)
        offset += len(atoms)
    return GraphBatch(
        atoms=batch.atoms[np.concatenate(atom_ids)],
        edges=np.concatenate(new_edges, axis=1) if new_edges else np.zeros((2, 0), np.int64),
        edge_features=batch.edge_features[np.concatenate(edge_ids)],
        graph=np.concatenate(graph),
        count=len(molecules),
    )


def train_member(batch: GraphBatch, targets: np.ndarray, seed: int, epochs: int = 60, batch_size: int = 32,
                 hidden: int = 64, layers: int = 3, learning_rate: float = 3e-3, device: str = "cpu") -> TrainedModel:
    """Train one network on a bootstrap resample (seeded) of the molecules in ``batch``."""
    generator = np.random.default_rng(seed)
    torch.manual_seed(seed)
    chosen = generator.integers(0, batch.count, batch.count)
    values = targets[chosen].astype(np.float32)
    mean, std = float(values.mean()), float(values.std() or 1.0)
    data = _subset(batch, _MoleculeIndex.of(batch), chosen)
    data_index = _MoleculeIndex.of(data)
    model = MPNN(hidden, layers).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    losses = []
    for _ in range(epochs):
        order = generator.permutation(data.count)
        total = 0.0
        for start in range(0, data.count, batch_size):
            members = order[start:start + batch_size]
            part = _subset(data, data_index, members)
            expected = torch.as_tensor((values[members] - mean) / std, device=device)
            loss = nn.functional.mse_loss(model(*_tensors(part, torch.device(device)), part.count), expected)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(members)
        losses.append(total / data.count)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return TrainedModel(state, mean, std, hidden, layers, losses)


@torch.no_grad()
def predict(members: Sequence[TrainedModel], batch: GraphBatch, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Ensemble mean and standard deviation of the predictions for every molecule of ``batch``."""
    tensors = _tensors(batch, torch.device(device))
    predictions = []
    for member in members:
        model = MPNN(member.hidden, member.layers).to(device)
        model.load_state_dict(member.state_dict)
        model.eval()
        predictions.append(model(*tensors, batch.count).cpu().numpy() * member.std + member.mean)
    stacked = np.stack(predictions)
    return stacked.mean(axis=0), stacked.std(axis=0)
