"""A FlashSim model folder loaded as one bundle: the flow, its efficiency map and its count model.

::

    MODEL_DIR/
      card.json + model.safetensors   the flow and its spec (:class:`~.sampler.FlowModel`)
      efficiency.json                 ε(Gen pT, Gen |η|) (:class:`~flashsim_coffea.efficiency.EfficiencyMap`);
                                      absent: every Gen object in acceptance is reconstructed (warned once per folder)
      count.json                      P(n | event feature) (:class:`~.count.CountModel`): required by a spec whose
                                      objects have no Gen counterpart (``RecoRules.origin == "event"``), refused otherwise

:func:`resolve_model` turns what a user gives for an object (a folder, ``"default"``/``True``/None
for the shipped model, ``False`` for none) into a folder, checking its card once;
:func:`load_bundle` loads a folder once per process, keyed on the card's path, the weights'
SHA-256, the device, the precision and the (modification time, size) of ``efficiency.json`` and
``count.json`` — a map rewritten by ``flashsim efficiency`` is read again, never served stale —
and checks that the parts agree (the efficiency map and count model are the flow's spec's, the
map binned as the spec's ``RecoRules``, the count feature one of its conditioning features).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flashsim_coffea.errors import UserError
from flashsim_coffea.objects import ObjectSpec

from . import sampler
from .sampler import FlowModel, card_spec, load_model

__all__ = ["ModelBundle", "load_bundle", "resolve_model", "model_spec", "shipped_models", "model_record"]


@dataclass(frozen=True)
class ModelBundle:
    """One object's loaded model: ``flow`` (its spec is :attr:`spec`), ``efficiency`` (None: ε = 1)
    and ``count`` (None for Gen-matched objects)."""

    flow: FlowModel
    efficiency: Any
    count: Any

    @property
    def spec(self) -> ObjectSpec:
        return self.flow.spec

    @property
    def path(self) -> Path | None:
        return self.flow.path


def resolve_model(name: str, model: Any) -> Path | None:
    """The model folder of object ``name``: the shipped one for ``"default"``, ``True`` or None; None
    for ``False`` or ``"none"`` (FlashSim does not simulate the object); a folder (its card read once here, so a
    missing, corrupt or foreign card fails before any work)."""
    from .checkpoint import read_card

    if model is False or (isinstance(model, str) and model.lower() == "none"):  # "none": the command lines' spelling
        return None
    if model is None or model is True or (isinstance(model, str) and model == "default"):
        return sampler.shipped_model_path(name)
    if not isinstance(model, (str, Path)):
        raise UserError(f"FlashSim model of {name!r}: a model directory, 'default' (the shipped model) or False "
                        f"(keep the file's own collection), got {model!r}")
    _, card_path = read_card(model)
    return card_path.parent


def model_spec(path: str | Path) -> ObjectSpec:
    """The spec of a model folder, read from its card (no weights loaded): what it simulates and
    its :class:`~flashsim_coffea.objects.rules.RecoRules`."""
    from .checkpoint import read_card

    card, _ = read_card(path)
    return card_spec(card)


def shipped_models() -> dict[str, Path]:
    """The registered objects that have a shipped model folder (``flashsim_coffea/models/<name>``), in
    registry order: what ``FlashSim()`` simulates by default."""
    from flashsim_coffea.objects.registry import registered_order

    out = {}
    for name in registered_order():
        try:
            out[name] = sampler.shipped_model_path(name)
        except UserError:
            continue
    return out


def model_record(name: str, path: str | Path) -> dict[str, Any]:
    """Provenance of one model folder (no absolute path): its name, whether it is the shipped
    model of ``name``, the SHA-256 of its card, weights, efficiency map and count model, its spec
    hash and the package version it was trained with."""
    from flashsim_coffea.cards import sha256_file
    from flashsim_coffea.efficiency import FILENAME as EFFICIENCY_FILE

    from .checkpoint import read_card
    from .count import FILENAME as COUNT_FILE

    card, card_path = read_card(path)
    folder = card_path.parent
    try:
        shipped = folder.resolve() == sampler.shipped_model_path(name).resolve()
    except UserError:
        shipped = False
    rec = {
        "model": folder.name,
        "shipped": shipped,
        "card_sha256": sha256_file(card_path),
        "weights_sha256": card.get("weights_sha256"),
        "spec_hash": card.get("spec_hash"),
        "trained_with": card.get("package_version"),
    }
    for key, filename in (("efficiency_sha256", EFFICIENCY_FILE), ("count_sha256", COUNT_FILE)):
        if (folder / filename).is_file():
            rec[key] = sha256_file(folder / filename)
    return rec


_FILES: dict[tuple[str, str, int, int], Any] = {}
_WARNED: set[str] = set()


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


def _cached(kind: str, folder: Path, filename: str, spec: ObjectSpec, load, check) -> Any:
    """``load(folder)``, checked once against ``spec`` (``check(path, part, spec)``), cached on the
    file's (modification time, size) and the spec's hash; None when the file is absent. A worker
    asks for its bundles on every chunk: the files are only stat-ed then."""
    key = _file_key(folder / filename)
    if key is None:
        return None
    k = (kind, str(folder), spec.hash(), *key)
    if k not in _FILES:
        part = load(folder)
        check(folder / filename, part, spec)
        _FILES[k] = part
    return _FILES[k]


def _check_efficiency(path: Path, efficiency, spec: ObjectSpec) -> None:
    """A UserError naming ``path`` unless the map is the flow's spec's, binned as its
    :class:`~flashsim_coffea.objects.rules.RecoRules` say (``efficiency_pt_edges``,
    ``efficiency_abseta_edges``)."""
    import numpy as np

    redo = f"measure it for this model: flashsim efficiency {spec.name} FILE.root... -o {path.parent}"
    if efficiency.spec != spec.name:
        raise UserError(f"{path}: an efficiency map of spec {efficiency.spec!r}, but the flow beside it simulates "
                        f"{spec.name!r}; {redo}")
    for key, rule in (("pt_edges", "efficiency_pt_edges"), ("abseta_edges", "efficiency_abseta_edges")):
        have = np.asarray(getattr(efficiency, key), dtype=np.float64)
        want = np.asarray(getattr(spec.rules, rule), dtype=np.float64)
        if have.shape != want.shape or not np.array_equal(have, want):
            raise UserError(f"{path}: {key} ({len(have)} edges, {have[0]:g} … {have[-1]:g}) differ from spec "
                            f"{spec.name!r}'s RecoRules.{rule} ({len(want)} edges, {want[0]:g} … {want[-1]:g}); {redo}")


def _check_count(path: Path, count, spec: ObjectSpec) -> None:
    """A UserError naming ``path`` unless the count model is the flow's spec's and its feature is one
    of the spec's conditioning features."""
    names = [f.name for f in spec.conditioning]
    if count.spec != spec.name:
        raise UserError(f"{path}: a count model of spec {count.spec!r}, but the flow beside it simulates {spec.name!r}; "
                        f"fit one for this model with `flashsim train {spec.name} ...`")
    if count.feature not in names:
        raise UserError(f"{path}: the count model's feature {count.feature!r} is not a conditioning feature of spec "
                        f"{spec.name!r} ({', '.join(names)}); fit one for this model with `flashsim train {spec.name} ...`")


