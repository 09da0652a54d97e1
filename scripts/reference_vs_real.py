"""The reference response's NanoAOD fields beyond the flows' first targets, against real NanoAOD.

    python scripts/reference_vs_real.py [--out docs/figures/reference_vs_real] [--seed 1]
        [--data-dir ../shared/data/real-nanoaod]

The reference detector response (``flashsim_coffea.reference.respond``) is drawn on the Gen
branches of the bundled samples ``flashsim_coffea/samples/dy.root`` and ``ttbar.root`` (their
stored Jet_/Muon_ branches are not used) and compared with the real NanoAOD test files:
DY with ``nano_dy.root`` (Run-2, 40 events, CHS jets), tt̄ with ``nano_tt_v12.root`` (Run-3
NanoAOD v12, 200 events, PUPPI jets). Different Gen events on the two sides: these are
comparisons of distributions and dependences, not event by event.

Fields: jets ``rawFactor``, ``chHEF``, ``neHEF``, ``chEmEF``, ``neEmEF``, ``btagDeepFlavCvL``,
``btagDeepFlavCvB`` (the Run-2 file has no CvL/CvB: they are derived from its btagDeepFlavC/B
with :func:`flashsim_coffea.nanoaod.derived.charm_vs_light` / ``charm_vs_b``, NanoAOD's
definition); muons ``tkRelIso``, ``miniPFRelIso_all``, ``highPtId``, ``tightId``, ``pfIsoId``,
``tightCharge``, ``genPartFlav``. All jets with pT > 15 GeV and all muons are used (pile-up
jets and unmatched muons included, as stored).

Output (``--out``): eight PNG figures (marginals per process and object; rawFactor quantiles
vs pT and |η|; mean energy fractions (jets with muEF < 0.5) vs |η| and hadron flavour; CvL
and CvB by hadron flavour; muon isolation medians, ID fractions and pfIsoId by promptness,
prompt = genPartFlav 1) and ``summary.md``, the table of the numbers, also printed to stdout.
Each figure carries the command that reproduces it and the CPU model. About a minute on one
core (the figures take most of it). Real-file uncertainties: bootstrap (medians, quantiles) or binomial /
standard error of the mean; the real samples are small (tens to ~1500 objects), so only
differences well outside them mean anything.
"""

from __future__ import annotations

import argparse
import platform
import shlex
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np

from flashsim_coffea.nanoaod.derived import charm_vs_b, charm_vs_light
from flashsim_coffea.plotting import histogram, normalized, project_label, use_style
from flashsim_coffea.reference import respond

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("docs/figures/reference_vs_real")
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "real-nanoaod"
GEN_FILTER = ["GenJet_*", "GenPart_*", "run", "luminosityBlock", "event", "Pileup_*"]

#: binning of the dependences
JET_PT_BINS = np.array([15, 20, 30, 50, 100, 300], dtype=float)
JET_ETA_BINS = np.array([0, 1.3, 2.5, 3, 5], dtype=float)
MUON_PT_BINS = np.array([3, 10, 20, 35, 60, 300], dtype=float)
FLAVOURS = (0, 4, 5)
FRACTIONS = ("chHEF", "neHEF", "chEmEF", "neEmEF")
FRACTION_COLORS = {"chHEF": "tab:red", "neHEF": "tab:green", "chEmEF": "tab:purple", "neEmEF": "tab:blue"}
FLAV_CODES = (0, 1, 15, 5, 4, 3)
FLAV_NAMES = ("unm. 0", "prompt 1", "τ 15", "b 5", "c 4", "light 3")
REF_COLOR, REAL_COLOR = "tab:blue", "black"


@dataclass(frozen=True)
class Process:
    key: str
    title: str  # right-hand figure label
    sample: str  # bundled Gen sample
    real: str  # real NanoAOD file
    real_label: str  # legend name of the real file


PROCESSES = (
    Process("dy", "DY", "dy.root", "nano_dy.root", "real Run-2 DY (CHS)"),
    Process("tt", r"$t\bar{t}$", "ttbar.root", "nano_tt_v12.root", r"real Run-3 $t\bar{t}$ v12 (PUPPI)"),
)
#: jets of the energy-fraction dependences: muEF below this (the bundled DY sample is Z→μμ, its
#: GenJets of the Z muons give 32 % of its jets muEF > 0.5; the real DY file has 8 %)
MUEF_MAX = 0.5


# --------------------------------------------------------------------------- inputs
def _flat(a) -> np.ndarray:
    return ak.to_numpy(ak.flatten(a)).astype(np.float64)


