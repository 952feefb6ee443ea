"""Molecular design: real GFN2-xTB, a real MPNN ensemble, and tiny campaigns under every policy."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import Descriptors

from dragon_campaign import RunDirectory, read_results
from dragon_campaign.apps import moldesign
from dragon_campaign.apps.moldesign.enumeration import generate_search_space
from dragon_campaign.apps.moldesign.features import ATOM_FEATURES, BOND_FEATURES, featurize
from dragon_campaign.apps.moldesign.mpnn import predict, train_member
from dragon_campaign.apps.moldesign.simulate import SimulationError, ionization_potential
from dragon_campaign.apps.moldesign.space import BUNDLED_SPACE, load_search_space

# Experimental vertical IPs (eV, NIST Chemistry WebBook); GFN2-xTB's raw energy difference lies about 5 eV above.
EXPERIMENT = {"c1ccccc1": 9.24, "Oc1ccccc1": 8.49, "Nc1ccccc1": 7.72}


def test_bundled_space_is_what_the_enumeration_makes():
    space = load_search_space()
    assert len(space) >= 10_000 and len(set(space)) == len(space)
    assert list(space) == generate_search_space(), f"{BUNDLED_SPACE} is stale: python -m dragon_campaign.apps.moldesign.space"
    for smiles in space[::97]:
        molecule = Chem.MolFromSmiles(smiles)
        assert Chem.MolToSmiles(molecule) == smiles and molecule.GetNumHeavyAtoms() <= 9
        assert {atom.GetSymbol() for atom in molecule.GetAtoms()} <= {"C", "N", "O", "F"}


def test_ionization_potentials_are_physically_ordered():
    ips = {smiles: ionization_potential(smiles).ip_ev for smiles in EXPERIMENT}
    assert ips["c1ccccc1"] > ips["Oc1ccccc1"] > ips["Nc1ccccc1"], ips  # electron donors lower the IP
    for smiles, measured in EXPERIMENT.items():
        assert 3.0 < ips[smiles] - measured < 6.5, f"{smiles}: {ips[smiles]:.2f} eV vs {measured} eV measured"
    adiabatic = ionization_potential("c1ccccc1", adiabatic=True)
    assert adiabatic.ip_ev <= ips["c1ccccc1"] + 1e-6 and adiabatic.method.endswith("adiabatic")


@pytest.mark.parametrize("smiles, reason", [("C1CC", "Invalid SMILES"), ("", "Invalid SMILES")])
def test_bad_molecules_raise_with_a_reason(smiles, reason):
    with pytest.raises(SimulationError, match=reason):
        ionization_potential(smiles)


def test_mpnn_ensemble_learns():
    space = load_search_space()
    molecules = [space[i] for i in np.random.default_rng(0).choice(len(space), 120, replace=False)]
    targets = np.array([Descriptors.MolLogP(Chem.MolFromSmiles(s)) for s in molecules])
    batch = featurize(molecules)
    assert batch.atoms.shape[1] == ATOM_FEATURES and batch.edge_features.shape[1] == BOND_FEATURES and batch.count == 120
    members = [train_member(batch, targets, seed=seed, epochs=30) for seed in range(2)]
    for member in members:
        assert member.losses[-1] < 0.3 * member.losses[0], member.losses
    mean, spread = predict(members, batch)
    assert mean.shape == spread.shape == (120,) and np.all(spread >= 0)
    assert np.corrcoef(mean, targets)[0, 1] > 0.8


def test_invalid_smiles_gives_a_failed_result(serve):
    from dragon_campaign.apps.moldesign.tasks import simulate

    queues, _ = serve([simulate])
    queues.send_inputs("C1CC", method="simulate")
    queues.send_inputs("C#N", method="simulate")
    results = {r.args[0]: r for r in (queues.get_result(timeout=120) for _ in range(2))}
    assert not results["C1CC"].success and "Invalid SMILES 'C1CC'" in results["C1CC"].failure_info.exception
    assert results["C#N"].success and results["C#N"].value["ip_ev"] > 10


@pytest.mark.parametrize("policy", ["batch", "streaming", "interleaved"])
def test_tiny_campaign_runs_end_to_end(policy, tmp_path):
    config = moldesign.Config(budget=16, policy=policy, retrain_every=8, batch_size=8, ensemble=2, epochs=5,
                              space_limit=1500, chunk_size=500, seed=1)
    run_dir = RunDirectory(tmp_path / policy)
    summary = moldesign.run(config, moldesign.default_pools(config), run_dir)
    assert summary["simulations"] + summary["failed"] == 16 and summary["retrainings"] >= 1
    assert summary["best_molecules"][0]["ip_ev"] == summary["best_ip_ev"]
    assert json.loads((run_dir.path / "summary.json").read_text())["policy"] == policy
    results = read_results(run_dir.results_path)
    by_method = {m: [r for r in results if r.method == m] for m in ("simulate", "train", "infer")}
    assert len(by_method["simulate"]) == 16 and all(r.worker_info is not None for r in by_method["simulate"])
    # an abandoned retraining (the budget's last molecule chosen meanwhile) leaves only its tasks that finished
    assert 2 * summary["retrainings"] <= len(by_method["train"]) <= 2 * (summary["retrainings"] + summary["unused_trainings"])
    assert 3 * summary["retrainings"] <= len(by_method["infer"]) <= 3 * (summary["retrainings"] + summary["unused_trainings"])
    rows = list(csv.DictReader(open(run_dir.path / "best_molecules.csv")))
    assert len(rows) == summary["simulations"] and float(rows[0]["ip_ev"]) == pytest.approx(summary["best_ip_ev"])
    assert (run_dir.path / "progress.png").stat().st_size > 0 and (run_dir.path / "progress.csv").exists()
