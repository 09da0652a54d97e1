"""Reconstruction efficiency maps: which Gen objects FlashSim reconstructs at all.

The flows learn p(reco | Gen) for objects that *were* reconstructed; whether a Gen object is
reconstructed is a separate, binary question. It is answered by a binned efficiency map

    ε(b) = N_matched(b) / N_gen(b),   b = bin of (Gen pT, Gen |η|)

measured on the training files (a Gen object is "matched" when a reco object points to it via
``Jet_genJetIdx`` / ``Muon_genPartIdx``), with Clopper–Pearson-free simple ratios (bins have
thousands of entries) and ε = 1 in empty bins. At injection each (object, fold) is kept when
u < ε(b), u = ``noise.uniform(seed, "efficiency/<spec>", run, lumi, event, object, fold)`` —
keyed, so the same object is kept or lost whatever the chunking.

The binning is the spec's (:class:`~flashsim_coffea.objects.rules.RecoRules`: ``efficiency_*``).
A flow trained on stored reco objects samples their reco values *given* that they are stored, so
the map is the matched fraction itself, NanoAOD's reco threshold included (jets: finely binned
around it); bins with Gen pT below ``efficiency_threshold_free_pt`` (0 in the shipped specs) would
take the value of the first bin above it. The map is stored as ``efficiency.json`` beside a
model's ``card.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np

from . import noise
from .errors import UserError

FILENAME = "efficiency.json"


@dataclass
class EfficiencyMap:
    spec: str
    pt_edges: np.ndarray
    abseta_edges: np.ndarray
    values: np.ndarray  # (n_pt, n_eta)
    counts: np.ndarray  # Gen objects per bin used for the estimate

    def __call__(self, pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """ε for each object (bins by Gen pT and |η|; values beyond the last edge use the last bin)."""
        i = np.clip(np.searchsorted(self.pt_edges, pt, side="right") - 1, 0, len(self.pt_edges) - 2)
        j = np.clip(np.searchsorted(self.abseta_edges, np.abs(eta), side="right") - 1, 0, len(self.abseta_edges) - 2)
        return self.values[i, j]

    def keep(self, pt, eta, seed: int, keys: dict[str, np.ndarray], fold: np.ndarray) -> np.ndarray:
        """Boolean mask: u < ε with u keyed on (run, lumi, event, object, fold)."""
        u = noise.uniform(seed, f"efficiency/{self.spec}", keys["run"], keys["luminosityBlock"], keys["event"], keys["object"], fold)
        return u < self(pt, eta)

    # -- I/O --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "spec": self.spec,
            "pt_edges": self.pt_edges.tolist(),
            "abseta_edges": self.abseta_edges.tolist(),
            "values": self.values.tolist(),
            "counts": self.counts.tolist(),
        }

    def save(self, model_dir: str | Path) -> Path:
        from .safe_write import atomic_write

        path = Path(model_dir) / FILENAME
        with atomic_write(path) as tmp:  # a model folder never holds half a map
            Path(tmp).write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def from_dict(cls, d: dict) -> "EfficiencyMap":
        """The map of :meth:`to_dict`'s form; a ValueError (or KeyError for a missing key) unless the
        edges are finite and increasing, ``values`` and ``counts`` have one entry per (pT, |η|) bin
        and every value is in [0, 1]."""
        if not isinstance(d, dict):
            raise ValueError(f"a JSON object is expected, got {type(d).__name__}")
        spec = d["spec"]
        if not isinstance(spec, str):
            raise ValueError(f"spec must be a name, got {spec!r}")
        arrays = {k: np.asarray(d[k], dtype=np.float64) for k in ("pt_edges", "abseta_edges", "values", "counts")}
        for k in ("pt_edges", "abseta_edges"):
            e = arrays[k]
            if e.ndim != 1 or len(e) < 2 or not np.all(np.isfinite(e)) or not np.all(np.diff(e) > 0):
                raise ValueError(f"{k} must be at least 2 finite, increasing edges, got shape {e.shape}")
        bins = (len(arrays["pt_edges"]) - 1, len(arrays["abseta_edges"]) - 1)
        for k in ("values", "counts"):
            if arrays[k].shape != bins:
                raise ValueError(f"{k} has shape {arrays[k].shape}, the edges give {bins} (pT, |η|) bins")
        v = arrays["values"]
        outside = ~(np.isfinite(v) & (v >= 0) & (v <= 1))
        if outside.any():
            i, j = np.argwhere(outside)[0]
            raise ValueError(f"values must be in [0, 1]: {int(outside.sum())} are not, e.g. {v[i, j]} in bin ({i}, {j})")
        return cls(spec, arrays["pt_edges"], arrays["abseta_edges"], v, arrays["counts"])

    @classmethod
    def load(cls, model_dir: str | Path) -> "EfficiencyMap | None":
        """The map beside a model's card, or None if the model has none (everything reconstructed);
        a UserError naming the file when it is not valid JSON or not a valid map (:meth:`from_dict`)."""
        path = Path(model_dir) / FILENAME
        if not path.is_file():
            return None
        redo = "measure it again with `flashsim efficiency SPEC FILE.root... -o MODEL_DIR`"
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{path}: not valid JSON ({err}); {redo}") from None
        try:
            return cls.from_dict(d)
        except KeyError as err:
            raise UserError(f"{path}: not a valid efficiency map (missing key {err}); {redo}") from None
        except (TypeError, ValueError) as err:
            raise UserError(f"{path}: not a valid efficiency map ({err}); {redo}") from None


def measure(spec_name: str, gen_pt: np.ndarray, gen_eta: np.ndarray, matched: np.ndarray) -> EfficiencyMap:
    """ε per (pT, |η|) bin from flat Gen objects and whether each was reconstructed (binning of
    the registered spec ``spec_name``'s rules)."""
    from .objects import get_spec

    rules = get_spec(spec_name).rules
    pt_edges = np.asarray(rules.efficiency_pt_edges, dtype=np.float64)
    eta_edges = np.asarray(rules.efficiency_abseta_edges, dtype=np.float64)
    free_pt = rules.efficiency_threshold_free_pt
    n_gen, _, _ = np.histogram2d(gen_pt, np.abs(gen_eta), bins=(pt_edges, eta_edges))
    n_match, _, _ = np.histogram2d(gen_pt[matched], np.abs(gen_eta[matched]), bins=(pt_edges, eta_edges))
    with np.errstate(invalid="ignore", divide="ignore"):
        eff = np.where(n_gen > 0, n_match / n_gen, 1.0)
    first_free = int(np.searchsorted(pt_edges, free_pt, side="left"))
    if first_free > 0:
        eff[:first_free] = eff[first_free]
    return EfficiencyMap(spec_name, pt_edges, eta_edges, eff, n_gen)


def measure_files(spec_name: str, files: list[str], step: int = 50_000) -> EfficiencyMap:
    """Measure the map of spec ``jets`` or ``muons`` on NanoAOD files with Gen and reco objects (a
    UserError for a file ``flashsim simulate`` wrote: its reco objects are FlashSim's; a
    MissingBranchesError naming the Gen/reco branches a file lacks, before any file is read; one
    line naming a file whose data cannot be read: :func:`flashsim_coffea.nanoaod.io.reading`)."""
    from .errors import MissingBranchesError
    from .nanoaod.io import check_reference, gen_hint, open_events, reading
    from .objects import get_spec

    spec = get_spec(spec_name)
    gen_coll = spec.simulated
    match = f"{spec.reco}_{spec.match}"
    wanted = gen_coll.branches() + [match]
    trees = []
    for f in files:
        tree = open_events(f)
        check_reference(f, "of an efficiency map", tree.keys())
        names = set(tree.keys())
        missing = [b for b in wanted if b not in names]
        if missing:
            raise MissingBranchesError(str(f), missing, f"measure the {spec_name} efficiency (Gen and matched reco objects)"
                                       + gen_hint(missing, names))
        trees.append((f, tree))
    pts, etas, matched = [], [], []
    for f, tree in trees:
        with reading(f):
            for chunk in tree.iterate(wanted, step_size=step, library="ak"):
                objs = gen_coll.load(chunk)
                idx = chunk[match]
                # matched[i] = some reco object points at this Gen object's source index
                hit = ak.any(objs["index"][:, :, None] == idx[:, None, :], axis=2)
                pts.append(ak.to_numpy(ak.flatten(objs.pt)))
                etas.append(ak.to_numpy(ak.flatten(objs.eta)))
                matched.append(ak.to_numpy(ak.flatten(hit)))
    return measure(spec_name, np.concatenate(pts), np.concatenate(etas), np.concatenate(matched))
