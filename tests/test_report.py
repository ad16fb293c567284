"""`scalingkit report`: one self-contained HTML page per store that reuses saved results whose data hash matches,
computes (and saves) only what is missing, and says which is which; opened in a real browser (headless Chromium
through Selenium): every image decodes, the console stays clean."""
import base64
import csv
import io
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib.image
import pytest

from conftest import one_line_error, run_cli
from scalingkit.run.synthetic import chinchilla_cube

WIDTHS = (16, 24, 32, 48, 64)
TOKENS = (50_000, 100_000, 200_000, 400_000, 800_000)
# cheap settings for what the report computes (each is a flag of `scalingkit report`)
FAST = ("--bootstrap", "200", "--bootstrap-2d", "30", "--forms", "chinchilla,kernel", "--splits", "3",
        "--method", "envelope,isoflop,parametric", "--optimal-bootstrap", "20", "--workers", "1")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SECTIONS = ("summary", "results", "g-er64-sp", "fig2", "fig3", "scale", "provenance")


def make_cube(path, seed=0):
    chinchilla_cube(path, widths=WIDTHS, tokens=TOKENS, lrs=(0.01,), noise=0.003, seed=seed)
    return path


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """A cube, and the report written from nothing: every result computed and saved."""
    root = tmp_path_factory.mktemp("report")
    cube = make_cube(root / "cube.zarr")
    t0 = time.perf_counter()
    proc = run_cli("report", "--store", cube, "--markdown", root / "report.md", *FAST)
    return {"cube": cube, "root": root, "proc": proc, "seconds": time.perf_counter() - t0,
            "html": (root / "report.html").read_text() if (root / "report.html").exists() else ""}


