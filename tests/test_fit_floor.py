"""Fitted offsets against the family's known loss floor (its entropy): flagged where they fall below it."""
import json

import pytest

from conftest import run_cli
from scalingkit.families import build_family
from scalingkit.fit.base import FitResult
from scalingkit.fit.floor import note_floors, offset_notes
from scalingkit.run.synthetic import Law, chinchilla_cube

WIDTHS = (16, 24, 32, 48, 64)
TOKENS = (100_000, 200_000, 400_000, 800_000, 1_600_000)
SPECS = {"honest": {"kind": "er", "nodes": 32, "edges": 64, "seed": 1},
         "below": {"kind": "er", "nodes": 32, "edges": 128, "seed": 2}}
FLOORS = {f: build_family(f, spec).entropy_rate() for f, spec in SPECS.items()}
# "honest" runs level off 0.3 nats above the entropy; "below" runs follow a law whose offset no model could reach
OFFSETS = {"honest": FLOORS["honest"] + 0.3, "below": 0.5 * FLOORS["below"]}


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    path = tmp_path_factory.mktemp("floor") / "cube.zarr"
    laws = {f: (SPECS[f], Law.centred((2e4, 1e5), (TOKENS[0], TOKENS[-1]), alpha=0.5, beta=0.4, E=OFFSETS[f]))
            for f in SPECS}
    chinchilla_cube(path, widths=WIDTHS, tokens=TOKENS, lrs=(0.01,), families=laws, noise=0.002)
    return path


def test_offset_notes_flag_only_offsets_below_a_known_floor():
    assert offset_notes({"E": 1.0}, {}, 2.0, "exact")[0].startswith("E = 1 is below the family's exact loss floor")
    assert "interval [0.5, 1.5] excludes it" in offset_notes({"E_C": 1.0}, {"E_C": (0.5, 1.5)}, 2.0, "exact")[0]
    assert offset_notes({"E": 1.995}, {}, 2.0, "exact") == []  # within rounding of an exact floor
    assert offset_notes({"E": 1.97}, {}, 2.0, "estimate") == []  # within the sampling error of an estimate
    assert offset_notes({"E": 1.0}, {}, float("nan"), "unknown") == []
    assert offset_notes({"alpha": 0.1}, {}, 2.0, "exact") == []  # only offsets


def test_noting_floors_twice_adds_each_note_once():
    r = FitResult("powerlaw", {"E": 1.0}, provenance={"group": {"family": "walk"}})
    note_floors([r], {"walk": (2.0, "exact")})
    note_floors([r], {"walk": (2.0, "exact")})  # fit_slices notes, then the command line again
    assert len(r.diagnostics["notes"]) == 1 and r.diagnostics["loss_floor_kind"] == "exact"


def test_chinchilla_fit_of_the_cube_keeps_e_above_an_exact_floor_and_says_where_it_ends_on_it(cube):
    proc = run_cli("fit", "--form", "chinchilla", "--store", cube, "--bootstrap", "20", "--json",
                   "--out", cube.parent / "fits")
    assert proc.returncode == 0, proc.stderr
    by_family = {r["provenance"]["group"]["family"]: r for r in json.loads(proc.stdout)}
    for family, r in by_family.items():
        assert r["diagnostics"]["loss_floor"] == pytest.approx(FLOORS[family], rel=1e-9)
        assert r["params"]["E"] >= FLOORS[family] and r["intervals"]["E"][0] >= FLOORS[family]
    # runs whose law would put E below the floor: E ends on the floor, and the fit says so
    below = by_family["below"]
    assert below["params"]["E"] == pytest.approx(FLOORS["below"], rel=1e-9) and below["diagnostics"]["at_bound"] == ["E"]
    assert any("floor" in note for note in below["diagnostics"]["notes"])
    honest = by_family["honest"]
    assert honest["params"]["E"] == pytest.approx(OFFSETS["honest"], abs=0.05) and "notes" not in honest["diagnostics"]


def test_slice_fits_and_compute_optimal_laws_respect_the_floor_too(cube):
    proc = run_cli("fit", "--form", "powerlaw", "--store", cube, "--bootstrap", "0", "--json",
                   "--out", cube.parent / "fits")
    assert proc.returncode == 0, proc.stderr
    for r in json.loads(proc.stdout)["results"]:
        family = r["provenance"]["group"]["family"]
        if r["converged"]:
            assert r["params"]["E"] >= FLOORS[family] - 1e-12
    proc = run_cli("optimal", "--method", "parametric", "--store", cube, "--bootstrap", "0", "--json", "--no-figures")
    assert proc.returncode == 0, proc.stderr
    reports = {doc["label"]: doc for doc in json.loads(proc.stdout)}
    assert set(reports) == {"below-sp", "honest-sp"}, proc.stdout
    for label, family in (("below-sp", "below"), ("honest-sp", "honest")):
        (res,) = reports[label]["results"]
        assert res["params"]["E_C"] >= FLOORS[family] - 1e-12
    below_notes = " ".join(reports["below-sp"]["results"][0]["diagnostics"]["notes"])
    assert "floor" in below_notes and "floor" not in " ".join(reports["honest-sp"]["results"][0]["diagnostics"]["notes"])
