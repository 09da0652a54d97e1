"""Training of the VBF H→μμ DNN on reference-simulated (or any NanoAOD MC) samples.

Events: the analysis selection of :mod:`flashsim_coffea.analysis` with the VBF cuts and
110 ≤ m_μμ < 150 GeV (signal region + sideband), reco ``Muon``/``Jet`` of the files.

Weights (``weighting``):

* ``"xsec"``: each event gets w = XSecPb · genWeight / genEventSumw (pb; ``XSecPb`` already
  includes the Gen filter efficiency, as the generator writes it; both from the file's
  ``Runs`` tree, 1 pb / Σ genWeight when absent) — physical relative weights.
* ``"events"`` (default): w = genWeight · n_sel / Σ_sel genWeight per file, i.e. every
  background file contributes in proportion to its number of selected events. This is the
  default because the development samples' cross sections are not physical relative to each
  other (Pythia LO, the EWK μμjj stand-in is a scalar with the Z mass, DY is Gen-filtered)
  and tt̄ passes the VBF dimuon selection at ~1e-4, so with ``"xsec"`` one or two tt̄
  events of weight 0.05 pb would outweigh all other background events together.

In both cases signal weights are then scaled so that Σ w_sig = Σ w_bkg, and all weights
divided by their mean (the loss is Σ w·BCE / Σ w).

Split: an event goes to validation when the counter-based uniform
u(seed, "dnn-split", run, luminosityBlock, event) < ``val_fraction`` — independent of file
order and chunking. Inputs are standardised with the training-set mean and standard
deviation (σ → 1 for constant inputs such as year, N_soft5, HT_soft2).

Optimisation: Adam (lr 1e-3, weight decay 1e-5), mini-batches of 256 shuffled by a seeded
torch generator, one torch thread; the state with the lowest validation loss is kept.
Reported figure of merit: weighted ROC AUC on the validation set.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import uproot

from ..cards import sha256_file
from ..errors import UserError
from ..nanoaod.conventions import EVENT_ID
from ..noise import uniform
from .dnn import build_torch_model, dnn_inputs, save_model
from .objects import reco_jets, reco_muons
from .pipeline import analyse

__all__ = ["WEIGHTINGS", "Sample", "load_sample", "weighted_auc", "train_dnn"]


@dataclass
class Sample:
    """Selected events of one file: inputs X (n, 25), weights w, label, validation flag."""

    path: str
    label: int
    x: np.ndarray
    w: np.ndarray
    is_val: np.ndarray
    info: dict = field(default_factory=dict)


def _runs_normalisation(path: str) -> tuple[float, float]:
    """(XSecPb, Σ genEventSumw) of a file's Runs tree (defaults 1.0 and None→Σ genWeight)."""
    with uproot.open(path) as f:
        if "Runs" not in f:
            return 1.0, float("nan")
        runs = f["Runs"]
        keys = set(runs.keys())
        xsec = float(runs["XSecPb"].array(library="np")[0]) if "XSecPb" in keys else 1.0
        sumw = float(np.sum(runs["genEventSumw"].array(library="np"))) if "genEventSumw" in keys else float("nan")
    return xsec, sumw


WEIGHTINGS = ("events", "xsec")


def load_sample(path: str | Path, label: int, seed: int, val_fraction: float = 0.3, weighting: str = "events") -> Sample:
    """Read one NanoAOD file, run the selection, keep SR + SB events with their DNN inputs."""
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    path = str(path)
    if not Path(path).is_file():
        raise UserError(f"{path}: no such file")
    events = NanoEventsFactory.from_root({path: "Events"}, schemaclass=NanoAODSchema, mode="virtual").events()
    res = analyse(reco_muons(events), reco_jets(events), dnn=False)
    sel = res.cutflow["mass_window"]
    gw = np.asarray(events.genWeight, dtype=np.float64) if "genWeight" in events.fields else np.ones(len(events))
    xsec, sumw = _runs_normalisation(path)
    if not np.isfinite(sumw) or sumw == 0:
        sumw = float(np.sum(gw))
    w = xsec * gw / sumw
    ids = [np.asarray(events[k], dtype=np.int64) for k in EVENT_ID]
    is_val = uniform(seed, "dnn-split", *ids) < val_fraction
    x = dnn_inputs(res.variables)[sel]
    ok = np.all(np.isfinite(x), axis=1)
    if weighting == "events":
        ws = gw[sel][ok]
        w = gw * (ws.size / ws.sum() if ws.size else 1.0)
    elif weighting != "xsec":
        raise UserError(f"unknown weighting {weighting!r}; known: {', '.join(WEIGHTINGS)}")
    info = {
        "file": Path(path).name,
        "sha256": sha256_file(path),
        "events": int(len(events)),
        "selected": int(ok.sum()),
        "xsec_pb": xsec,
        "selected_xsec_pb": float(np.sum(w[sel][ok])),
    }
    return Sample(path, label, x[ok], w[sel][ok], is_val[sel][ok], info)


