"""Normalisation of a run to an integrated luminosity.

Per dataset of a canonical fileset and a luminosity L in fb⁻¹ (:func:`normalisation`):

* Σw = Σ ``genEventSumw`` over the ``Runs`` trees of all the dataset's readable files (read
  once per file, :func:`_read_runs`);
* σ in pb: the dataset's fileset metadata ``xsec``, or else the files' ``Runs/XSecPb`` (what
  ``flashsim generate`` writes: σ × filter efficiency; all files must agree);
* ``norm_weight = σ · L · 1000 / Σw`` (pb · fb⁻¹ = 1000, :data:`PB_TIMES_FB_INV`): the run puts
  it into the dataset's fileset metadata, where the processor multiplies ``genWeight`` by it,
  and the numbers ``{"xsec_pb", "lumi_fb", "sumw_runs", "norm_weight", "xsec_source",
  "files_without_runs"}`` into the dataset's output under ``"normalisation"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import UserError
from .errors import one_line

__all__ = ["PB_TIMES_FB_INV", "normalisation"]

#: σ [pb] · L [fb⁻¹] = 1000 events
PB_TIMES_FB_INV = 1000.0


def _read_runs(path: str) -> tuple[float, list[float]]:
    """(Σ genEventSumw, [XSecPb of each Runs entry, NaN-free]) of one file; UserError if absent."""
    import numpy as np
    import uproot

    try:
        with uproot.open(path) as f:
            if "Runs" not in f:
                raise UserError(f"{path}: no 'Runs' tree, so no genEventSumw to normalise with; "
                                "run without --lumi (unnormalised) or use NanoAOD with its Runs tree")
            runs = f["Runs"]
            keys = set(runs.keys())
            name = next((n for n in ("genEventSumw", "genEventSumw_") if n in keys), None)
            if name is None:
                raise UserError(f"{path}: the Runs tree has no genEventSumw branch; run without --lumi")
            sumw = float(np.sum(runs[name].array(library="np"), dtype=np.float64))
            xs = runs["XSecPb"].array(library="np").astype(np.float64) if "XSecPb" in keys else np.zeros(0)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - corrupt Runs tree
        raise UserError(f"{path}: cannot read its Runs tree ({type(err).__name__}: {one_line(err)}); "
                        "run without --lumi or fix the file") from err
    return sumw, [float(x) for x in xs if np.isfinite(x) and x > 0]


def _check_number(value: Any, what: str) -> float:
    """``value`` as a positive finite float, else a UserError naming ``what``."""
    if isinstance(value, bool):
        raise UserError(f"{what} must be a positive number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a positive number, got {value!r}") from None
    if not math.isfinite(x) or x <= 0:
        raise UserError(f"{what} must be a positive finite number, got {value!r}")
    return x


def normalisation(fileset: Mapping, lumi_fb: float, unreadable: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Per dataset ``{"xsec_pb", "lumi_fb", "sumw_runs", "norm_weight", "xsec_source",
    "files_without_runs"}`` for a canonical fileset and a luminosity in fb⁻¹.

    ``sumw_runs`` is Σ ``genEventSumw`` over the ``Runs`` trees of all the dataset's files
    except those in ``unreadable`` (files that cannot be opened, skipped with
    ``--skip-bad-files``: listed under ``files_without_runs``); σ is the metadata ``xsec`` [pb]
    or else the files' ``Runs/XSecPb`` (all files must agree); ``norm_weight = σ · L · 1000 /
    Σw``. A dataset without a cross section, without Runs or with Σw ≤ 0 is a UserError naming it.
    """
    lumi = _check_number(lumi_fb, "--lumi (integrated luminosity in fb^-1)")
    unreadable = set(unreadable)
    out: dict[str, dict[str, Any]] = {}
    for ds, spec in fileset.items():
        meta = spec.get("metadata") or {}
        sumw, file_xs, missing = 0.0, {}, []
        for f in spec["files"]:
            if f in unreadable:
                missing.append(f)
                continue
            s, xs = _read_runs(f)
            sumw += s
            if xs:
                file_xs[f] = xs
        if "xsec" in meta and meta["xsec"] is not None:
            xsec = _check_number(meta["xsec"], f"dataset {ds!r}: metadata xsec (cross section in pb)")
            source = "metadata"
        elif file_xs:
            values = sorted({v for xs in file_xs.values() for v in xs})
            if values[-1] - values[0] > 1e-6 * values[-1]:
                shown = ", ".join(f"{Path(f).name}: {xs[0]:.6g}" for f, xs in list(file_xs.items())[:4])
                raise UserError(f"dataset {ds!r}: its files give different cross sections Runs/XSecPb ({shown} pb); "
                                'set the dataset\'s cross section in the fileset JSON: "metadata": {"xsec": PB}')
            if len(file_xs) < len(spec["files"]) - len(missing):
                without = [f for f in spec["files"] if f not in file_xs and f not in unreadable]
                raise UserError(f"dataset {ds!r}: {without[0]} has no Runs/XSecPb while other files of the dataset do; "
                                'set the cross section in the fileset JSON: "metadata": {"xsec": PB}')
            xsec, source = values[0], "Runs/XSecPb"
        else:
            raise UserError(f"dataset {ds!r} has no cross section (no metadata xsec, no Runs/XSecPb in its files); "
                            'add "metadata": {"xsec": PB} to it in a fileset JSON, or run without --lumi')
        if not sumw > 0:
            raise UserError(f"dataset {ds!r}: Σ genEventSumw of its Runs trees is {sumw:g}; cannot normalise "
                            "(run without --lumi)")
        out[ds] = {"xsec_pb": xsec, "lumi_fb": lumi, "sumw_runs": sumw,
                   "norm_weight": xsec * lumi * PB_TIMES_FB_INV / sumw, "xsec_source": source,
                   "files_without_runs": missing}
    return out