def load_bundle(path: str | Path, device: str = "cpu", precision: str = "float32") -> ModelBundle:
    """The folder's :class:`ModelBundle` (module docstring), cached per process; a UserError naming
    the file when a part is broken (NaN/inf weights, a malformed ``efficiency.json`` or
    ``count.json``) or the parts disagree (the map's or the count model's spec is not the flow's,
    the map's edges are not the spec's efficiency binning, the count feature is not a conditioning
    feature)."""
    from flashsim_coffea.efficiency import FILENAME as EFFICIENCY_FILE
    from flashsim_coffea.efficiency import EfficiencyMap

    from .count import FILENAME as COUNT_FILE
    from .count import CountModel

    flow = load_model(path, None, device, precision)
    folder = Path(flow.path) if flow.path is not None else Path(path)
    spec = flow.spec
    efficiency = _cached("efficiency", folder, EFFICIENCY_FILE, spec, EfficiencyMap.load, _check_efficiency)
    count = _cached("count", folder, COUNT_FILE, spec, CountModel.load, _check_count)
    if spec.rules.gen_matched and count is not None:
        raise UserError(f"{folder}: has {COUNT_FILE} (objects counted per event) but spec {spec.name!r} simulates one "
                        f"object per Gen object (RecoRules.origin 'gen'); remove {COUNT_FILE} or use the right folder")
    if not spec.rules.gen_matched and count is None:
        raise UserError(f"{folder}: spec {spec.name!r} draws objects without a Gen counterpart, which needs the number "
                        f"per event from {COUNT_FILE}; fit one with `flashsim train {spec.name} ...` (it writes it)")
    if efficiency is None and spec.rules.gen_matched and str(folder) not in _WARNED:
        # once per folder and process: a freshly trained model has no map until `flashsim efficiency`
        # writes one, and without it every Gen object is reconstructed
        _WARNED.add(str(folder))
        warnings.warn(f"flashsim {spec.name}: {folder} has no {EFFICIENCY_FILE}, so every Gen object in acceptance is "
                      f"reconstructed (efficiency 1); measure one with `flashsim efficiency {spec.name} FILE.root... "
                      f"-o {folder}` or copy the shipped model's", stacklevel=3)
    return ModelBundle(flow, efficiency, count)
