"""Ionization potential of a molecule with GFN2-xTB, from its SMILES.

SMILES -> RDKit ETKDG conformer -> MMFF94 relaxation (UFF where MMFF lacks parameters) -> GFN2-xTB
relaxation of the neutral molecule (tblite's ASE calculator, ASE's BFGS) -> ionization potential:

* vertical (default): E(cation at the neutral geometry) - E(neutral);
* adiabatic: the cation is relaxed too, E(relaxed cation) - E(neutral).

Energies come from tblite, the maintained GFN2-xTB library (xtb-python is used where tblite is missing).
GFN2-xTB is not parametrized for ionization: its raw energy differences overestimate experimental IPs by
several eV (about 4-5 eV for small aromatics, measured in tests/test_moldesign.py), but it orders
molecules sensibly, which is what the search needs. Every failure raises ``SimulationError`` with the
reason, which the task server reports as a failed result.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem

HARTREE_TO_EV = 27.211386245988
EMBEDDING_SEED = 42


class SimulationError(RuntimeError):
    """A molecule could not be simulated; the message says at which step and why."""


@dataclass
class IonizationResult:
    """The result of one ionization-potential calculation."""
    smiles: str
    ip_ev: float
    neutral_energy_ev: float
    cation_energy_ev: float
    atoms: int
    relax_steps: int
    method: str
    seconds: float

    def as_dict(self) -> dict:
        """The result as a plain dict (a task's value)."""
        return asdict(self)


def conformer(smiles: str) -> tuple[np.ndarray, np.ndarray]:
    """Atomic numbers and positions (Angstrom) of a force-field-relaxed 3D conformer with hydrogens."""
    molecule = Chem.MolFromSmiles(smiles) if isinstance(smiles, str) and smiles.strip() else None
    if molecule is None:
        raise SimulationError(f"Invalid SMILES {smiles!r}: RDKit could not parse it")
    molecule = Chem.AddHs(molecule)
    params = AllChem.ETKDGv3()
    params.randomSeed = EMBEDDING_SEED
    if AllChem.EmbedMolecule(molecule, params) != 0:
        params.useRandomCoords = True
        if AllChem.EmbedMolecule(molecule, params) != 0:
            raise SimulationError(f"Could not embed a 3D conformer of {smiles!r} (RDKit ETKDG failed)")
    if AllChem.MMFFHasAllMoleculeParams(molecule):
        AllChem.MMFFOptimizeMolecule(molecule, maxIters=500)
    else:
        AllChem.UFFOptimizeMolecule(molecule, maxIters=500)
    numbers = np.array([atom.GetAtomicNum() for atom in molecule.GetAtoms()])
    return numbers, molecule.GetConformer().GetPositions()


def _calculator(charge: int, spin: int):
    """An ASE calculator for GFN2-xTB with this charge and number of unpaired electrons."""
    try:
        from tblite.ase import TBLite
    except ImportError:
        from xtb.ase.calculator import XTB  # xtb-python, where installed instead of tblite

        return XTB(method="GFN2-xTB", charge=charge, uhf=spin)
    return TBLite(method="GFN2-xTB", charge=charge, multiplicity=spin + 1, verbosity=0)


def _energy(numbers: np.ndarray, positions: np.ndarray, charge: int, spin: int, relax: bool, fmax: float, steps: int) -> tuple[float, np.ndarray, int]:
    """Energy in eV (after relaxing, if asked), final positions and relaxation steps taken."""
    from ase import Atoms
    from ase.optimize import BFGS

    atoms = Atoms(numbers=numbers, positions=positions)
    atoms.calc = _calculator(charge, spin)
    taken = 0
    try:
        if relax:
            optimizer = BFGS(atoms, logfile=os.devnull)
            optimizer.run(fmax=fmax, steps=steps)
            taken = optimizer.get_number_of_steps()
        energy = float(atoms.get_potential_energy())
    except Exception as exc:  # tblite raises plain exceptions when the SCF fails
        state = "cation" if charge else "neutral molecule"
        raise SimulationError(f"GFN2-xTB failed on the {state}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from exc
    if not np.isfinite(energy):
        raise SimulationError("GFN2-xTB returned a non-finite energy")
    return energy, atoms.get_positions(), taken


def ionization_potential(smiles: str, adiabatic: bool = False, fmax: float = 0.05, max_steps: int = 200) -> IonizationResult:
    """Compute the ionization potential (eV) of ``smiles``; raises SimulationError with the reason on failure."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    numbers, positions = conformer(smiles)
    neutral, relaxed, steps = _energy(numbers, positions, charge=0, spin=0, relax=True, fmax=fmax, steps=max_steps)
    cation, _, cation_steps = _energy(numbers, relaxed, charge=1, spin=1, relax=adiabatic, fmax=fmax, steps=max_steps)
    return IonizationResult(
        smiles=smiles,
        ip_ev=cation - neutral,
        neutral_energy_ev=neutral,
        cation_energy_ev=cation,
        atoms=len(numbers),
        relax_steps=steps + cation_steps,
        method="GFN2-xTB " + ("adiabatic" if adiabatic else "vertical"),
        seconds=time.perf_counter() - start,
    )