def jet_table(b: dict) -> dict[str, np.ndarray]:
    """Flat per-jet quantities (pT > 15 GeV) from Jet_* branches (real or reference)."""
    t = {"pt": _flat(b["Jet_pt"]), "abseta": np.abs(_flat(b["Jet_eta"])), "muEF": _flat(b["Jet_muEF"]),
         "rawFactor": _flat(b["Jet_rawFactor"]), "hadronFlavour": _flat(b["Jet_hadronFlavour"])}
    for f in FRACTIONS:
        t[f] = _flat(b[f"Jet_{f}"])
    if "Jet_btagDeepFlavCvL" in b:
        t["CvL"], t["CvB"] = _flat(b["Jet_btagDeepFlavCvL"]), _flat(b["Jet_btagDeepFlavCvB"])
    else:  # Run-2 file: derived from DeepFlavC/B as NanoAOD defines them
        c, bb = _flat(b["Jet_btagDeepFlavC"]), _flat(b["Jet_btagDeepFlavB"])
        t["CvL"], t["CvB"] = charm_vs_light(c, bb).astype(np.float64), charm_vs_b(c, bb).astype(np.float64)
    t["sum-1"] = t["chHEF"] + t["neHEF"] + t["chEmEF"] + t["neEmEF"] + t["muEF"] - 1.0
    keep = t["pt"] > 15.0
    return {k: v[keep] for k, v in t.items()}


def muon_table(b: dict) -> dict[str, np.ndarray]:
    """Flat per-muon quantities from Muon_* branches (real or reference)."""
    names = ("pt", "tkRelIso", "miniPFRelIso_all", "highPtId", "tightId", "pfIsoId", "tightCharge", "genPartFlav")
    t = {k: _flat(b[f"Muon_{k}"]) for k in names}
    t["prompt"] = t["genPartFlav"] == 1
    return t


def load(proc: Process, data_dir: Path, seed: int) -> dict:
    """{"ref": (jets, muons, n events), "real": (jets, muons, n events)} of one process."""
    import uproot

    gen = uproot.open(ROOT / "flashsim_coffea" / "samples" / proc.sample)["Events"].arrays(
        filter_name=GEN_FILTER, how=dict)
    ref = respond(gen, seed=seed, source=proc.sample)
    real = uproot.open(data_dir / proc.real)["Events"].arrays(filter_name=["Jet_*", "Muon_*"], how=dict)
    return {"ref": (jet_table(ref), muon_table(ref), len(ref["Jet_pt"])),
            "real": (jet_table(real), muon_table(real), len(real["Jet_pt"]))}


# --------------------------------------------------------------------------- statistics
_RNG = np.random.default_rng(12345)


def quantiles(x: np.ndarray, qs=(0.16, 0.5, 0.84)) -> np.ndarray:
    return np.quantile(x, qs) if x.size else np.full(len(qs), np.nan)


def boot_median_err(x: np.ndarray, n: int = 400) -> tuple[float, float]:
    """68 % bootstrap interval of the median of ``x`` (NaN for fewer than 2 values)."""
    if x.size < 2:
        return np.nan, np.nan
    meds = np.median(x[_RNG.integers(0, x.size, (n, x.size))], axis=1)
    return tuple(np.quantile(meds, (0.16, 0.84)))


