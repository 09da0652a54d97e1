"""The three samples a validation compares, on the same held-out Gen objects.

* reference R: matched (Gen, reco) pairs read from the held-out NanoAOD files (or, with
  ``resimulate``, from a fresh reference draw on their Gen events);
* FlashSim F_k, k = 0..K−1: the flow sampled on R's Gen objects (keys = run, lumi, event,
  object, fold k), rebuilt into NanoAOD reco values (with NanoAOD precision) and turned back
  into targets, so F passes through exactly the rounding R went through (R is extracted with
  the stored, rounded values: no ``dequantize="rounding"`` cells filled);
* reference′ R′_k: :func:`flashsim_coffea.reference.respond` run again on the same Gen events
  with seed ``ref_seed + k``, then extracted like R.

K (``draws``) independent draws on each side make the noise floor an average rather than one
half-normal-distributed number (see :mod:`.metrics`); plots and the C2ST use F_0 and R′_0.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import awkward as ak
import numpy as np

from flashsim_coffea.errors import UserError
from flashsim_coffea.flows.sampler import FlowModel
from flashsim_coffea.objects import ObjectSpec
from flashsim_coffea.objects.extract import Extracted, extract_events, required_branches
from flashsim_coffea.reference.resimulate import GEN_BRANCHES, resimulate_events

__all__ = ["ValidationSamples", "build_samples", "flash_targets"]


@dataclass
class ValidationSamples:
    ref: Extracted
    flash_draws: list[np.ndarray]
    ref2_draws: list[Extracted]
    info: dict

    @property
    def flash(self) -> np.ndarray:
        """F_0: the FlashSim draw of fold 0."""
        return self.flash_draws[0]

    @property
    def ref2(self) -> Extracted:
        """R′_0: the reference′ draw with seed ``ref_seed``."""
        return self.ref2_draws[0]


def flash_targets(model: FlowModel, data: Extracted, fold: int = 0) -> tuple[np.ndarray, dict]:
    """FlashSim targets for the Gen objects of ``data``, after reco rebuild and precision."""
    spec = model.spec
    sampled, info = model.sample(data.cond, data.keys, fold=fold, return_info=True)
    reco = spec.rebuild(sampled, data.gen)
    return spec.targets_from_reco(reco, data.gen), info


def _read(files: list[str], spec: ObjectSpec, max_events: int | None, with_reco: bool = True):
    """The events of ``files`` (Gen, and with ``with_reco`` the spec's reco branches); a UserError
    for a file that lacks them or that ``flashsim simulate`` wrote (its reco is FlashSim's; without
    ``with_reco``, only a folded one)."""
    import uproot

    from flashsim_coffea.nanoaod.io import check_not_folded, check_reference

    need = set(required_branches(spec)) if with_reco else set()
    arrays = []
    for f in files:
        try:
            tree = uproot.open(f)["Events"]
        except (OSError, KeyError, ValueError) as err:
            raise UserError(f"{f}: cannot read an Events tree ({err})") from err
        if with_reco:  # the file's reco objects are the reference R
            check_reference(f, "of a validation", tree.keys())
        else:  # only its Gen events are read: each must be there once
            check_not_folded(f, "validate on the file it was simulated from", tree)
        names = sorted(need | {k for k in tree.keys() if GEN_BRANCHES.match(k)})
        missing = [b for b in need if b not in tree.keys()]
        if missing:
            from flashsim_coffea.errors import MissingBranchesError

            raise MissingBranchesError(f, missing, "validate (held-out NanoAOD with Gen and reco)")
        arrays.append(tree.arrays(names, entry_stop=max_events))
    return ak.concatenate(arrays) if len(arrays) > 1 else arrays[0]


def reference_prime_seeds(ref_seed: int, draws: int, resimulate: int | None = None) -> list[int]:
    """Seeds of R′_0..R′_{K−1}: ``ref_seed + k``; none may be the seed R was drawn with."""
    if draws < 1:
        raise UserError(f"--floor-draws must be >= 1 (got {draws})")
    seeds = [ref_seed + k for k in range(draws)]
    if resimulate is not None and resimulate in seeds:
        raise UserError(f"--resimulate {resimulate} is one of the reference′ seeds {seeds[0]}..{seeds[-1]} "
                        "(--ref-seed + k): R′ would equal R and the noise floor would be 0; choose seeds apart")
    return seeds


def build_samples(spec: ObjectSpec, model: FlowModel, files: list[str], ref_seed: int,
                  max_events: int | None = None, resimulate: int | None = None, draws: int = 1) -> ValidationSamples:
    """R from the files (or, with ``resimulate=SEED``, a fresh reference draw), F_k and R′_k."""
    seeds = reference_prime_seeds(ref_seed, draws, resimulate)
    events = _read(files, spec, max_events, with_reco=resimulate is None)
    if resimulate is not None:
        events = resimulate_events(events, resimulate, source=files[0])
    ref = extract_events(spec, events, fill_rounding=False)
    if len(ref) == 0:
        raise UserError(f"no matched {spec.name} objects in {', '.join(files)}")
    flash, info = flash_targets(model, ref)  # the counts reported (and warned about) are those of fold 0
    flash_draws = [flash]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        flash_draws += [flash_targets(model, ref, fold=k)[0] for k in range(1, draws)]
    info = {k: v for k, v in info.items() if k != "valid"}
    ref2_draws = [extract_events(spec, resimulate_events(events, s, source=files[0]), fill_rounding=False) for s in seeds]
    info.update(n_events=len(events), n_ref=len(ref), n_ref2=len(ref2_draws[0]), floor_draws=draws)
    return ValidationSamples(ref, flash_draws, ref2_draws, info)