def images(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', page)


def test_first_report_computes_saves_and_embeds_everything(first):
    proc, page, root = first["proc"], first["html"], first["root"]
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(root / "report.html")  # the path, alone on stdout (make demo prints it)
    assert "4 computed result(s)" in proc.stderr
    for anchor in SECTIONS:
        assert f'id="{anchor}"' in page
    srcs = images(page)
    assert len(srcs) >= 12 and all(s.startswith("data:image/png;base64,") for s in srcs)
    for s in srcs:  # every figure is a real PNG
        png = base64.b64decode(s.split(",", 1)[1])
        assert matplotlib.image.imread(io.BytesIO(png), format="png").shape[0] > 150
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from elsewhere
    assert page.count("computed now") == 4 and "reused (saved earlier" not in page
    # which loss was fitted, said in the group's heading and in the figures' captions
    assert "er64 / sp: sampled loss</h2>" in page and "(sampled loss, 95% error bars)" in page
    for heading in ("Fig. 1:", "Chinchilla fit", "Fig. 15:", "Figs. 10 and 17:", "every method side by side",
                    "Fig. 2:", "Fig. 3:"):
        assert heading in page
    # numbers with intervals: the Chinchilla table and the slices table
    assert re.search(r"<td>alpha</td><td>[0-9.e+-]+ \[[0-9.e+-]+, [0-9.e+-]+\]</td>", page)
    # what was computed is saved and indexed, with the store as its source
    with open(root / "fits" / "index.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted((r["kind"], r["form"]) for r in rows) == [
        ("compare", "chinchilla,kernel"), ("fit", "chinchilla"), ("fit", "powerlaw"),
        ("optimal", "envelope,isoflop,parametric")]
    assert {r["source"] for r in rows} == {str(first["cube"])} and {r["loss"] for r in rows} == {"sampled"}
    md = (root / "report.md").read_text()
    # what the store holds, sweep by sweep: every run of the synthetic sweep, counted from the cube
    assert re.search(rf"\| [\w-]+ \| er64 \| widths 16-64, 50K-800K tokens \| {len(WIDTHS) * len(TOKENS)} \| ", md)
    # the summary across families, near the top: after the sweeps, before the results used and every family
    summary = "## Summary across families: the N axis and the compute-optimal split"
    assert md.index("| sweep | family |") < md.index(summary) < md.index("## Results used") < md.index("## er64 / sp")
    assert "### L(N): the model-size exponent" in md and "### Compute-optimal a (N_opt ~ C^a)" in md
    assert re.search(r"\| er64 \| sp \| 5 \| \d \| .* \| not given in PAPER\.md \|", md)
    # what this scale can show says the same as the summary: how many L(N) slices resolve alpha, and their range
    resolved = int(re.search(r"\| er64 \| sp \| 5 \| (\d) \|", md).group(1))
    scale = md[md.index("## What this scale can and cannot show"):]
    line = next(x for x in scale.splitlines() if x.startswith("- er64/sp, L(N) at fixed D"))
    assert (f"alpha resolved in {resolved} of 5" in line) == (resolved > 0), line
    assert ("alpha is not resolved at this size" in line) == (resolved == 0), line
    assert re.search(r"\| family \| param \| envelope \| isoflop-parabola \| isoflop-akima \| parametric \| "
                     r"surrogate-mlp \| surrogate-kernel \| agreement on a \|\n\|---\|.*\n"
                     r"\| er64 \| sp \| .* \| - \| - \| (agree|disagree|fewer)", md)  # the surrogates were not run
    linked = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    assert len(linked) == len(srcs) and all((root / link).is_file() for link in linked)
    print(f"\nreport from nothing: {first['seconds']:.1f} s, {len(page) / 1e6:.2f} MB, {len(srcs)} figures")


def test_second_report_reuses_every_saved_result(first):
    root = first["root"]
    out = root / "again.html"
    t0 = time.perf_counter()
    figures = root / "report-figures"
    (figures / "99-from-an-older-report.png").write_bytes(b"stale")  # numbered like the report's own: replaced
    (figures / "mine.txt").write_text("kept")  # anything else in the folder is left alone
    proc = run_cli("report", "--store", first["cube"], "--out", out, "--no-compute", "--no-ranks", "--markdown",
                   root / "report.md")
    assert proc.returncode == 0, proc.stderr
    assert "4 reused result(s)" in proc.stderr
    linked = set(re.findall(r"\(report-figures/([^)]+)\)", (root / "report.md").read_text()))
    assert {p.name for p in figures.iterdir()} == linked | {"mine.txt"}  # no stray figure of an earlier report
    page = out.read_text()
    assert page.count("reused (saved earlier by this code, data hash matches)") == 4 and "computed now" not in page
    with open(root / "fits" / "index.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 4  # nothing new saved
    print(f"\nreport reusing everything: {time.perf_counter() - t0:.1f} s")


def test_results_of_other_data_are_not_reused(first, tmp_path):
    other = make_cube(tmp_path / "cube.zarr", seed=1)  # same grid, other noise: other data hashes
    shutil.copytree(first["root"] / "fits", tmp_path / "fits")
    proc = run_cli("report", "--store", other, "--no-compute", "--no-ranks")
    assert proc.returncode == 0, proc.stderr
    assert "4 missing result(s)" in proc.stderr
    page = (tmp_path / "report.html").read_text()
    assert "reused (saved" not in page
    assert f"missing: scalingkit fit --form powerlaw --store {other} --family er64 --param sp" in page
    assert "scalingkit compare --forms chinchilla,kaplan,mlp,kernel" in page
    # nothing computed: the summary's rows say "-" where their results would be
    assert "<td>er64</td><td>sp</td>" + "<td>-</td>" * 4 + "<td>not given in PAPER.md</td>" in page
    assert "<td>er64</td><td>sp</td>" + "<td>-</td>" * 7 + "</tr>" in page


def test_results_of_other_code_or_other_method_settings_are_not_reused(first, tmp_path):
    """Same data, but the Chinchilla fit saved by other scalingkit code and the compute-optimal analysis run with
    another envelope rule: neither would be this code's numbers with the report's settings, so neither is reused."""
    import json

    fits = tmp_path / "fits"
    shutil.copytree(first["root"] / "fits", fits)

    def edit(prefix, change):
        path = next(p for p in fits.glob("*.json") if p.name.startswith(prefix))
        doc = json.loads(path.read_text())
        change(doc)
        path.write_text(json.dumps(doc))
        return path.name

    # `scalingkit optimal` writes the surrogates' settings out in full: its defaults are the report's, and its result
    # is reused (as make demo's is); the same run with another MLP width is not
    for hidden, reused in (("256", True), ("64", False)):
        mine = tmp_path / f"optimal-{hidden}"
        proc = run_cli("optimal", "--store", first["cube"], "--method", "envelope,isoflop,parametric", "--bootstrap",
                       "20", "--budget", "1e12", "--mlp-hidden", hidden, "--no-figures", "--out", mine)
        assert proc.returncode == 0, proc.stderr
        proc = run_cli("report", "--store", first["cube"], "--fits", mine, "--out", tmp_path / "o.html",
                       "--no-compute", "--no-ranks", "--force")
        assert proc.returncode == 0, proc.stderr
        assert ("(1 reused, 3 missing" if reused else "(4 missing") in proc.stderr, proc.stderr

    other_code = edit("chinchilla", lambda d: d["provenance"]["versions"].update(scalingkit_code="0123456789ab"))
    edit("optimal", lambda d: d["settings"].update(envelope_min_fraction=0.0))
    proc = run_cli("report", "--store", first["cube"], "--fits", fits, "--out", tmp_path / "r.html", "--no-compute",
                   "--no-ranks")
    assert proc.returncode == 0, proc.stderr
    assert "(2 reused, 2 missing result(s)" in proc.stderr, proc.stderr
    page = (tmp_path / "r.html").read_text()
    assert page.count("reused (saved earlier by this code") == 2
    assert f"({other_code} matches the data but other scalingkit code saved it)" in page
    assert "missing: scalingkit optimal" in page


def test_bad_input_is_a_one_line_error(tmp_path):
    assert "no store at" in one_line_error(run_cli("report", "--store", tmp_path / "none.zarr"))
    cube = tmp_path / "cube.zarr"
    make_cube(cube)
    assert "not one" in one_line_error(run_cli("report", "--store", cube, "--forms", "chinchilla,powerlaw"))
    assert "unknown method" in one_line_error(run_cli("report", "--store", cube, "--method", "guess"))
    assert "unknown form" in one_line_error(run_cli("report", "--store", cube, "--forms", "cubic"))


# ---------------------------------------------------------------- in a real browser


def browser_or_skip():
    """A headless Chromium driven by Selenium, or a skip saying why (a failure under CI=true, where it must run)."""
    def unavailable(reason):
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but no browser test is possible: {reason}")
        pytest.skip(reason)

    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed (pip install -e '.[test]')")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            unavailable(f"{path} is missing (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                "--window-size=1300,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        shutil.rmtree(profile, ignore_errors=True)
        unavailable(f"chromium did not start: {str(exc).splitlines()[0]}")
    return driver, profile


def test_report_opens_in_a_real_browser_with_every_image_decoded(first):
    page_path = first["root"] / "report.html"
    assert first["proc"].returncode == 0, first["proc"].stderr
    driver, profile = browser_or_skip()
    try:
        t0 = time.perf_counter()
        driver.get(page_path.as_uri())  # returns after the load event: every data: image is in by then
        complete = driver.execute_script("return Array.from(document.images).every(i => i.complete)")
        load_s = time.perf_counter() - t0
        timing = driver.execute_script("const t = performance.timing; return t.loadEventEnd - t.navigationStart")
        widths = driver.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
        names = driver.execute_script("return Array.from(document.images).map(i => i.dataset.name)")
        log = driver.get_log("browser")
        headings = driver.execute_script("return Array.from(document.querySelectorAll('h2')).map(h => h.id)")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    assert complete and len(widths) == len(images(first["html"])) >= 12
    assert all(w > 0 for w in widths), [n for n, w in zip(names, widths) if not w]
    errors = [e for e in log if e.get("level") in ("SEVERE", "ERROR")]
    assert errors == [], errors
    assert [h for h in headings if h] == list(SECTIONS)
    size = page_path.stat().st_size
    print(f"\nreport in headless Chromium: {size / 1e6:.2f} MB ({size:,} bytes), {len(widths)} images, "
          f"loaded in {load_s:.2f} s (driver.get to every image complete; navigation to load event {timing} ms)")