def binned(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> list[np.ndarray]:
    """Values of ``y`` in each bin of ``x``."""
    i = np.digitize(x, edges) - 1
    return [y[i == k] for k in range(len(edges) - 1)]


def mean_err(y: np.ndarray) -> tuple[float, float]:
    if y.size == 0:
        return np.nan, np.nan
    return float(y.mean()), float(y.std(ddof=1) / np.sqrt(y.size)) if y.size > 1 else np.nan


def frac_err(sel: np.ndarray) -> tuple[float, float]:
    n = sel.size
    if n == 0:
        return np.nan, np.nan
    p = sel.mean()
    return float(p), float(np.sqrt(max(p * (1 - p), 1.0 / n) / n))  # ≥ 1/n: not zero for 0 or n of n


# --------------------------------------------------------------------------- numbers
def summarize(data: dict) -> dict:
    """All the numbers of the figures and the table: {process: {side: {...}}}."""
    out: dict = {}
    for key, sides in data.items():
        out[key] = {}
        for side, (j, m, nev) in sides.items():
            s: dict = {"events": nev, "jets": j["pt"].size, "muons": m["pt"].size}
            # jet marginals
            tag = (j["abseta"] < 2.5)
            for f in ("rawFactor", *FRACTIONS, "CvL", "CvB"):
                x = j[f][tag & (j[f] >= 0)] if f in ("CvL", "CvB") else j[f]
                s[f"jet {f}"] = (x.mean(), np.median(x), (x == 0).mean(), x.size)
            s["jet |sum-1|<0.02"] = (np.abs(j["sum-1"]) < 0.02).mean()
            s["jet muEF>0.5"] = (j["muEF"] > 0.5).mean()
            s["jet chEmEF>0.5"] = (j["chEmEF"] > 0.5).mean()
            s["ctag_flav"] = {}
            for h in FLAVOURS:
                sel = tag & (j["hadronFlavour"] == h)
                cvl, cvb = j["CvL"][sel], j["CvB"][sel]
                cvl, cvb = cvl[cvl >= 0], cvb[cvb >= 0]
                s["ctag_flav"][h] = (np.median(cvl) if cvl.size else np.nan, np.median(cvb) if cvb.size else np.nan, cvl.size)
            # rawFactor quantiles
            s["rf_pt"] = [(quantiles(y), y.size) for y in binned(j["pt"], j["rawFactor"], JET_PT_BINS)]
            s["rf_eta"] = [(quantiles(y), y.size) for y in binned(j["abseta"], j["rawFactor"], JET_ETA_BINS)]
            # mean energy fractions
            nomu = j["muEF"] < MUEF_MAX
            s["ef_eta"] = [[mean_err(y) for y in binned(j["abseta"][nomu], j[f][nomu], JET_ETA_BINS)] for f in FRACTIONS]
            s["ef_eta_n"] = [y.size for y in binned(j["abseta"][nomu], j["pt"][nomu], JET_ETA_BINS)]
            s["zero_eta"] = [((y == 0).mean() if y.size else np.nan, (z == 0).mean() if z.size else np.nan)
                             for y, z in zip(binned(j["abseta"], j["neHEF"], JET_ETA_BINS),
                                             binned(j["abseta"], j["neEmEF"], JET_ETA_BINS))]
            sel = nomu & (j["abseta"] < 2.5)
            s["ef_flav"] = [[mean_err(j[f][sel & (j["hadronFlavour"] == h)]) for h in FLAVOURS] for f in FRACTIONS]
            s["ef_flav_n"] = [int((sel & (j["hadronFlavour"] == h)).sum()) for h in FLAVOURS]
            # muon marginals
            for f in ("tkRelIso", "miniPFRelIso_all"):
                x = m[f]
                s[f"mu {f}"] = (x.mean() if x.size else np.nan, np.median(x) if x.size else np.nan,
                                (x == 0).mean() if x.size else np.nan, x.size)
            s["mu highPtId"] = [frac_err(m["highPtId"] == k)[0] for k in (0, 1, 2)]
            s["mu tightId"] = frac_err(m["tightId"] > 0)[0]
            s["mu tightCharge2"] = frac_err(m["tightCharge"] == 2)[0]
            s["mu genPartFlav"] = [frac_err(m["genPartFlav"] == c)[0] for c in FLAV_CODES]
            s["mu tightId->hp2"] = frac_err(m["highPtId"][m["tightId"] > 0] == 2)[0]
            low = m["pt"] < 10
            s["mu unmatched pt<10"] = (frac_err(m["genPartFlav"][low] == 0)[0], int(low.sum()))
            s["mu tightId matched pt<10"] = frac_err(m["tightId"][low & (m["genPartFlav"] != 0)] > 0)[0]
            # muon dependences
            for f in ("tkRelIso", "miniPFRelIso_all"):
                for lab, sel in (("prompt", m["prompt"]), ("nonprompt", ~m["prompt"])):
                    ys = binned(m["pt"][sel], m[f][sel], MUON_PT_BINS)
                    s[f"{f} {lab}"] = [(np.median(y) if y.size else np.nan, *boot_median_err(y), y.size) for y in ys]
            ids = {"highPtId=0": m["highPtId"] == 0, "highPtId=1": m["highPtId"] == 1,
                   "highPtId=2": m["highPtId"] == 2, "tightId": m["tightId"] > 0}
            s["ids"] = {k: [frac_err(v) for v in binned(m["pt"], v, MUON_PT_BINS)] for k, v in ids.items()}
            s["ids_n"] = [y.size for y in binned(m["pt"], m["pt"], MUON_PT_BINS)]
            for lab, sel in (("prompt", m["prompt"]), ("nonprompt", ~m["prompt"])):
                x = m["pfIsoId"][sel]
                s[f"pfIsoId {lab}"] = (np.bincount(x.astype(int), minlength=7)[:7] / max(x.size, 1), x.size)
            out[key][side] = s
    return out


def _f(x, fmt=".3f") -> str:
    return "–" if x is None or not np.isfinite(x) else format(x, fmt)


def _pct(x) -> str:
    return "–" if not np.isfinite(x) else f"{100 * x:.0f} %"


def _bin(edges, k, unit="") -> str:
    return f"{edges[k]:g}–{edges[k + 1]:g}{unit}"


def table(summary: dict) -> str:
    """The Markdown table of the numbers (reference vs real, per process)."""
    keys = list(summary)
    cols = [f"{k} {side}" for k in keys for side in ("ref", "real")]
    head = "| {} | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols) + "\n"
    L: list[str] = []

    def block(title, first, rows, note=""):
        L.append(f"\n**{title}**{(' ' + note) if note else ''}\n\n" + head.format(first))
        for name, cells in rows:
            L.append(f"| {name} | " + " | ".join(cells) + " |\n")

    def each(fn):
        return [fn(summary[k][side]) for k in keys for side in ("ref", "real")]

    block("Sample sizes", "", [("events", each(lambda s: str(s["events"]))), ("jets (pT > 15)", each(lambda s: str(s["jets"]))),
                               ("muons", each(lambda s: str(s["muons"])))])
    rows = [(f, each(lambda s, f=f: f"{_f(s['jet ' + f][0])} / {_f(s['jet ' + f][1])} / {100 * s['jet ' + f][2]:.0f}%"))
            for f in ("rawFactor", *FRACTIONS, "CvL", "CvB")]
    rows.append(("\\|Σ fractions − 1\\| < 0.02", each(lambda s: f"{100 * s['jet |sum-1|<0.02']:.1f}%")))
    rows.append(("muEF > 0.5 (muon jets)", each(lambda s: f"{100 * s['jet muEF>0.5']:.1f}%")))
    rows.append(("chEmEF > 0.5 (electron jets)", each(lambda s: f"{100 * s['jet chEmEF>0.5']:.1f}%")))
    block("Jet marginals", "field", rows, "(mean / median / share = 0; CvL, CvB: \\|η\\| < 2.5, defined)")
    block("Jet rawFactor vs pT", "pT [GeV]", [(_bin(JET_PT_BINS, k), each(
        lambda s, k=k: f"{_f(s['rf_pt'][k][0][1])} [{_f(s['rf_pt'][k][0][0], '.2f')}, {_f(s['rf_pt'][k][0][2], '.2f')}] ({s['rf_pt'][k][1]})"))
        for k in range(len(JET_PT_BINS) - 1)], "(median [16 %, 84 %] (n jets))")
    block("Jet rawFactor vs \\|η\\|", "\\|η\\|", [(_bin(JET_ETA_BINS, k), each(
        lambda s, k=k: f"{_f(s['rf_eta'][k][0][1])} [{_f(s['rf_eta'][k][0][0], '.2f')}, {_f(s['rf_eta'][k][0][2], '.2f')}] ({s['rf_eta'][k][1]})"))
        for k in range(len(JET_ETA_BINS) - 1)], "(median [16 %, 84 %] (n jets))")
    block("Jet CvL / CvB medians by hadronFlavour", "flavour", [(str(h), each(
        lambda s, h=h: f"{_f(s['ctag_flav'][h][0])} / {_f(s['ctag_flav'][h][1])} ({s['ctag_flav'][h][2]})"))
        for h in FLAVOURS], "(\\|η\\| < 2.5, defined (n jets))")
    block("Jet mean energy fractions vs \\|η\\|", "\\|η\\|", [(_bin(JET_ETA_BINS, k), each(
        lambda s, k=k: "/".join(_f(s["ef_eta"][i][k][0], ".2f") for i in range(4)) + f" ({s['ef_eta_n'][k]})"))
        for k in range(len(JET_ETA_BINS) - 1)], f"(muEF < {MUEF_MAX:g}; chHEF/neHEF/chEmEF/neEmEF (n jets))")
    block("Jet zero shares vs \\|η\\|", "\\|η\\|", [(_bin(JET_ETA_BINS, k), each(
        lambda s, k=k: f"{100 * s['zero_eta'][k][0]:.0f}% / {100 * s['zero_eta'][k][1]:.0f}%"))
        for k in range(len(JET_ETA_BINS) - 1)], "(all jets; share with neHEF = 0 / neEmEF = 0)")
    block("Jet mean energy fractions vs hadronFlavour", "flavour", [(str(h), each(
        lambda s, k=k: "/".join(_f(s["ef_flav"][i][k][0], ".2f") for i in range(4)) + f" ({s['ef_flav_n'][k]})"))
        for k, h in enumerate(FLAVOURS)], f"(\\|η\\| < 2.5, muEF < {MUEF_MAX:g}; chHEF/neHEF/chEmEF/neEmEF (n jets))")
    rows = [(f, each(lambda s, f=f: f"{_f(s['mu ' + f][0])} / {_f(s['mu ' + f][1])} / {100 * s['mu ' + f][2]:.0f}%"))
            for f in ("tkRelIso", "miniPFRelIso_all")]
    rows += [("highPtId 0/1/2", each(lambda s: "/".join(f"{100 * p:.0f}" for p in s["mu highPtId"]) + " %")),
             ("tightId", each(lambda s: f"{100 * s['mu tightId']:.0f} %")),
             ("highPtId = 2 \\| tightId", each(lambda s: f"{100 * s['mu tightId->hp2']:.0f} %")),
             ("tightCharge = 2", each(lambda s: f"{100 * s['mu tightCharge2']:.1f} %")),
             ("unmatched (genPartFlav 0), pT < 10", each(
                 lambda s: f"{100 * s['mu unmatched pt<10'][0]:.0f} % ({s['mu unmatched pt<10'][1]})"
                 if s["mu unmatched pt<10"][1] else "– (0)")),
             ("tightId, matched, pT < 10", each(lambda s: _pct(s["mu tightId matched pt<10"]))),
             ("genPartFlav " + "/".join(str(c) for c in FLAV_CODES),
              each(lambda s: "/".join(f"{100 * p:.0f}" for p in s["mu genPartFlav"]) + " %"))]
    block("Muon marginals", "field", rows, "(isolations: mean / median / share = 0)")
    for f in ("tkRelIso", "miniPFRelIso_all"):
        block(f"Muon {f} median vs pT", "pT [GeV]", [(_bin(MUON_PT_BINS, k), each(
            lambda s, k=k: f"{_f(s[f + ' prompt'][k][0])} ({s[f + ' prompt'][k][3]}) / {_f(s[f + ' nonprompt'][k][0])} ({s[f + ' nonprompt'][k][3]})"))
            for k in range(len(MUON_PT_BINS) - 1)], "(prompt (n) / non-prompt (n); prompt = genPartFlav 1)")
    block("Muon ID fractions vs pT", "pT [GeV]", [(_bin(MUON_PT_BINS, k), each(
        lambda s, k=k: "/".join(f"{100 * s['ids'][i][k][0]:.0f}" if np.isfinite(s["ids"][i][k][0]) else "–"
                                for i in ("highPtId=0", "highPtId=1", "highPtId=2", "tightId")) + f" ({s['ids_n'][k]})"))
        for k in range(len(MUON_PT_BINS) - 1)], "(% highPtId 0/1/2 / % tightId (n muons))")
    block("Muon pfIsoId distribution", "", [(lab, each(
        lambda s, lab=lab: " ".join(f"{100 * p:.0f}" for p in s[f"pfIsoId {lab}"][0]) + f" ({s[f'pfIsoId {lab}'][1]})"))
        for lab in ("prompt", "nonprompt")], "(% with pfIsoId = 0 1 2 3 4 5 6 (n muons))")
    return "".join(L)


# --------------------------------------------------------------------------- figures
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


class Figures:
    def __init__(self, out: Path, command: str, dpi: int):
        self.out, self.dpi = out, dpi
        self.footer = f"reproduce: {command}   |   CPU: {cpu_model()}"

    def new(self, nrows: int, ncols: int, w: float = 7.5, h: float = 6.5):
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
        return fig, axes

    def save(self, fig, name: str) -> Path:
        """Footer, then PNG with a 96-colour palette (same look, a third of the size)."""
        import io

        from PIL import Image

        fig.tight_layout(rect=(0, 0.035, 1, 1))
        fig.text(0.005, 0.004, self.footer, fontsize=15, color="dimgray", ha="left", va="bottom")
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=self.dpi, bbox_inches="tight")
        plt.close(fig)
        buf.seek(0)
        path = self.out / name
        Image.open(buf).convert("RGB").quantize(colors=96).save(path, optimize=True)
        return path


