"""One self-contained HTML page per store (`scalingkit report`): every figure embedded as a data: URI, every number
with its 95% interval and provenance, and which results were reused and which computed.

It opens with a summary across families (plots/summary.py: each family's L(N) exponent and every compute-optimal
method's a, from the results below). What it shows, per (family, param), in the paper's order:
- Fig. 1: the loss curves and L(N, D) against N and against D; the 1-d power-law fits at every fixed D and N with
  their bands and residuals; the excess-loss view (L - floor, log-log) where the floor is exact; a table of every
  slice (exponent, offset, verdict, power/exponential ratios, the excess exponent, each with its interval);
- the Chinchilla fit (its parameters, a, b, G, N_opt, D_opt with intervals, the surface against the data);
- Fig. 15: the power-law / exponential ratio of every slice, by verdict;
- Figs. 10/17: `compare`'s train and validation MSE of the 2-d forms;
- every compute-optimal method side by side (gamma, a, b and the budgets' N_opt, D_opt, D/N, each with its
  interval) and its figures;
- the notes: offsets at the floor, transient slices, edge optima, failed methods;
then Fig. 2 (exponents against entropy, all families), Fig. 3 (probability by rank), the results used and their
provenance (file, data sha256, settings, seed, versions).

Results are found again, not recomputed: a saved result (fits/ beside the store) whose data sha256 matches the
store's current table (the whole table or the group's, as `scalingkit fit` and `fit --family F --param P` hash
it; compute-optimal reports also match the curves' hash) is reused; only what is missing is computed, with the
settings in `ReportSettings`, and saved (and indexed) like the command-line results. The page says which is which.
"""
from __future__ import annotations

import base64
import datetime
import html
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scalingkit.errors import UserError
from scalingkit.fit.resolved import at_fitting_bound, unresolved_exponents
from scalingkit.plots import style
from scalingkit.plots.style import fmt, with_interval

LOSS_MEANING = {"exact": "exact loss: the family's floor + the mean KL from its true next-token law (no target "
                         "noise)",
                "sampled": "sampled loss: cross-entropy on the held-out sequences' own next tokens"}


@dataclass
class ReportSettings:
    """What the report computes when no saved result matches (the command-line defaults of each command)."""

    n_convention: str = "total"
    loss: str = "auto"  # auto | exact | sampled, as `scalingkit fit --loss`
    bootstrap: int = 4000  # 1-d power laws: wild-bootstrap draws (fit's default)
    bootstrap_2d: int = 200  # Chinchilla: bootstrap draws over runs (the demo's)
    compare_forms: tuple = ("chinchilla", "kaplan", "mlp", "kernel")
    splits: int = 20
    methods: tuple = ("all",)  # compute-optimal methods
    optimal_bootstrap: int = 200
    budgets: tuple = ()  # FLOPs; () = the data's largest 6ND
    seed: int = 0
    workers: int | None = None
    ranks: bool = True
    compute: bool = True  # False: reuse only, list what is missing
    dpi: int = 90


@dataclass
class Item:
    """One result the report uses."""

    kind: str  # powerlaw | chinchilla | compare | optimal
    group: dict
    status: str  # reused | computed | missing | failed
    path: Path | None = None
    obj: Any = None  # FitCollection, FitResult, comparison dict, OptimalReport
    provenance: dict = field(default_factory=dict)
    note: str = ""
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return "/".join(str(v) for v in self.group.values()) or "all"


@dataclass
class ReportOutput:
    html: Path
    markdown: Path | None
    items: list
    seconds: float
    bytes: int


# ---------------------------------------------------------------- formatting


def _sha(h: str) -> str:
    return (h or "-")[:12]


# ---------------------------------------------------------------- the document (blocks rendered twice)


