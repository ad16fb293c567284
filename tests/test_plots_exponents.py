"""Fig. 2 (right): fitted exponents against each family's entropy, from a real cube of two families whose runs
follow known laws (run/synthetic.py writes them through the store's RunWriter, as the workers do)."""
import json

import matplotlib.image
import numpy as np
import pytest

from conftest import run_cli
from scalingkit.families import build_family
from scalingkit.plots.exponents import ExponentPoint, exponent_points, figure_notes, plot_exponents
from scalingkit.run.synthetic import Law, chinchilla_cube

WIDTHS = (16, 24, 32, 48, 64)
TOKENS = (100_000, 200_000, 400_000, 800_000, 1_600_000)
SPECS = {"small": {"kind": "er", "nodes": 32, "edges": 64, "seed": 1},
         "large": {"kind": "er", "nodes": 128, "edges": 1024, "seed": 1}}
TRUE = {"small": (0.3, 0.6), "large": (0.7, 0.4)}  # (alpha, beta) of each family's law
# Over 12 noise seeds the mean exponents missed the truth by at most 0.047 (5 points a slice, 0.2% noise).
TOLERANCE = 0.1


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    path = tmp_path_factory.mktemp("exponents") / "cube.zarr"
    laws = {f: (SPECS[f], Law.centred((2e4, 1e5), (TOKENS[0], TOKENS[-1]), alpha=a, beta=b, E=2.0))
            for f, (a, b) in TRUE.items()}
    chinchilla_cube(path, widths=WIDTHS, tokens=TOKENS, lrs=(0.01,), families=laws, noise=0.002)
    return path


def test_each_family_gets_its_own_exponents_at_its_exact_entropy(cube):
    points, skipped = exponent_points(cube)
    assert skipped == []
    by_family = {p.family: p for p in points}
    assert set(by_family) == set(TRUE)
    for family, (alpha, beta) in TRUE.items():
        p = by_family[family]
        assert p.param == "sp" and p.entropy_kind == "exact"
        assert p.entropy == pytest.approx(build_family(family, SPECS[family]).entropy_rate(), rel=1e-12)
        assert p.alpha["n"] == len(TOKENS) and p.beta["n"] == len(WIDTHS)  # one fit per fixed D, per fixed N
        assert p.alpha["at_bound"] == p.beta["at_bound"] == 0
        assert abs(p.alpha["mean"] - alpha) < TOLERANCE, p.alpha
        assert abs(p.beta["mean"] - beta) < TOLERANCE, p.beta
        assert len(p.provenance["data_sha256"]) == 64 and p.provenance["n_points"] == len(WIDTHS) * len(TOKENS)
    assert by_family["small"].entropy < by_family["large"].entropy