def _legend(ax, **kw):
    kw.setdefault("title_fontsize", 13)
    ax.legend(fontsize=14, frameon=False, **kw)


def _overlay(ax, x_ref, x_real, edges, xlabel, proc: Process, what: str, logy=False, ticks=None):
    """Normalised reference histogram (line) and real one (points, Poisson errors)."""
    import mplhep as hep

    r = normalized(histogram(x_ref, edges, f"reference ({x_ref.size} {what})", color=REF_COLOR))
    d = normalized(histogram(x_real, edges, f"{proc.real_label} ({x_real.size} {what})", color=REAL_COLOR))
    hep.histplot(r.values, edges, ax=ax, label=r.label, color=REF_COLOR, lw=2)
    hep.histplot(d.values, edges, yerr=d.errors, histtype="errorbar", ax=ax, label=d.label, color=REAL_COLOR,
                 markersize=5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction")
    top = max(np.max(r.values, initial=0), np.max(d.values + np.nan_to_num(d.errors), initial=0))
    if logy:
        ax.set_yscale("log")
        pos = np.concatenate([r.values[r.values > 0], d.values[d.values > 0]])
        ax.set_ylim(0.3 * pos.min() if pos.size else 1e-4, 60 * top if top > 0 else 1)
    else:
        ax.set_ylim(0, 1.45 * top if top > 0 else 1)
    if ticks is not None:
        ax.set_xticks(np.arange(len(ticks)))
        ax.set_xticklabels(ticks, fontsize=15)
    _legend(ax)
    project_label(ax, proc.title, fontsize=13, com=None)


JET_MARGINALS = (  # field, x label, edges, log y
    ("rawFactor", "Jet rawFactor", np.linspace(-1.0, 0.6, 33), True),
    ("chHEF", "Jet chHEF", np.linspace(0, 1, 26), False),
    ("neHEF", "Jet neHEF", np.linspace(0, 1, 26), True),
    ("chEmEF", "Jet chEmEF", np.linspace(0, 1, 26), True),
    ("neEmEF", "Jet neEmEF", np.linspace(0, 1, 26), False),
    ("CvL", "Jet btagDeepFlavCvL (|η|<2.5)", np.linspace(0, 1, 21), True),
    ("CvB", "Jet btagDeepFlavCvB (|η|<2.5)", np.linspace(0, 1, 21), False),
    ("sum-1", "Jet Σ(ch,ne)(H,Em)EF + muEF − 1", np.linspace(-0.03, 0.03, 25), True),
    ("pt", "Jet $p_T$ [GeV] (context)", np.geomspace(15, 500, 25), True),
)

MUON_MARGINALS = (
    ("tkRelIso", "Muon tkRelIso (last bin: ≥ 1.92)", np.linspace(0, 2, 26), True, None),
    ("miniPFRelIso_all", "Muon miniPFRelIso_all (last bin: ≥ 1.92)", np.linspace(0, 2, 26), True, None),
    ("highPtId", "Muon highPtId", np.arange(-0.5, 3), False, ["0", "1", "2"]),
    ("tightId", "Muon tightId", np.arange(-0.5, 2), False, ["false", "true"]),
    ("pfIsoId", "Muon pfIsoId", np.arange(-0.5, 7), True, [str(i) for i in range(7)]),
    ("tightCharge", "Muon tightCharge", np.arange(-0.5, 2), True, ["0", "2"]),
    ("genPartFlav", "Muon genPartFlav", np.arange(-0.5, 6), True, list(FLAV_NAMES)),
    ("pt", "Muon $p_T$ [GeV] (context)", np.geomspace(3, 300, 21), True, None),
)


def fig_marginals(figs: Figures, proc: Process, sides: dict) -> list[Path]:
    (jr, mr, _), (jd, md, _) = sides["ref"], sides["real"]
    paths = []
    fig, axes = figs.new(3, 3)
    for ax, (f, xl, edges, logy) in zip(axes.flat, JET_MARGINALS):
        a, b = jr[f], jd[f]
        if f in ("CvL", "CvB"):
            a, b = a[(jr["abseta"] < 2.5) & (a >= 0)], b[(jd["abseta"] < 2.5) & (b >= 0)]
        _overlay(ax, a, b, edges, xl, proc, "jets", logy)
    paths.append(figs.save(fig, f"jets_marginals_{proc.key}.png"))
    fig, axes = figs.new(2, 4)
    for ax, (f, xl, edges, logy, ticks) in zip(axes.flat, MUON_MARGINALS):
        a, b = mr[f], md[f]
        if f == "tightCharge":
            a, b = a / 2, b / 2
        if f == "genPartFlav":
            a = np.array([FLAV_CODES.index(int(v)) for v in a], dtype=float)
            b = np.array([FLAV_CODES.index(int(v)) for v in b], dtype=float)
        _overlay(ax, a, b, edges, xl, proc, "muons", logy, ticks)
        if f == "pt":
            ax.set_xscale("log")
    paths.append(figs.save(fig, f"muons_marginals_{proc.key}.png"))
    return paths


def _centres(edges, log=False):
    return np.sqrt(edges[1:] * edges[:-1]) if log else 0.5 * (edges[1:] + edges[:-1])


def fig_rawfactor(figs: Figures, summary: dict, data: dict) -> Path:
    fig, axes = figs.new(len(PROCESSES), 2, w=10)
    for row, proc in zip(axes, PROCESSES):
        for ax, (key, edges, xl, log) in zip(row, (("pt", JET_PT_BINS, "Jet $p_T$ [GeV]", True),
                                                   ("eta", JET_ETA_BINS, "Jet |η|", False))):
            x = _centres(edges, log)
            ref = np.array([q for q, _ in summary[proc.key]["ref"][f"rf_{key}"]])
            real = np.array([q for q, _ in summary[proc.key]["real"][f"rf_{key}"]])
            n_real = [n for _, n in summary[proc.key]["real"][f"rf_{key}"]]
            ax.fill_between(x, ref[:, 0], ref[:, 2], color=REF_COLOR, alpha=0.25, label="reference 16–84 %")
            ax.plot(x, ref[:, 1], "-o", color=REF_COLOR, lw=2, ms=5,
                    label=f"reference median ({summary[proc.key]['ref']['jets']} jets)")
            jd = data[proc.key]["real"][0]
            var = jd["pt"] if key == "pt" else jd["abseta"]
            errs = np.array([boot_median_err(y) for y in binned(var, jd["rawFactor"], edges)])
            ax.errorbar(x, real[:, 1], yerr=[np.nan_to_num(real[:, 1] - errs[:, 0]), np.nan_to_num(errs[:, 1] - real[:, 1])],
                        fmt="o", color=REAL_COLOR, ms=7, label=f"real median ({sum(n_real)} jets, bootstrap err.)")
            ax.plot(x, real[:, 0], "_", color=REAL_COLOR, ms=18, mew=2)
            ax.plot(x, real[:, 2], "_", color=REAL_COLOR, ms=18, mew=2, label="real 16 % / 84 %")
            for xi, n in zip(x, n_real):
                ax.annotate(f"n={n}", (xi, 0.02), xycoords=("data", "axes fraction"), ha="center", fontsize=13)
            if log:
                from matplotlib.ticker import NullFormatter

                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xticks(edges)
            ax.set_xticklabels([f"{e:g}" for e in edges])
            ax.set_xlim(edges[0], edges[-1])
            ax.axhline(0, color="gray", lw=0.8, ls=":")
            ax.set_xlabel(xl)
            ax.set_ylabel("Jet rawFactor")
            lo, hi = np.nanmin([ref[:, 0].min(), np.nanmin(real[:, 0])]), np.nanmax([ref[:, 2].max(), np.nanmax(real[:, 2])])
            ax.set_ylim(lo - 0.15 * (hi - lo), hi + 0.8 * (hi - lo))
            _legend(ax, title=f"rawFactor = 1 − $p_T^{{raw}}/p_T$; {proc.real_label}", ncol=2, loc="upper center")
            project_label(ax, proc.title, fontsize=13, com=None)
    return figs.save(fig, "jets_rawfactor.png")


def fig_fractions(figs: Figures, summary: dict) -> Path:
    fig, axes = figs.new(len(PROCESSES), 2)
    for row, proc in zip(axes, PROCESSES):
        s_ref, s_real = summary[proc.key]["ref"], summary[proc.key]["real"]
        ax = row[0]
        x = _centres(JET_ETA_BINS)
        for i, f in enumerate(FRACTIONS):
            c = FRACTION_COLORS[f]
            ref = np.array([v for v, _ in s_ref["ef_eta"][i]])
            real = np.array(s_real["ef_eta"][i])
            ax.stairs(ref, JET_ETA_BINS, color=c, lw=2, label=f"{f} reference")
            ax.errorbar(x + (i - 1.5) * 0.05, real[:, 0], yerr=np.nan_to_num(real[:, 1]), fmt="o", color=c, ms=6,
                        label=f"{f} real")
        ax.set_xlabel("Jet |η|")
        ax.set_ylabel("mean energy fraction")
        ax.set_xlim(0, 5)
        ax.set_ylim(0, 1.7)
        _legend(ax, ncol=2, loc="upper center", bbox_to_anchor=(0.5, 0.93),
                title=f"muEF < {MUEF_MAX:g}; lines: reference ({sum(s_ref['ef_eta_n'])} jets)\n"
                      f"points: {proc.real_label} ({sum(s_real['ef_eta_n'])} jets:\n"
                      f"{' / '.join(str(n) for n in s_real['ef_eta_n'])} per |η| bin)")
        project_label(ax, proc.title, fontsize=13, com=None)
        ax = row[1]
        x = np.arange(len(FLAVOURS), dtype=float)
        for i, f in enumerate(FRACTIONS):
            c = FRACTION_COLORS[f]
            ref = np.array([v for v, _ in s_ref["ef_flav"][i]])
            real = np.array(s_real["ef_flav"][i])
            ax.hlines(ref, x - 0.35, x + 0.35, color=c, lw=2, label=f"{f} reference")
            ax.errorbar(x + (i - 1.5) * 0.08, real[:, 0], yerr=np.nan_to_num(real[:, 1]), fmt="o", color=c, ms=6,
                        label=f"{f} real")
        ax.set_xticks(x)
        ax.set_xticklabels([f"{FLAVOUR_NAMES[h]} ({h})\nreal n={n}" for h, n in zip(FLAVOURS, s_real["ef_flav_n"])],
                           fontsize=16)
        ax.set_xlim(-0.5, len(FLAVOURS) - 0.5)
        ax.set_xlabel(f"Jet hadronFlavour (|η| < 2.5, muEF < {MUEF_MAX:g})")
        ax.set_ylabel("mean energy fraction")
        ax.set_ylim(0, 1.7)
        _legend(ax, ncol=2, loc="upper center", bbox_to_anchor=(0.5, 0.93))
        project_label(ax, proc.title, fontsize=13, com=None)
    return figs.save(fig, "jets_energy_fractions.png")


FLAVOUR_COLORS = {0: "tab:blue", 4: "tab:green", 5: "tab:red"}
FLAVOUR_NAMES = {0: "light", 4: "c", 5: "b"}


def fig_ctag(figs: Figures, data: dict) -> Path:
    """CvL and CvB by hadron flavour (|η| < 2.5, defined values): normalised, reference vs real."""
    import mplhep as hep

    fig, axes = figs.new(len(PROCESSES), 2)
    edges = np.linspace(0, 1, 21)
    for row, proc in zip(axes, PROCESSES):
        for ax, f in zip(row, ("CvL", "CvB")):
            top = 0.0
            for h in FLAVOURS:
                for side in ("ref", "real"):
                    j = data[proc.key][side][0]
                    x = j[f][(j["abseta"] < 2.5) & (j["hadronFlavour"] == h) & (j[f] >= 0)]
                    if x.size == 0:
                        continue
                    name = "reference" if side == "ref" else proc.real_label
                    hs = normalized(histogram(x, edges, f"{FLAVOUR_NAMES[h]} ({h}) {name} ({x.size} jets)"))
                    if side == "ref":
                        hep.histplot(hs.values, edges, ax=ax, label=hs.label, color=FLAVOUR_COLORS[h], lw=2)
                    else:
                        hep.histplot(hs.values, edges, yerr=hs.errors, histtype="errorbar", ax=ax, label=hs.label,
                                     color=FLAVOUR_COLORS[h], markersize=5)
                    top = max(top, hs.values.max())
            ax.set_yscale("log")
            ax.set_ylim(1e-3, 300 * top)
            ax.set_xlabel(f"Jet btagDeepFlav{f} (|η| < 2.5)")
            ax.set_ylabel("fraction")
            _legend(ax, ncol=1)
            project_label(ax, proc.title, fontsize=13, com=None)
    return figs.save(fig, "jets_ctag_flavour.png")


def fig_muons(figs: Figures, summary: dict) -> Path:
    fig, axes = figs.new(len(PROCESSES), 4)
    x = _centres(MUON_PT_BINS, log=True)
    for row, proc in zip(axes, PROCESSES):
        s_ref, s_real = summary[proc.key]["ref"], summary[proc.key]["real"]
        for ax, f in zip(row[:2], ("tkRelIso", "miniPFRelIso_all")):
            for lab, c in (("prompt", "tab:blue"), ("nonprompt", "tab:red")):
                ref = np.array(s_ref[f"{f} {lab}"], dtype=float)
                real = np.array(s_real[f"{f} {lab}"], dtype=float)
                name = "prompt (1)" if lab == "prompt" else "non-prompt (≠1)"
                ax.plot(x, ref[:, 0], "-", color=c, lw=2, label=f"{name} reference ({int(ref[:, 3].sum())} μ)")
                ax.errorbar(x, real[:, 0], yerr=[np.nan_to_num(real[:, 0] - real[:, 1]), np.nan_to_num(real[:, 2] - real[:, 0])],
                            fmt="o", color=c, ms=7, label=f"{name} real ({int(real[:, 3].sum())} μ)")
            ax.set_xscale("log")
            ax.set_yscale("symlog", linthresh=0.01)
            ax.set_ylim(0, 200)
            ax.set_xlabel("Muon $p_T$ [GeV]")
            ax.set_ylabel(f"median {f}")
            _legend(ax, title=proc.real_label, title_fontsize=13)
        ax = row[2]
        for k, c in (("highPtId=0", "tab:gray"), ("highPtId=1", "tab:orange"), ("highPtId=2", "tab:green"),
                     ("tightId", "tab:purple")):
            ref = np.array(s_ref["ids"][k])
            real = np.array(s_real["ids"][k])
            ax.plot(x, ref[:, 0], "-", color=c, lw=2, label=f"{k} reference")
            ax.errorbar(x * (1.03 if k == "tightId" else 1), real[:, 0], yerr=np.nan_to_num(real[:, 1]), fmt="o",
                        color=c, ms=6, label=f"{k} real")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.9)
        ax.set_xlabel("Muon $p_T$ [GeV]")
        ax.set_ylabel("fraction of muons")
        _legend(ax, ncol=2, loc="upper center", bbox_to_anchor=(0.5, 0.93),
                title=f"lines: reference ({s_ref['muons']} μ), points: real ({s_real['muons']} μ:\n"
                      f"{' / '.join(str(n) for n in s_real['ids_n'])} per $p_T$ bin)")
        ax = row[3]
        edges = np.arange(-0.5, 7)
        for lab, c in (("prompt", "tab:blue"), ("nonprompt", "tab:red")):
            pr, nr = s_ref[f"pfIsoId {lab}"]
            pd, nd = s_real[f"pfIsoId {lab}"]
            name = "prompt" if lab == "prompt" else "non-prompt"
            ax.stairs(pr, edges, color=c, lw=2, label=f"{name} reference ({nr} μ)")
            err = np.sqrt(np.maximum(pd * (1 - pd), 1.0 / max(nd, 1)) / max(nd, 1))
            ax.errorbar(np.arange(7), pd, yerr=err, fmt="o", color=c, ms=7, label=f"{name} real ({nd} μ)")
        ax.set_xticks(range(7))
        ax.set_xlabel("Muon pfIsoId")
        ax.set_ylabel("fraction")
        ax.set_yscale("log")
        ax.set_ylim(3e-3, 30)
        _legend(ax, title=proc.real_label, title_fontsize=13)
        for a in row:
            project_label(a, proc.title, fontsize=13, com=None)
    return figs.save(fig, "muons_dependences.png")