class Doc:
    """Blocks (headings, paragraphs, tables, figures, lists, details) rendered to HTML and to Markdown."""

    def __init__(self, dpi: int):
        self.blocks: list[tuple] = []
        self.dpi = dpi
        self.n_figures = 0

    def h(self, level: int, text: str, anchor: str | None = None):
        self.blocks.append(("h", level, text, anchor))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def table(self, header: list, rows: list, caption: str = ""):
        self.blocks.append(("table", header, rows, caption))

    def ul(self, items: list[str]):
        if items:
            self.blocks.append(("ul", items))

    def details(self, summary: str, text: str):
        self.blocks.append(("details", summary, text))

    def figure(self, fig, name: str, caption: str):
        """A matplotlib figure, as PNG bytes (the figure is closed)."""
        if fig is None:
            return
        self.n_figures += 1
        self.blocks.append(("figure", f"{self.n_figures:02d}-{name}", caption, style.png_bytes(fig, self.dpi)))

    # -- renderers
    def html(self, title: str) -> str:
        out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
               '<meta name="viewport" content="width=device-width, initial-scale=1">',
               '<link rel="icon" href="data:,">', f"<title>{html.escape(title)}</title>", f"<style>{CSS}</style>",
               "</head><body>"]
        toc = [(b[2], b[3]) for b in self.blocks if b[0] == "h" and b[1] == 2 and b[3]]
        for b in self.blocks:
            kind = b[0]
            if kind == "h":
                _, level, text, anchor = b
                ident = f' id="{html.escape(anchor)}"' if anchor else ""
                out.append(f"<h{level}{ident}>{html.escape(text)}</h{level}>")
                if level == 1 and toc:
                    out.append('<nav class="toc">' + " &middot; ".join(
                        f'<a href="#{html.escape(a)}">{html.escape(t)}</a>' for t, a in toc) + "</nav>")
            elif kind == "p":
                out.append(f"<p>{html.escape(b[1])}</p>")
            elif kind == "table":
                _, header, rows, caption = b
                cap = f'<p class="cap">{html.escape(caption)}</p>' if caption else ""
                head = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
                body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                               for row in rows)
                out.append(f'{cap}<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
                           "</table></div>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in b[1]) + "</ul>")
            elif kind == "details":
                out.append(f"<details><summary>{html.escape(b[1])}</summary><pre>{html.escape(b[2])}</pre>"
                           "</details>")
            elif kind == "figure":
                _, name, caption, png = b
                data = base64.b64encode(png).decode("ascii")
                out.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}" '
                           f'data-name="{html.escape(name)}"><figcaption>{html.escape(caption)}</figcaption>'
                           "</figure>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"

    def markdown(self, folder: Path, link_base: str) -> str:
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for b in self.blocks:
            kind = b[0]
            if kind == "h":
                out.append("#" * b[1] + " " + b[2])
            elif kind == "p":
                out.append(b[1])
            elif kind == "table":
                _, header, rows, caption = b
                if caption:
                    out.append(f"*{caption}*")
                esc = lambda c: str(c).replace("|", "\\|").replace("\n", " ")  # noqa: E731
                out.append("\n".join(["| " + " | ".join(esc(c) for c in header) + " |",
                                      "|" + "---|" * len(header)]
                                     + ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]))
            elif kind == "ul":
                out.append("\n".join(f"- {x}" for x in b[1]))
            elif kind == "details":
                out.append(f"<details><summary>{html.escape(b[1])}</summary>\n\n```\n{b[2]}\n```\n</details>")
            elif kind == "figure":
                _, name, caption, png = b
                (folder / f"{name}.png").write_bytes(png)
                out.append(f"![{name}]({link_base}/{name}.png)\n\n*{caption}*")
        written = {f"{b[1]}.png" for b in self.blocks if b[0] == "figure"}
        for old in folder.glob("[0-9][0-9]-*.png"):  # an earlier report's figures this one does not have
            if old.name not in written:
                old.unlink()
        return "\n\n".join(out) + "\n"


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1280px;margin:1.5em auto;padding:0 1em;
color:#222;line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:2px solid #ccc;margin-top:2em}h3{margin-top:1.5em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:left;vertical-align:top}th{background:#f2f2f2}p.cap{color:#555;font-size:.85em;margin:.8em 0 .2em}
.scroll{overflow-x:auto}figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}nav.toc{font-size:.9em;margin-bottom:1em}pre{white-space:pre-wrap;
font-size:.8em;background:#f7f7f7;padding:.5em}details{margin:.3em 0}
"""


# ---------------------------------------------------------------- saved results


def _load_saved(folder: Path) -> list[tuple[Path, dict]]:
    """Every result JSON in `folder` (fits, collections, comparisons, compute-optimal reports)."""
    out = []
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and doc.get("kind") in ("fit", "collection", "comparison", "optimal-report"):
            out.append((path, doc))
    return out


def _newest(candidates, draws):
    """The candidate with the most bootstrap draws (more methods first, for compute-optimal reports), then the
    newest file."""
    return max(candidates, key=lambda c: (draws(c[1]), c[0].stat().st_mtime)) if candidates else None


def _settings(doc: dict) -> dict:
    return (doc.get("provenance") or {}).get("settings") or {}


def _method_defaults(saved: dict) -> bool:
    """Whether a saved compute-optimal analysis ran its methods with the settings the report runs them with (the
    defaults): `optimal --envelope-min-fraction 0`, say, moves the envelope's a, and such a result is not the
    report's. Draws, seed and budgets may differ: they set the intervals' precision and where N_opt is read off."""
    from scalingkit.errors import UserError
    from scalingkit.fit.surrogates import KernelSurrogate, MLPSurrogate
    from scalingkit.optimal.pipeline import DEFAULTS

    same = {k: v for k, v in DEFAULTS.items() if k not in ("bootstrap", "seed", "mlp", "kernel")}
    if json.dumps({k: saved.get(k, v) for k, v in same.items()}, sort_keys=True, default=list) != \
            json.dumps(same, sort_keys=True, default=list):
        return False
    # the surrogates' settings as their estimators resolve them: `optimal` writes its defaults out in full
    for name, cls in (("mlp", MLPSurrogate), ("kernel", KernelSurrogate)):
        try:
            if cls(**(saved.get(name) or {})).get_settings() != cls().get_settings():
                return False
        except (UserError, TypeError, ValueError):
            return False
    return True


def _code(doc: dict) -> str | None:
    """The fingerprint of the scalingkit code that saved `doc` (None: saved before fingerprints were recorded)."""
    return ((doc.get("provenance") or {}).get("versions") or {}).get("scalingkit_code")


# ---------------------------------------------------------------- the report


class Report:
    def __init__(self, store_path, fits_dir=None, settings: ReportSettings | None = None, echo=None):
        from scalingkit import store
        from scalingkit.fit.provenance import package_versions

        self.store_path = Path(store_path)
        if not self.store_path.exists():
            raise UserError(f"no store at {self.store_path} (give --store PATH)")
        self.settings = settings or ReportSettings()
        self.fits_dir = Path(fits_dir) if fits_dir else self.store_path.parent / "fits"
        self.echo = echo or (lambda msg: None)
        self.ds = store.open_cube(self.store_path)
        self.table = store.loss_table(self.store_path, n_convention=self.settings.n_convention,
                                      loss=self.settings.loss)
        if self.table.empty:
            raise UserError(f"the cube at {self.store_path} has no finished runs to report on")
        self.floors = store.family_floors(self.store_path)
        self.kinds = self.table.groupby("family")["loss_kind"].first().to_dict()
        self.saved = _load_saved(self.fits_dir)
        self.items: list[Item] = []
        self.versions = package_versions()
        self.other_code: dict = {}  # (kind, group values) -> a saved result passed over: other code saved it
        self.groups = [{"family": str(f), "param": str(p)}
                       for (f, p), _ in self.table.groupby(["family", "param"], sort=True)]

    # -- hashes
    def _cols_1d(self, t):
        from scalingkit.fit.provenance import data_hash

        cols = [c for c in t.columns if c in ("family", "param", "N", "D", "loss", "loss_se")]
        return data_hash({c: t[c].to_numpy() for c in cols})

    def group_table(self, g):
        t = self.table
        sel = (t["family"] == g["family"]) & (t["param"] == g["param"])
        return t[sel].reset_index(drop=True)

    def _hash_2d(self, t):
        from scalingkit.fit.provenance import data_hash

        return data_hash({c: t[c].to_numpy(float) for c in ("N", "D", "loss")})

    def _source(self, g=None) -> dict:
        from scalingkit.fit.results import source_record

        return source_record(store=self.store_path, n_convention=self.settings.n_convention,
                             family=(g or {}).get("family"), param=(g or {}).get("param"))

    def _record(self, results, g):
        for r in results:
            r.provenance.setdefault("group", dict(g))
            r.provenance["loss"] = self.kinds.get(r.provenance["group"].get("family"))
            r.provenance["source"] = self._source(g)

    # -- gathering: reuse or compute
    def _this_code(self, kind: str, g: dict, cands: list) -> list:
        """The candidates this code saved. One saved by other code (the version number does not change with every
        edit; a default or a fix may have) is computed again, and the report says why it was passed over."""
        mine = [c for c in cands if _code(c[1]) == self.versions["scalingkit_code"]]
        if cands and not mine:
            self.other_code[(kind, tuple(g.values()))] = cands[0][0].name
            self.echo(f"report: {cands[0][0].name} ({kind}, {'/'.join(g.values())}) matches the data but was saved "
                      f"by other scalingkit code ({_code(cands[0][1]) or 'unrecorded'}, this is "
                      f"{self.versions['scalingkit_code']}): not reused")
        return mine

    def gather(self):
        s = self.settings
        whole = self._cols_1d(self.table)
        for g in self.groups:
            self.items.append(self._powerlaw(g, whole))
        for g in self.groups:
            self.items.append(self._chinchilla(g))
        for g in self.groups:
            self.items.append(self._compare(g))
        self.items += self._optimal()
        computed = sum(i.status == "computed" for i in self.items)
        reused = sum(i.status == "reused" for i in self.items)
        self.echo(f"report: {reused} result(s) reused, {computed} computed"
                  + ("" if s.compute else f", {sum(i.status == 'missing' for i in self.items)} missing"))

    def _powerlaw(self, g, whole_hash) -> Item:
        from scalingkit.fit.results import FitCollection, save_result

        t = self.group_table(g)
        group_hash = self._cols_1d(t)
        cands = [(p, d) for p, d in self.saved if d["kind"] == "collection" and d.get("form") == "powerlaw"
                 and d.get("provenance", {}).get("data_sha256") in (whole_hash, group_hash)
                 and _settings(d).get("offset", "free") == "free"
                 and any(r.get("provenance", {}).get("group") == g for r in d.get("results", []))]
        cands = self._this_code("powerlaw", g, cands)
        best = _newest(cands, lambda d: int(_settings(d).get("bootstrap") or 0))
        if best:
            coll = FitCollection.from_dict(best[1])
            self.echo(f"report: reusing {best[0].name} (powerlaw, {'/'.join(g.values())})")
            return Item("powerlaw", g, "reused", best[0], coll, coll.provenance)
        if not self.settings.compute:
            return Item("powerlaw", g, "missing", note=self._command("powerlaw", g))
        from scalingkit.fit.slices import fit_slices

        self.echo(f"report: fitting powerlaw slices of {'/'.join(g.values())} ({self.settings.bootstrap} draws each)")
        t0 = time.perf_counter()
        try:
            coll = fit_slices(t, "powerlaw", group_cols=["family", "param"], floors=self.floors,
                              bootstrap=self.settings.bootstrap, seed=self.settings.seed, workers=self.settings.workers)
        except UserError as exc:
            return Item("powerlaw", g, "failed", note=str(exc))
        self._record(coll.results, g)
        coll.provenance["loss"] = sorted(set(t["loss_kind"]))
        coll.provenance["source"] = self._source(g)
        path = save_result(coll, self.fits_dir)
        return Item("powerlaw", g, "computed", path, coll, coll.provenance, seconds=time.perf_counter() - t0)

    def _chinchilla(self, g) -> Item:
        from scalingkit.fit.base import FitResult
        from scalingkit.fit.results import save_result

        t = self.group_table(g)
        h = self._hash_2d(t)
        cands = [(p, d) for p, d in self.saved if d["kind"] == "fit" and d.get("form") == "chinchilla"
                 and d.get("provenance", {}).get("data_sha256") == h and _settings(d).get("offset", "free") == "free"]
        cands = self._this_code("chinchilla", g, cands)
        best = _newest(cands, lambda d: int(_settings(d).get("bootstrap") or 0))
        if best:
            res = FitResult.from_dict(best[1])
            self.echo(f"report: reusing {best[0].name} (chinchilla, {'/'.join(g.values())})")
            return Item("chinchilla", g, "reused", best[0], res, res.provenance)
        if not self.settings.compute:
            return Item("chinchilla", g, "missing", note=self._command("chinchilla", g))
        from scalingkit.fit.chinchilla import Chinchilla

        if len(t) < Chinchilla.min_points:
            return Item("chinchilla", g, "failed", note=f"{len(t)} points; the Chinchilla form needs "
                                                        f"{Chinchilla.min_points}")
        floor, kind = self.floors.get(g["family"], (None, "unknown"))
        extra = {"floor": floor, "offset": "free"} if kind == "exact" else {}
        self.echo(f"report: fitting chinchilla to {'/'.join(g.values())} ({self.settings.bootstrap_2d} draws)")
        t0 = time.perf_counter()
        settings = {"bootstrap": self.settings.bootstrap_2d, "seed": self.settings.seed, "interval": "bca",
                    "solver": "varpro", **extra}
        if self.settings.workers:
            settings["workers"] = self.settings.workers
        res = Chinchilla(**settings).fit(*(t[c].to_numpy(float) for c in ("N", "D", "loss")),
                                         label=f"family={g['family']},param={g['param']}")
        res.provenance["group"] = dict(g)
        self._record([res], g)
        from scalingkit.fit.floor import note_floors

        note_floors([res], self.floors)
        path = save_result(res, self.fits_dir)
        return Item("chinchilla", g, "computed", path, res, res.provenance, seconds=time.perf_counter() - t0)

    def _compare(self, g) -> Item:
        from scalingkit.fit.provenance import data_hash, package_versions
        from scalingkit.fit.results import save_document

        t = self.group_table(g)
        h = self._hash_2d(t)
        cands = [(p, d) for p, d in self.saved if d["kind"] == "comparison"
                 and d.get("provenance", {}).get("data_sha256") == h]
        cands = self._this_code("compare", g, cands)
        best = _newest(cands, lambda d: (len(d.get("forms", [])), int((d.get("settings") or {}).get("splits", 0))))
        if best:
            self.echo(f"report: reusing {best[0].name} (compare, {'/'.join(g.values())})")
            return Item("compare", g, "reused", best[0], best[1], best[1].get("provenance", {}))
        if not self.settings.compute:
            return Item("compare", g, "missing", note=self._command("compare", g))
        from scalingkit.fit.compare import compare_forms

        self.echo(f"report: comparing {','.join(self.settings.compare_forms)} on {'/'.join(g.values())} "
                  f"({self.settings.splits} splits)")
        t0 = time.perf_counter()
        try:
            res = compare_forms(*(t[c].to_numpy(float) for c in ("N", "D", "loss")),
                                forms=list(self.settings.compare_forms), splits=self.settings.splits,
                                seed=self.settings.seed, workers=self.settings.workers)
        except UserError as exc:
            return Item("compare", g, "failed", note=str(exc))
        doc = res.to_dict()
        doc["provenance"] = {"label": f"family={g['family']},param={g['param']}",
                             "data_sha256": data_hash({c: t[c].to_numpy() for c in ("N", "D", "loss")}),
                             "versions": package_versions(), "seed": self.settings.seed, "group": dict(g),
                             "loss": self.kinds.get(g["family"]), "source": self._source(g)}
        path = save_document(doc, "compare", self.fits_dir)
        return Item("compare", g, "computed", path, doc, doc["provenance"], seconds=time.perf_counter() - t0)

    def _optimal(self) -> list[Item]:
        from scalingkit.fit.provenance import data_hash
        from scalingkit.optimal import from_cube, run_methods, save_report
        from scalingkit.optimal.result import OptimalReport

        s = self.settings
        items = []
        try:
            groups = from_cube(self.store_path, n_convention=s.n_convention, loss=s.loss)
        except UserError as exc:
            return [Item("optimal", {}, "failed", note=str(exc))]
        self.inputs = {}
        for inputs in groups:
            g = {"family": inputs.source["family"], "param": inputs.source["param"]}
            self.inputs[(g["family"], g["param"])] = inputs
            N, D, L = inputs.arrays()
            h = data_hash({"N": N, "D": D, "loss": L})
            cv = inputs.curves
            ch = data_hash({"compute": cv.compute.ravel(), "loss": cv.loss.ravel()}) if cv is not None else None
            cands = [(p, d) for p, d in self.saved if d["kind"] == "optimal-report"
                     and d.get("provenance", {}).get("data_sha256") == h
                     and d.get("provenance", {}).get("curves_sha256") == ch
                     and (d.get("settings") or {}).get("flops", "6nd") == "6nd"
                     and (d.get("settings") or {}).get("n_convention") == s.n_convention
                     and _method_defaults(d.get("settings") or {})]
            cands = self._this_code("optimal", g, cands)
            best = _newest(cands, lambda d: (len((d.get("settings") or {}).get("methods", [])),
                                             int((d.get("settings") or {}).get("bootstrap") or 0)))
            if best:
                rep = OptimalReport.from_dict(best[1])
                self.echo(f"report: reusing {best[0].name} (optimal, {'/'.join(g.values())})")
                items.append(Item("optimal", g, "reused", best[0], rep, rep.provenance))
                continue
            if not s.compute:
                items.append(Item("optimal", g, "missing", note=self._command("optimal", g)))
                continue
            self.echo(f"report: compute-optimal methods {','.join(s.methods)} on {'/'.join(g.values())}")
            t0 = time.perf_counter()
            rep = run_methods(inputs, list(s.methods), budgets=list(s.budgets) or None, workers=s.workers,
                              bootstrap=s.optimal_bootstrap, seed=s.seed)
            path = save_report(rep, self.fits_dir)
            items.append(Item("optimal", g, "computed", path, rep, rep.provenance,
                              seconds=time.perf_counter() - t0))
        return items

    def _command(self, kind: str, g: dict) -> str:
        """The command that would save the missing result."""
        s = self.settings
        base = f"--store {self.store_path} --family {g['family']} --param {g['param']}"
        if s.n_convention != "total":
            base += f" --n-convention {s.n_convention}"
        if kind == "powerlaw":
            return f"scalingkit fit --form powerlaw {base} --bootstrap {s.bootstrap}"
        if kind == "chinchilla":
            return f"scalingkit fit --form chinchilla {base} --bootstrap {s.bootstrap_2d}"
        if kind == "compare":
            return f"scalingkit compare --forms {','.join(s.compare_forms)} --splits {s.splits} {base}"
        return f"scalingkit optimal --method {','.join(s.methods)} {base}"

    def item(self, kind: str, g: dict) -> Item | None:
        return next((i for i in self.items if i.kind == kind and i.group == g), None)

    # -- writing
    def build(self) -> Doc:
        doc = Doc(self.settings.dpi)
        self._header(doc)
        for g in self.groups:
            self._group_section(doc, g)
        self._exponents_section(doc)
        if self.settings.ranks:
            self._ranks_section(doc)
        self._scale_section(doc)
        self._provenance_section(doc)
        return doc

    def _scale_section(self, doc: Doc):
        """What runs of this size can and cannot show, read off the store and the fits (not written by hand), and
        what the paper's size (the GPU presets) would add."""
        doc.h(2, "What this scale can and cannot show", "scale")
        t, ds = self.table, self.ds
        widths = sorted({int(w) for w in ds["d_model"].values})
        seeds = len(ds["seed"])
        items = [f"Sampled: widths {widths[0]}-{widths[-1]} ({len(widths)} sizes, N = {t['N'].min():,} to "
                 f"{t['N'].max():,} {self.settings.n_convention} parameters), budgets D = {t['D'].min():,} to "
                 f"{t['D'].max():,} tokens ({t['D'].max() / t['D'].min():.0f}x), {seeds} seed(s), "
                 f"{len(ds['lr'])} learning rates in the cube. The paper: widths 64-4,096, budgets to ~10^9-10^10 "
                 "tokens, 14 learning rates, 3 seeds."]
        if seeds == 1:
            items.append("One seed: the scatter between seeds is not measured, and it, not evaluation noise, limits "
                         "the verdicts near the floor (the exact loss's standard error is far smaller than the "
                         "differences between neighbouring runs).")
        for g in self.groups:
            pl = self.item("powerlaw", g)
            if not pl or pl.obj is None:
                continue
            rows = [r for r in pl.obj.results if r.provenance.get("group") == g]
            for axis, exponent in (("N", "alpha"), ("D", "beta")):
                fits = [r for r in rows if r.provenance.get("axis") == axis]
                if not fits:
                    continue
                calls = [((r.diagnostics.get("verdict") or {}).get("verdict") or "no verdict") if r.converged
                         else "failed" for r in fits]
                bounded = sum(1 for r in fits if r.converged and at_fitting_bound(r, exponent))
                resolved = [r for r in fits if r.converged and not at_fitting_bound(r, exponent)
                            and (r.intervals.get(exponent) or (0.0,))[0] > 0]
                other = "D" if axis == "N" else "N"
                text = (f"{g['family']}/{g['param']}, L({axis}) at fixed {other}: "
                        + ", ".join(f"{calls.count(c)} {c}" for c in dict.fromkeys(calls)) + f" of {len(fits)} slices")
                if resolved:
                    values = sorted(r.params[exponent] for r in resolved)
                    text += (f"; {exponent} resolved in {len(resolved)} of {len(fits)} ({values[0]:.3g} to "
                             f"{values[-1]:.3g})")
                if not resolved or calls.count("power law") < len(fits) / 2:
                    text += (f"; {exponent} is not resolved at this size" if not resolved else
                             f"; fewer than half the slices are called power laws")
                    text += (f" ({bounded} at or reaching its fitting bound)" if bounded else "")
                    text += (": the loss hardly changes with N at fixed D over these widths (on unbiased walks every "
                             "width above a capacity cliff reaches the same loss; benchmarks/RESULTS.md, The N axis)"
                             if axis == "N" and not resolved else
                             ": more budgets past the plateau, or more seeds, are needed")
                items.append(text)
        unknown = [f for f, (floor, kind) in self.floors.items() if kind != "exact"]
        if unknown:
            items.append("No exact floor for " + ", ".join(sorted(unknown)) + ": their offsets are noted, not "
                         "bounded, and their exponents are not placed at an exact entropy.")
        items.append("What the GPU presets (sweeps/*_gpu.toml) add: widths to 2,048-4,096, budgets to 160M tokens, "
                     "14 learning rates and 3 seeds, graphs of 8,192 nodes and the GPT-2 vocabulary for language: "
                     "N-exponents where CPU widths sit past the capacity cliff (unbiased walks, language), budgets "
                     "that hold the compute-optimal ridge over decades of C, families separated by their entropy, "
                     "and the muP/SP comparison.")
        doc.ul(items)

    def _header(self, doc: Doc):
        s = self.settings
        doc.h(1, f"scalingkit report: {self.store_path}")
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        doc.p(f"Written {created} on {_machine()} by scalingkit {self.versions.get('scalingkit')} "
              f"(Python {self.versions.get('python')}"
              f", numpy {self.versions.get('numpy')}, scipy {self.versions.get('scipy')}). The store's L(N, D) table: "
              f"{len(self.table)} cells (best final loss over learning rates and seeds), data sha256 "
              f"{self._cols_1d(self.table)}.")
        rows = []
        for fam in sorted(self.kinds):
            floor, kind = self.floors.get(fam, (np.nan, "unknown"))
            rows.append([fam, self.kinds[fam], LOSS_MEANING.get(self.kinds[fam], ""),
                         f"{fmt(floor)} ({kind})" if np.isfinite(floor) else "unknown"])
        doc.table(["family", "loss fitted", "meaning", "loss floor (entropy)"], rows,
                  caption=f"Which loss is fitted (--loss {s.loss}); N counts {s.n_convention} parameters everywhere"
                          + (" (embedding included)" if s.n_convention == "total" else "") + ".")
        self._sweeps_table(doc)
        doc.p("Every number is an estimate with its 95% interval in brackets; error bars and bands in the figures "
              "are 95% too (data: 1.96 standard errors over held-out sequences; fits: their own bootstrap draws).")
        self._summary_section(doc)
        doc.h(2, "Results used", "results")
        rows = []
        for i in self.items:
            prov = i.provenance or {}
            what = {"powerlaw": "1-d power laws (every slice)", "chinchilla": "Chinchilla fit",
                    "compare": "2-d form comparison", "optimal": "compute-optimal methods"}[i.kind]
            status = {"reused": "reused (saved earlier by this code, data hash matches)",
                      "computed": f"computed now ({i.seconds:.1f} s) and saved",
                      "missing": f"missing: {i.note}", "failed": f"failed: {i.note}"}[i.status]
            passed_over = self.other_code.get((i.kind, tuple(i.group.values())))
            if passed_over and i.status != "reused":
                status += f" ({passed_over} matches the data but other scalingkit code saved it)"
            rows.append([what, i.label, status, i.path.name if i.path else "-", _sha(prov.get("data_sha256", "")),
                         self._settings_text(i)])
        doc.table(["result", "family/param", "status", "file", "data sha256", "settings"], rows,
                  caption=f"Saved results are looked up in {self.fits_dir}; what is computed is saved there too and "
                          "listed by `scalingkit results`.")

    def _summary_section(self, doc: Doc):
        """Every family's L(N) exponent and compute-optimal a in two tables, from the results gathered (nothing
        fitted here): the per-family sections below say why."""
        from scalingkit.plots import summary

        doc.h(2, "Summary across families: the N axis and the compute-optimal split", "summary")
        colls = {}
        for g in self.groups:
            pl = self.item("powerlaw", g)
            colls[(g["family"], g["param"])] = pl.obj if pl else None
        specs = self.ds.attrs.get("families", {})
        doc.h(3, "L(N): the model-size exponent")
        doc.table(summary.ALPHA_HEADER,
                  [summary.alpha_row(g, colls[(g["family"], g["param"])], specs.get(g["family"], {}).get("kind"))
                   for g in self.groups])
        doc.p(summary.alpha_note(list(colls.values())))
        doc.h(3, "Compute-optimal a (N_opt ~ C^a), every method side by side")
        rows = []
        for g in self.groups:
            op = self.item("optimal", g)
            rows.append(summary.optimal_row(g, op.obj if op else None))
        doc.table(summary.OPTIMAL_HEADER, rows)
        doc.p(summary.optimal_note(self.settings.n_convention))

    def _sweeps_table(self, doc: Doc):
        """What the store holds, sweep by sweep: its grid, and per family the finished runs, their training time
        summed (each run's own wall_seconds; with W workers the wall clock is about the sum over W) and when they
        finished, so a reader sees how much of each preset is in and what it cost."""
        from scalingkit import store

        sweeps = store.attrs(self.store_path).get("sweeps", [])
        if not sweeps:
            return
        ds = self.ds
        rows = []
        for sw in sweeps:
            grid = sw.get("grid", {})
            for fam in sw.get("families", {}):
                if fam not in ds["family"].values:
                    continue
                sub = ds.sel(family=fam)
                done = sub["status"] == "done"
                n = int(done.sum())
                seconds = float(sub["wall_seconds"].where(done).sum()) if n else 0.0
                stamps = sorted(str(t) for t in sub["finished_at"].where(done, "").values.ravel() if str(t))
                span = f"{stamps[0][:16]} to {stamps[-1][:16]}" if stamps else "-"
                widths, tokens = grid.get("widths", []), grid.get("tokens", [])
                scope = (f"widths {widths[0]}-{widths[-1]}, {style.count_text(tokens[0])}-"
                         f"{style.count_text(tokens[-1])} tokens" if widths and tokens else "-")
                rows.append([sw.get("name", "?"), fam, scope, str(n), f"{seconds:,.0f}", span])
        doc.table(["sweep", "family", "grid", "runs done", "training s (sum over runs)", "finished (UTC)"], rows,
                  caption="The sweeps this store was grown by (its `sweeps` attribute) and what each has finished.")

    def _settings_text(self, i: Item) -> str:
        if i.obj is None:
            return "-"
        if i.kind == "compare":
            st = i.obj.get("settings", {})
            return f"forms {','.join(i.obj.get('forms', []))}, {st.get('splits')} splits, seed {st.get('seed')}"
        if i.kind == "optimal":
            st = i.obj.settings
            return (f"methods {','.join(st.get('methods', []))}, bootstrap {st.get('bootstrap')}, seed "
                    f"{st.get('seed')}, budgets {', '.join(fmt(b, 3) for b in st.get('budgets', []))}, flops "
                    f"{st.get('flops')}")
        st = i.provenance.get("settings", {})
        return f"bootstrap {st.get('bootstrap')}, seed {st.get('seed')}, offset {st.get('offset', 'free')}"

    def _provenance_line(self, i: Item) -> str:
        prov = i.provenance or {}
        v = prov.get("versions") or {}
        versions = ", ".join(f"{k} {v[k]}" for k in ("scalingkit", "numpy", "scipy") if v.get(k))
        return (f"From {i.path.name if i.path else '-'} ({i.status}): data sha256 {_sha(prov.get('data_sha256'))}, "
                f"{self._settings_text(i)}" + (f"; {versions}" if versions else "") + ".")

    # -- per group
    def _group_section(self, doc: Doc, g: dict):
        from scalingkit import store
        from scalingkit.plots import curves, fits

        fam, par = g["family"], g["param"]
        kind = self.kinds.get(fam)
        floor, floor_kind = self.floors.get(fam, (np.nan, "unknown"))
        floor = floor if np.isfinite(floor) else None
        t = self.group_table(g)
        doc.h(2, f"{fam} / {par}: {kind} loss", f"g-{fam}-{par}")
        doc.p(f"{LOSS_MEANING.get(kind, kind)}. Loss floor: "
              + (f"{fmt(floor)} nats ({floor_kind})" if floor is not None else "unknown")
              + f". {len(t)} cells of L(N, D): {t['N'].nunique()} model sizes x {t['D'].nunique()} token budgets; "
              f"N = {self.settings.n_convention} parameters.")
        notes: list[str] = []
        # Fig. 1: data, 1-d fits
        doc.h(3, "Fig. 1: loss against N at fixed D and against D at fixed N")
        best = store.best_loss(self.ds.sel(family=[fam]), self.settings.n_convention, kind)
        doc.figure(curves.loss_figure(self.ds, best, fam, par, kind, self.settings.n_convention), f"loss-{fam}-{par}",
                   f"{fam}/{par}: the curves of the best runs, and L(N, D) against N and against D ({kind} loss, "
                   "95% error bars).")
        pl = self.item("powerlaw", g)
        if pl and pl.obj is not None:
            coll = pl.obj
            doc.figure(fits.plot_slices(coll, t, g, loss_kind=kind, n_convention=self.settings.n_convention,
                                        floor=floor, floor_kind=floor_kind,
                                        title=f"{fam}/{par}: 1-d power laws E + A x^-k ({kind} loss)"),
                       f"slices-{fam}-{par}",
                       f"{fam}/{par}: the 1-d power-law fits at every fixed D (left) and N (right), their 95% bands "
                       "and residuals. " + self._provenance_line(pl))
            if floor is not None and floor_kind == "exact":
                doc.figure(fits.plot_excess(coll, t, g, floor=floor, floor_kind=floor_kind, loss_kind=kind,
                                            n_convention=self.settings.n_convention), f"excess-{fam}-{par}",
                           f"{fam}/{par}: the {kind} loss above its exact floor, log-log: a power law is a straight "
                           "line; dashed: the excess-loss fits (robust lines).")
            self._slices_table(doc, coll, g, pl)
            notes += self._slice_notes(coll, g)
        else:
            doc.p(f"No 1-d fits: {pl.note if pl else 'not run'}.")
        # Chinchilla
        doc.h(3, "Chinchilla fit: L = E + A N^-alpha + B D^-beta")
        ch = self.item("chinchilla", g)
        if ch and ch.obj is not None:
            res = ch.obj
            self._params_table(doc, res, ch)
            doc.figure(fits.plot_fit2d(res, t, loss_kind=kind, n_convention=self.settings.n_convention, floor=floor,
                                       floor_kind=floor_kind, title=f"{fam}/{par}: Chinchilla fit ({kind} loss)"),
                       f"chinchilla-{fam}-{par}",
                       f"{fam}/{par}: the Chinchilla surface against the data, its 95% band (bootstrap over runs) and "
                       "residuals. " + self._provenance_line(ch))
            notes += [f"[chinchilla] {n}" for n in res.diagnostics.get("notes", [])]
            if not res.converged:
                notes.append(f"[chinchilla] FAILED: {res.failure}")
        else:
            doc.p(f"No Chinchilla fit: {ch.note if ch else 'not run'}.")
        # Fig. 15
        doc.h(3, "Fig. 15: power law against exponential, slice by slice")
        if pl and pl.obj is not None:
            doc.figure(fits.plot_ratios(pl.obj, g, n_convention=self.settings.n_convention), f"ratios-{fam}-{par}",
                       f"{fam}/{par}: MSE of the power law over that of the exponential a + b exp(-c x) fitted under "
                       "the same offset constraint (filled: in-sample; open: leave-one-out), by verdict. "
                       + self._provenance_line(pl))
        # Figs. 10/17
        doc.h(3, "Figs. 10 and 17: the 2-d forms compared (train and validation MSE)")
        cm = self.item("compare", g)
        if cm and cm.obj is not None:
            self._compare_table(doc, cm)
            doc.figure(fits.plot_comparison(cm.obj, title=f"{fam}/{par}: 2-d forms, random train/validation splits "
                                                          f"({kind} loss)"),
                       f"compare-{fam}-{par}", f"{fam}/{par}: the forms' mean train and validation MSE over random "
                                               "splits, the middle 95% of the splits as a band. "
                       + self._provenance_line(cm))
            for form, msgs in (cm.obj.get("failures") or {}).items():
                if msgs:
                    notes.append(f"[compare] {form} failed on {len(msgs)} split(s), first: {msgs[0]}")
        else:
            doc.p(f"No comparison: {cm.note if cm else 'not run'}.")
        # compute-optimal
        doc.h(3, "Compute-optimal allocation: every method side by side")
        op = self.item("optimal", g)
        if op and op.obj is not None:
            self._optimal_section(doc, op, g)
            for r in op.obj.results:
                notes += [f"[{r.method}] {n}" for n in r.diagnostics.get("notes", [])]
                if not r.converged:
                    notes.append(f"[{r.method}] FAILED: {r.failure}")
        else:
            doc.p(f"No compute-optimal analysis: {op.note if op else 'not run'}.")
        doc.h(3, "Notes")
        if notes:
            doc.ul(sorted(set(_tag(n) for n in notes), key=_note_order))
        else:
            doc.p("None.")

    def _slices_table(self, doc: Doc, coll, g: dict, item: Item):
        rows = []
        for r in coll.results:
            if r.provenance.get("group", {}) != g:
                continue
            axis = r.provenance.get("axis")
            other = "D" if axis == "N" else "N"
            exp = "alpha" if axis == "N" else "beta"
            amp = "A" if axis == "N" else "B"
            fixed = r.provenance.get("fixed", {}).get(other)
            if not r.converged:
                rows.append([f"L({axis})", f"{other} = {fmt(fixed, 4)}", "FAILED", r.failure, "", "", "", "", ""])
                continue
            v = r.diagnostics.get("verdict") or {}
            ex = r.diagnostics.get("excess") or {}
            rows.append([f"L({axis})", f"{other} = {fmt(fixed, 4)}",
                         "not resolved (at its fit's bound)" if at_fitting_bound(r, exp) else
                         with_interval(r.params.get(exp), r.intervals.get(exp)),
                         with_interval(r.params.get("E"), r.intervals.get("E")),
                         with_interval(r.params.get(amp), r.intervals.get(amp), 3),
                         v.get("verdict", "-") + (" (transient flag)" if v.get("transient") and
                                                  v.get("verdict") != "transient" else ""),
                         fmt(r.diagnostics.get("mse_ratio_power_vs_exp"), 3),
                         fmt(v.get("cv_ratio_power_vs_exp"), 3),
                         with_interval(ex.get("alpha"), ex.get("interval"), 3) if ex else "-"])
        doc.table(["slice", "at", "exponent [95%]", "E [95%]", "A or B [95%]", "verdict", "MSE ratio pow/exp",
                   "LOO-CV ratio pow/exp", "excess-loss exponent [95%]"], rows,
                  caption="Every 1-d slice fit: L(N) = E + A N^-alpha at fixed D, L(D) = E + B D^-beta at fixed N "
                          "(offset bounded by an exact floor). " + self._provenance_line(item))
        lines = []
        label = f"[family={g['family']},param={g['param']}]"
        for key, s in coll.summary.items():
            if isinstance(s, dict) and "mean" in s and (key.endswith(label) or "[" not in key):
                lines.append(f"{key.split(' [')[0]}: mean {fmt(s['mean'])} +- {fmt(s.get('std'), 3)} (s.d. over "
                             f"{s['n']} slices), power beats exponential in {s.get('power_beats_exp', '-')}; verdicts "
                             + ", ".join(f"{k} {v}" for k, v in (s.get("verdicts") or {}).items()))
        if lines:
            doc.ul(lines)

    def _params_table(self, doc: Doc, res, item: Item):
        if not res.converged:
            doc.p(f"The fit FAILED: {res.failure}.")
            return
        loose = unresolved_exponents(res)
        rows = [[k, with_interval(v, res.intervals.get(k)) + (" (not resolved)" if k in loose else "")]
                for k, v in res.params.items()]
        # every derived quantity rests on both exponents: with one loose, none of them is a number
        rows += [[k, "not identified" if loose else with_interval(v, res.intervals.get(k))]
                 for k, v in res.derived.items()]
        doc.table(["parameter", "estimate [95%]"], rows,
                  caption=f"{res.diagnostics.get('interval_method', 'no bootstrap')}; objective "
                          f"{fmt(res.objective)}. " + self._provenance_line(item))
        if loose:
            doc.p(f"{' and '.join(loose)} not resolved: the 95% interval reaches 0 or below, or the fit's bound "
                  "(that term is not identified at these sizes), so a, b, G, N_opt and D_opt are not identified either.")

    def _compare_table(self, doc: Doc, item: Item):
        d = item.obj
        summary = d.get("summary", {})
        rows = [[f + (" (best)" if f == d.get("best") else ""),
                 f"{fmt(s.get('train_mse_mean'), 3)} +- {fmt(s.get('train_mse_std'), 2)}",
                 f"{fmt(s.get('val_mse_mean'), 3)} +- {fmt(s.get('val_mse_std'), 2)}", s.get("n_failed", 0),
                 fmt(s.get("seconds_per_fit"), 2)] for f, s in summary.items()]
        st = d.get("settings", {})
        doc.table(["form", "train MSE (mean +- s.d. over splits)", "validation MSE (mean +- s.d.)", "failed splits",
                   "s per fit"], rows,
                  caption=f"{st.get('splits')} random {st.get('n_train')}/{st.get('n_val')} splits of "
                          f"{st.get('n_points')} points. " + self._provenance_line(item))

    def _optimal_section(self, doc: Doc, item: Item, g: dict):
        from scalingkit.optimal.result import budget_cell, identified, law_cell
        from scalingkit.plots import optimal as po

        rep = item.obj
        rows = []
        for r in rep.results:
            if not r.converged:
                rows.append([r.method, "FAILED", r.failure, "", "", "", "", ""])
                continue
            row = [r.method, r.diagnostics.get("n_points", "-")]
            row += [law_cell(r, k) if r.intervals.get(k) is not None or not identified(r, k)
                    or (k == "gamma" and r.diagnostics.get("gamma_failure"))
                    else with_interval(r.params.get(k), None, 3) for k in ("gamma", "a", "b")]
            b0 = r.budgets[0] if r.budgets else None
            row += [budget_cell(r, b0, k) if b0 else "-" for k in ("N_opt", "D_opt", "tokens_per_param")]
            rows.append(row)
        budget = next((r.budgets[0]["C"] for r in rep.results if r.converged and r.budgets), None)
        at = f" at C = {fmt(budget, 3)}" if budget else ""
        doc.table(["method", "points", "gamma [95%]", "a [95%]", "b [95%]", f"N_opt{at}", f"D_opt{at}", "D/N"], rows,
                  caption=f"L_opt = E_C + K C^-gamma, N_opt ~ C^a, D_opt ~ C^b (an interval's end marked (bound) is "
                          f"the fit's bound, not set by the runs); N = {rep.settings.get('n_convention')} "
                          f"parameters, C = 6ND; loss {rep.provenance.get('source', {}).get('loss', '-')}. "
                          + self._provenance_line(item))
        methods_rows = [[r.method, r.diagnostics.get("interval_method", "-")] for r in rep.results if r.converged]
        if methods_rows:
            doc.table(["method", "where its intervals come from"], methods_rows)
        inputs = getattr(self, "inputs", {}).get((g["family"], g["param"]))
        if any(r.converged for r in rep.results):
            doc.figure(po.methods_figure(rep), f"methods-{g['family']}-{g['param']}",
                       "Every compute-optimal method side by side, each estimate with its 95% interval as a band.")
        if inputs is not None:
            doc.figure(po.compute_figure(rep, inputs), f"compute-{g['family']}-{g['param']}",
                       "Loss against compute for every run (coloured by N), the lower envelope and each method's "
                       "L_opt(C).")
            if any(r.converged for r in rep.results):
                doc.figure(po.allocation_figure(rep, inputs), f"allocation-{g['family']}-{g['param']}",
                           "N_opt and D_opt against compute: each method's optima and fitted line; at the budget, "
                           "each method's value with its 95% interval.")
            doc.figure(po.isoflop_figure(rep, inputs), f"isoflop-{g['family']}-{g['param']}",
                       "IsoFLOP profiles: loss against N at fixed compute, parabola and Akima minima.")

    def _slice_notes(self, coll, g) -> list[str]:
        out = []
        for r in coll.results:
            if r.provenance.get("group", {}) != g or not r.converged:
                continue
            axis = r.provenance.get("axis")
            other = "D" if axis == "N" else "N"
            where = f"L({axis}) at {other} = {fmt(r.provenance.get('fixed', {}).get(other), 4)}"
            out += [f"[{where}] {n}" for n in r.diagnostics.get("notes", [])]
            v = r.diagnostics.get("verdict") or {}
            tr = r.diagnostics.get("transient") or {}
            if v.get("transient") or tr.get("fired"):
                span = tr.get("where")
                out.append(f"[{where}] transient: the drop in loss per doubling of {axis} grows"
                           + (f" between {fmt(span[0], 3)} and {fmt(span[1], 3)}" if span else "")
                           + ": the runs sample an escape from a plateau, not a scaling tail")
            if v.get("window_exceeds_interval"):
                out.append(f"[{where}] window: dropping an end point moves the exponent by "
                           f"{fmt(v.get('window_max_shift'), 3)}, more than its interval's half-width "
                           f"{fmt(v.get('interval_half_width'), 3)}")
        return out

    # -- global sections
    def _exponents_section(self, doc: Doc):
        from scalingkit.plots.exponents import exponents_figure, figure_notes, points_from_collection

        doc.h(2, "Fig. 2: exponents against the data's entropy", "fig2")
        points = []
        for g in self.groups:
            pl = self.item("powerlaw", g)
            if pl and pl.obj is not None:
                sub = type(pl.obj)(pl.obj.form, [r for r in pl.obj.results if r.provenance.get("group") == g],
                                   {}, pl.obj.provenance)
                points += points_from_collection(sub, self.ds, pl.obj.provenance)
        if not points:
            doc.p("No 1-d power-law fits to place.")
            return
        doc.figure(exponents_figure(points, [], self.settings.n_convention), "exponents",
                   "Top: alpha (L(N) at fixed D) and beta (L(D) at fixed N) against each family's entropy, the mean "
                   "over slices with +- one s.d. as a band; bottom: every slice's exponent with its 95% interval.")
        rows = [[f"{p.family}/{p.param}", f"{fmt(p.entropy)} ({p.entropy_kind})",
                 f"{fmt(p.alpha['mean'])} +- {fmt(p.alpha['std'], 3)} ({p.alpha['n']} slices)" if p.alpha["n"] else "-",
                 f"{fmt(p.beta['mean'])} +- {fmt(p.beta['std'], 3)} ({p.beta['n']} slices)" if p.beta["n"] else "-"]
                for p in points]
        doc.table(["family/param", "entropy (nats/token)", "alpha: mean +- s.d.", "beta: mean +- s.d."], rows)
        doc.ul(figure_notes(points))

    def _ranks_section(self, doc: Doc):
        from scalingkit.plots.ranks import ranks_figure, store_families

        doc.h(2, "Fig. 3: probability by rank", "fig3")
        families, skipped = store_families(self.store_path)
        if families:
            doc.figure(ranks_figure(families), "ranks", "Unigram and bigram probability against rank, every family "
                                                        "(exact where the family knows its law).")
        doc.ul([f"left out {s}" for s in skipped])

    def _provenance_section(self, doc: Doc):
        doc.h(2, "Provenance of every result", "provenance")
        for i in self.items:
            if i.obj is None:
                continue
            prov = dict(i.provenance or {})
            if i.kind == "optimal":
                prov = {**prov, "settings": i.obj.settings}
            elif i.kind == "compare":
                prov = {**prov, "settings": i.obj.get("settings")}
            doc.details(f"{i.kind} {i.label}: {i.path.name if i.path else '-'} ({i.status})",
                        json.dumps(_jsonable(prov), indent=1))
        doc.details("report settings", json.dumps(_jsonable(asdict(self.settings)), indent=1))


def _machine() -> str:
    """The machine the report was written on: CPU model and core count (a CPU reproduction says what it ran on)."""
    import os
    import platform

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return f"{platform.node() or 'a machine'} ({model}, {cores} cores, {platform.system()})"


def _jsonable(x):
    from scalingkit.fit.base import jsonable

    return jsonable(x)


NOTE_TAGS = (("offset at the floor", ("loss floor", "below the family")),
             ("edge optimum", ("at the edge", "clipped", "smallest or largest", "runs off the grid", "edge of")),
             ("transient", ("transient",)),
             ("failed", ("FAILED", "failed on")))


def _tag(note: str) -> str:
    """A note with what it is about first: offset at the floor, edge optimum, transient, failed (else 'note')."""
    import re

    for tag, keys in NOTE_TAGS:
        if any(k in note for k in keys) or (tag == "edge optimum" and re.search(r"\b[1-9]\d* optima rejected", note)):
            return f"{tag}: {note}"
    return f"note: {note}"


def _note_order(note: str):
    for k, (tag, _) in enumerate(NOTE_TAGS):
        if note.startswith(tag + ":"):
            return (k, note)
    return (len(NOTE_TAGS), note)


def write_report(store_path, out=None, markdown=None, fits_dir=None, settings: ReportSettings | None = None,
                 echo=None) -> ReportOutput:
    """Gather (reuse or compute) every result of the store at `store_path`, draw the figures and write the page to
    `out` (default: report.html beside the store), and a Markdown copy to `markdown` with its figures in a folder
    beside it. Returns the paths, the results used and the time taken."""
    t0 = time.perf_counter()
    rep = Report(store_path, fits_dir, settings, echo)
    rep.gather()
    doc = rep.build()
    out = Path(out) if out else Path(store_path).parent / "report.html"
    text = doc.html(f"scalingkit report: {Path(store_path).name}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        md_path = None
        if markdown:
            md_path = Path(markdown)
            folder = md_path.with_name(md_path.stem + "-figures")
            md_path.parent.mkdir(parents=True, exist_ok=True)
            md_path.write_text(doc.markdown(folder, folder.name))
    except OSError as exc:
        raise UserError(f"cannot write the report: {exc.strerror or exc} ({exc.filename})") from None
    return ReportOutput(out, md_path, rep.items, time.perf_counter() - t0, len(text.encode()))