def test_plot_command_writes_every_figure_and_the_points_as_json(cube, tmp_path):
    proc = run_cli("plot", "--store", cube, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = {line.split()[-1].rsplit("/", 1)[-1] for line in proc.stdout.splitlines() if line.startswith("wrote")}
    assert written == {"loss-small-sp.png", "loss-large-sp.png", "ranks.png", "exponents-entropy-total.png",
                       "exponents-entropy-total.json"}
    for name in written - {"exponents-entropy-total.json"}:
        assert matplotlib.image.imread(tmp_path / name).shape[0] > 200
    doc = json.loads((tmp_path / "exponents-entropy-total.json").read_text())
    # each family's offsets were bounded by its exact floor, as `scalingkit fit` bounds them
    floors = {p["family"]: p["provenance"]["settings"]["floors"][p["family"]] for p in doc["points"]}
    for family, spec in SPECS.items():
        entropy = build_family(family, spec).entropy_rate()
        assert floors[family] == [pytest.approx(entropy, rel=1e-9), "exact"]
        slices = next(p["slices"] for p in doc["points"] if p["family"] == family)
        assert slices and all(s["offset_floor"] == pytest.approx(entropy, rel=1e-9) for s in slices)
    assert {p["family"] for p in doc["points"]} == set(TRUE) and doc["skipped"] == []
    mean_alpha = {p["family"]: p["alpha"]["mean"] for p in doc["points"]}
    assert abs(mean_alpha["large"] - 0.7) < TOLERANCE


def test_groups_without_enough_points_are_reported_not_plotted(tmp_path):
    path = tmp_path / "cube.zarr"
    chinchilla_cube(path, widths=(16, 32), tokens=(100_000, 200_000), lrs=(0.01,))  # 2 points a slice
    points, skipped = exponent_points(path)
    assert points == [] and len(skipped) == 1 and skipped[0].startswith("er64/sp: too few points")
    proc = run_cli("plot", "--store", path, "--out", tmp_path / "fig", "--no-ranks")
    assert proc.returncode == 0, proc.stderr
    assert "exponents: no figure: er64/sp: too few points" in proc.stderr
    assert not (tmp_path / "fig" / "exponents-entropy-total.png").exists()


def test_a_family_without_a_known_entropy_is_listed_not_placed(tmp_path):
    summary = {"n": 3, "mean": 0.3, "std": 0.02, "min": 0.28, "max": 0.32}
    points = [ExponentPoint("er", "sp", 2.5, "exact", summary, summary),
              ExponentPoint("text", "sp", np.nan, "unknown", summary, summary)]
    assert figure_notes(points, ["ba/sp: too few points"]) == [
        "entropy unknown, not placed: text/sp alpha 0.3 +- 0.02 (3 fits), beta 0.3 +- 0.02 (3 fits)",
        "no fit: ba/sp: too few points"]
    file = plot_exponents(points, tmp_path / "f.png")
    assert matplotlib.image.imread(file).shape[0] > 200


def test_an_exponent_the_data_do_not_pin_down_is_not_resolved_and_not_averaged(tmp_path):
    """L(N) flat to within the noise (A ~ 0): every alpha's interval runs to a bound of the fit, so no alpha is
    plotted or averaged, and the panel says why; beta, which the data do fix, is summarised as before."""
    from scalingkit.plots.exponents import exponents_figure

    path = tmp_path / "cube.zarr"
    law = Law(E=2.0, A=1e-9, B=40.0, alpha=0.3, beta=0.4)
    chinchilla_cube(path, widths=WIDTHS, tokens=TOKENS, lrs=(0.01,), families={"flat": (SPECS["small"], law)},
                    noise=0.002)
    (p,), _ = exponent_points(path, bootstrap=200)
    alphas = [s for s in p.slices if s["axis"] == "N"]
    assert p.alpha["n"] == 0 and p.alpha["at_bound"] == len(TOKENS) and all(s["at_bound"] for s in alphas)
    # one of them ended inside its bounds (noise seed 0: 1.59 in [0, 3.2]): only its interval says it is not fixed
    assert any(1e-3 < s["value"] < 9.99 for s in alphas)
    assert p.beta["n"] == len(WIDTHS) and abs(p.beta["mean"] - 0.4) < TOLERANCE
    fig = exponents_figure([p])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == [f"no L(N) exponent resolved:\n{len(TOKENS)} not resolved at this size (at or reaching a bound of "
                     "the fit)"]
    assert not fig.axes[2].lines  # the alpha-by-slice panel draws nothing, and says why
    assert [t.get_text() for t in fig.axes[2].texts] == [f"no L(N) slice resolved: {len(TOKENS)} not resolved at "
                                                         "this size"]


def test_an_axis_whose_slices_are_mostly_unresolved_is_not_drawn_as_the_familys_exponent():
    """One of six L(N) slices resolved: its alpha is no summary of the family; the entropy panel leaves it out and
    the notes say so, while beta, resolved everywhere, is drawn."""
    from scalingkit.plots.exponents import exponents_figure

    one = {"n": 1, "mean": 0.69, "std": np.nan, "min": 0.69, "max": 0.69, "at_bound": 5}
    full = {"n": 5, "mean": 2.2, "std": 0.4, "min": 1.8, "max": 2.9, "at_bound": 0}
    slices = [{"axis": "N", "fixed": 1.6e6, "value": 0.69, "interval": [0.4, 1.1], "at_bound": False}]
    points = [ExponentPoint("ba", "sp", 1.64, "exact", one, full, slices=slices)]
    fig = exponents_figure(points)
    assert not fig.axes[0].lines and len(fig.axes[1].lines) == 1
    (bar,) = fig.axes[2].containers  # the one resolved slice keeps its interval below, as a bar (no band of one)
    assert np.allclose(bar.lines[2][0].get_segments()[0][:, 1], [0.4, 1.1])
    assert figure_notes(points) == ["alpha mostly not resolved, only its slices drawn: ba/sp (1 of 6)"]