# --------------------------------------------------------------------------- main
def command_line(a: argparse.Namespace) -> str:
    cmd = ["python", "scripts/reference_vs_real.py", "--out", str(a.out), "--seed", str(a.seed)]
    if a.data_dir.resolve() != DEFAULT_DATA.resolve():
        cmd += ["--data-dir", str(a.data_dir)]
    if a.dpi != 60:
        cmd += ["--dpi", str(a.dpi)]
    return shlex.join(cmd)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (figures, summary.md)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the reference response")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="folder of the real NanoAOD files")
    ap.add_argument("--dpi", type=int, default=60, help="resolution of the PNGs")
    a = ap.parse_args(argv)

    data = {p.key: load(p, a.data_dir, a.seed) for p in PROCESSES}
    summary = summarize(data)
    cmd = command_line(a)
    text = (f"# Reference vs real NanoAOD: the fields beyond the flows' first targets\n\n"
            f"`{cmd}` (CPU: {cpu_model()}). Reference: `respond(gen, seed={a.seed})` on the bundled "
            f"dy.root / ttbar.root Gen events; real: DY = nano_dy.root (Run-2, CHS), tt = nano_tt_v12.root "
            f"(Run-3, PUPPI). Jets pT > 15 GeV, all jets and muons (pile-up jets, unmatched muons included). "
            f"The real samples are small: see the counts.\n" + table(summary))
    print(text)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "summary.md").write_text(text)

    use_style()
    figs = Figures(a.out, cmd, a.dpi)
    paths = []
    for p in PROCESSES:
        paths += fig_marginals(figs, p, data[p.key])
    paths.append(fig_rawfactor(figs, summary, data))
    paths.append(fig_fractions(figs, summary))
    paths.append(fig_ctag(figs, data))
    paths.append(fig_muons(figs, summary))
    for p in paths:
        print(f"wrote {p} ({p.stat().st_size / 1024:.0f} kB)")


if __name__ == "__main__":
    main()
