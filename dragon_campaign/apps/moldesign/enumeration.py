"""The search space: QM9-like molecules (up to 9 heavy atoms of C, N, O, F), enumerated from fragments.

How it is made (deterministic, so every run and every user sees the same space):

1. Take each core of ``CORES`` (rings and short chains common in QM9).
2. Put up to ``MAX_SUBSTITUENTS`` groups of ``GROUPS`` on distinct hydrogen-bearing atoms of the core, in
   every combination, keeping molecules with at most ``MAX_HEAVY_ATOMS`` heavy atoms.
3. Sanitize with RDKit, drop unstable motifs (``FORBIDDEN``: peroxides, N-O/N-N single bonds, F on
   heteroatoms), canonicalize, deduplicate and sort.

The result ships as ``data/search_space.smi`` (one canonical SMILES a line, read by ``.space``);
``python -m dragon_campaign.apps.moldesign.space`` regenerates it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from rdkit import Chem, RDLogger

MAX_HEAVY_ATOMS = 9
MAX_SUBSTITUENTS = 3

CORES = [
    # aromatic rings
    "c1ccccc1", "c1ccncc1", "c1cnccn1", "c1cncnc1", "c1ccnnc1", "c1ccoc1", "c1cc[nH]c1", "c1cnc[nH]1",
    "c1cocn1", "c1conc1", "c1cn[nH]c1",
    # saturated and unsaturated rings
    "C1CC1", "C1CCC1", "C1CCCC1", "C1CCCCC1", "C1=CCCC1", "C1=CCCCC1", "C1CO1", "C1CN1", "C1COC1", "C1CNC1",
    "C1CCOC1", "C1CCNC1", "C1CCOCC1", "C1CCNCC1", "C1COCCN1", "C1CNCCN1", "C1COCO1",
    # chains
    "C", "CC", "C=C", "C#C", "CCC", "CC=C", "CC#C", "CCCC", "CC(C)C", "CC=O", "CC(C)=O", "COC", "CNC", "CC#N",
    "NC=O", "CC(N)=O", "CC(=O)O", "OC=O",
]
GROUPS = [
    "F", "O", "N", "C", "CC", "C=C", "C#C", "C#N", "C=O", "OC", "NC", "N(C)C", "C(=O)O", "C(N)=O",
    "C(F)(F)F", "NC=O", "OC=O", "CO", "CN", "C(C)C",
]
FORBIDDEN = [Chem.MolFromSmarts(s) for s in ("[OX2]-[OX2]", "[#7]-[#8]", "[#7]-[#7]", "[#7,#8]-F", "[OX2H]-[CX4]-[OX2H]")]


def _heavy_atoms(smiles: str) -> int:
    return Chem.MolFromSmiles(smiles).GetNumHeavyAtoms()


def _attach(core: Chem.Mol, positions: tuple[int, ...], groups: tuple[str, ...]) -> str | None:
    """Join groups onto the core at these atoms; the canonical SMILES, or None if RDKit rejects it."""
    pieces = Chem.RWMol(core)
    for index, position in enumerate(positions, start=1):
        dummy = pieces.AddAtom(Chem.Atom(0))
        pieces.GetAtomWithIdx(dummy).SetAtomMapNum(index)
        pieces.AddBond(position, dummy, Chem.BondType.SINGLE)
    fragments = [pieces.GetMol()] + [Chem.MolFromSmiles(f"[*:{i}]{g}") for i, g in enumerate(groups, start=1)]
    joined = fragments[0]
    for fragment in fragments[1:]:
        joined = Chem.CombineMols(joined, fragment)
    try:
        molecule = Chem.molzip(joined)
        Chem.SanitizeMol(molecule)
    except Exception:  # RDKit raises a variety of errors on impossible valences
        return None
    if any(molecule.HasSubstructMatch(pattern) for pattern in FORBIDDEN):
        return None
    return Chem.MolToSmiles(molecule)


def _molecules_of(core_smiles: str) -> Iterator[str]:
    core = Chem.MolFromSmiles(core_smiles)
    room = MAX_HEAVY_ATOMS - core.GetNumHeavyAtoms()
    sites = [atom.GetIdx() for atom in core.GetAtoms() if atom.GetTotalNumHs() > 0]
    yield Chem.MolToSmiles(core)
    sizes = {group: _heavy_atoms(group) for group in GROUPS}
    for count in range(1, MAX_SUBSTITUENTS + 1):
        for positions in itertools.combinations(sites, count):
            for groups in itertools.product(GROUPS, repeat=count):
                if sum(sizes[g] for g in groups) <= room:
                    smiles = _attach(Chem.RWMol(core), positions, groups)
                    if smiles is not None:
                        yield smiles


def generate_search_space() -> list[str]:
    """Every molecule the enumeration makes, canonical and sorted."""
    RDLogger.DisableLog("rdApp.*")
    try:
        return sorted({smiles for core in CORES for smiles in _molecules_of(core)})
    finally:
        RDLogger.EnableLog("rdApp.*")
