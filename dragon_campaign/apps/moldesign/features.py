"""Molecular graphs for the message-passing network: RDKit atoms and bonds as feature arrays.

A ``GraphBatch`` packs many molecules into flat numpy arrays (atoms of all molecules stacked,
bonds as directed edges in both directions, ``graph`` mapping each atom to its molecule), so a chunk of
the search space is a handful of arrays that the store keeps as raw buffers and torch reads without
per-molecule objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rdkit import Chem

ELEMENTS = (6, 7, 8, 9)  # C, N, O, F: the search space's heavy atoms (anything else maps to "other")
BOND_TYPES = (Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE, Chem.BondType.AROMATIC)
ATOM_FEATURES = len(ELEMENTS) + 1 + 5 + 4 + 3  # element, degree 0-4, hydrogens 0-3, aromatic/ring/charge
BOND_FEATURES = len(BOND_TYPES) + 2  # type, conjugated, in ring


def _one_hot(value: int, choices: int) -> list[float]:
    return [1.0 if value == i else 0.0 for i in range(choices)]


def atom_features(atom: Chem.Atom) -> list[float]:
    """One-hot element, degree and hydrogens, then aromaticity, ring membership and formal charge of an atom."""
    element = ELEMENTS.index(atom.GetAtomicNum()) if atom.GetAtomicNum() in ELEMENTS else len(ELEMENTS)
    return (
        _one_hot(element, len(ELEMENTS) + 1)
        + _one_hot(min(atom.GetDegree(), 4), 5)
        + _one_hot(min(atom.GetTotalNumHs(), 3), 4)
        + [float(atom.GetIsAromatic()), float(atom.IsInRing()), float(atom.GetFormalCharge())]
    )


def bond_features(bond: Chem.Bond) -> list[float]:
    """One-hot bond type, conjugation and ring membership of a bond."""
    kind = BOND_TYPES.index(bond.GetBondType()) if bond.GetBondType() in BOND_TYPES else 0
    return _one_hot(kind, len(BOND_TYPES)) + [float(bond.GetIsConjugated()), float(bond.IsInRing())]


@dataclass
class GraphBatch:
    """Many molecular graphs as flat arrays."""

    atoms: np.ndarray  # (atoms, ATOM_FEATURES) float32
    edges: np.ndarray  # (2, directed edges) int64: source and target atom of each edge
    edge_features: np.ndarray  # (directed edges, BOND_FEATURES) float32
    graph: np.ndarray  # (atoms,) int64: which molecule each atom belongs to
    count: int  # molecules

    def as_arrays(self) -> dict[str, np.ndarray]:
        """The batch as plain arrays, for the store."""
        return {"atoms": self.atoms, "edges": self.edges, "edge_features": self.edge_features, "graph": self.graph,
                "count": np.asarray([self.count], dtype=np.int64)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> GraphBatch:
        """The batch back from ``as_arrays``."""
        return cls(arrays["atoms"], arrays["edges"], arrays["edge_features"], arrays["graph"], int(arrays["count"][0]))


def featurize(smiles: Sequence[str], strict: bool = True) -> GraphBatch:
    """Pack molecules into one batch.

    A SMILES that RDKit cannot parse raises ValueError naming it, or with ``strict=False`` becomes a graph
    without atoms: the batch keeps one entry per input, so a search space with a bad line still gets a
    prediction for every molecule (and the bad one fails when it is simulated, with the reason).
    """
    atoms: list[list[float]] = []
    sources: list[int] = []
    targets: list[int] = []
    edge_features: list[list[float]] = []
    graph: list[int] = []
    for index, text in enumerate(smiles):
        molecule = Chem.MolFromSmiles(text) if isinstance(text, str) and text.strip() else None
        if molecule is None:
            if strict:
                raise ValueError(f"Invalid SMILES {text!r}")
            continue
        offset = len(atoms)
        atoms.extend(atom_features(atom) for atom in molecule.GetAtoms())
        graph.extend([index] * molecule.GetNumAtoms())
        for bond in molecule.GetBonds():
            a, b = bond.GetBeginAtomIdx() + offset, bond.GetEndAtomIdx() + offset
            features = bond_features(bond)
            sources += [a, b]
            targets += [b, a]
            edge_features += [features, features]
    return GraphBatch(
        atoms=np.asarray(atoms, dtype=np.float32).reshape(-1, ATOM_FEATURES),
        edges=np.asarray([sources, targets], dtype=np.int64).reshape(2, -1),
        edge_features=np.asarray(edge_features, dtype=np.float32).reshape(-1, BOND_FEATURES),
        graph=np.asarray(graph, dtype=np.int64),
        count=len(smiles),
    )