def weighted_auc(score: np.ndarray, label: np.ndarray, weight: np.ndarray) -> float:
    """Area under the weighted ROC curve (trapezoids over distinct score thresholds)."""
    order = np.argsort(-score, kind="stable")
    s, y, w = score[order], label[order].astype(bool), weight[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # end of each tied-score group
    tp = np.cumsum(np.where(y, w, 0.0))[last]
    fp = np.cumsum(np.where(~y, w, 0.0))[last]
    tpr = np.r_[0.0, tp / tp[-1]]
    fpr = np.r_[0.0, fp / fp[-1]]
    return float(np.trapezoid(tpr, fpr))


def _arrays(samples: list[Sample]):
    x = np.concatenate([s.x for s in samples])
    y = np.concatenate([np.full(len(s.x), s.label, dtype=np.float64) for s in samples])
    w = np.concatenate([s.w for s in samples])
    v = np.concatenate([s.is_val for s in samples])
    return x, y, w, v


def train_dnn(
    signal: list[str],
    background: list[str],
    out_dir: str | Path,
    *,
    seed: int = 1,
    epochs: int = 60,
    batch_size: int = 256,
    val_fraction: float = 0.3,
    weighting: str = "events",
    log=print,
) -> dict:
    """Train and save the DNN (safetensors + card.json in ``out_dir``); returns the training record."""
    import torch

    if not signal or not background:
        raise UserError("train-dnn needs at least one signal and one background file")
    t0 = time.perf_counter()
    samples = [load_sample(p, lab, seed, val_fraction, weighting) for lab, files in ((1, signal), (0, background)) for p in files]
    for s in samples:
        log(f"  {'signal' if s.label else 'background'} {s.info['file']}: {s.info['selected']} selected of {s.info['events']}")
    x, y, w, v = _arrays(samples)
    if (y == 1).sum() == 0 or (y == 0).sum() == 0:
        raise UserError("no selected signal or background events (VBF SR + SB): generate larger samples")
    w = w.copy()
    w[y == 1] *= w[y == 0].sum() / w[y == 1].sum()
    w /= w.mean()
    tr = ~v
    mean = x[tr].mean(axis=0)
    std = x[tr].std(axis=0)
    std[std == 0] = 1.0
    xs = ((x - mean) / std).astype(np.float32)

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(seed)
    model = build_torch_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    xt, yt, wt = (torch.from_numpy(a[tr].astype(np.float32)) for a in (xs, y, w))
    xv, yv, wv = (torch.from_numpy(a[v].astype(np.float32)) for a in (xs, y, w))

    def loss_fn(pred, target, weight):
        return (weight * torch.nn.functional.binary_cross_entropy(pred[:, 0], target, reduction="none")).sum() / weight.sum()

    best = (np.inf, None, -1)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(perm), batch_size):
            b = perm[i : i + batch_size]
            if len(b) < 2:  # batch norm needs two rows
                continue
            opt.zero_grad()
            loss = loss_fn(model(xt[b]), yt[b], wt[b])
            loss.backward()
            opt.step()
        model.eval()
        with torch.inference_mode():
            vloss = float(loss_fn(model(xv), yv, wv))
        if vloss < best[0]:
            best = (vloss, {k: t.clone() for k, t in model.state_dict().items()}, epoch)
        if epoch % 10 == 0 or epoch == epochs - 1:
            log(f"  epoch {epoch:3d}  validation loss {vloss:.4f}")
    model.load_state_dict(best[1])
    model.eval()
    with torch.inference_mode():
        score = model(torch.from_numpy(xs)).numpy()[:, 0].astype(np.float64)
    auc_val = weighted_auc(score[v], y[v], w[v])
    auc_train = weighted_auc(score[tr], y[tr], w[tr])
    record = {
        "seed": seed,
        "epochs": epochs,
        "best_epoch": best[2],
        "batch_size": batch_size,
        "val_fraction": val_fraction,
        "selection": "VBF H->mumu: VBF cuts, 110 <= m_mumu < 150 (SR + SB), reco Muon/Jet",
        "weighting": weighting,
        "weights": ("XSecPb*genWeight/genEventSumw" if weighting == "xsec" else "genWeight*n_sel/sum(genWeight) per file")
        + "; signal scaled to the background total",
        "samples": [dict(s.info, label=int(s.label)) for s in samples],
        "n_train": {"signal": int(((y == 1) & tr).sum()), "background": int(((y == 0) & tr).sum())},
        "n_val": {"signal": int(((y == 1) & v).sum()), "background": int(((y == 0) & v).sum())},
        "auc_validation": auc_val,
        "auc_train": auc_train,
        "validation_loss": best[0],
        "torch": torch.__version__,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    save_model(model, mean, std, out_dir, record)
    # the numpy inference used by the processor must reproduce the torch model
    from .dnn import DNNModel

    np_score = DNNModel.from_directory(out_dir).score(x)
    record["numpy_vs_torch_max_abs_diff"] = float(np.max(np.abs(np_score - score)))
    if record["numpy_vs_torch_max_abs_diff"] > 1e-4:
        raise RuntimeError(f"numpy DNN inference differs from torch by {record['numpy_vs_torch_max_abs_diff']:.2e}")
    from ..cards import CARD_NAME

    card_path = Path(out_dir) / CARD_NAME
    card = json.loads(card_path.read_text())
    card["training"] = record
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    log(f"  AUC validation {auc_val:.4f} (train {auc_train:.4f}); saved to {out_dir}")
    return record

