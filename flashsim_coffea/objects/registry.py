"""Spec registry: names → specs, plus user specs from JSON files or ``module:attribute``.

``get_spec("jets")`` returns a registered spec; ``get_spec("my_specs.py_module:SPEC")``
imports a user's spec object (or factory); ``get_spec("spec.json")`` reads
:meth:`ObjectSpec.to_json` output. Unknown names raise a :class:`UserError` listing the
known ones. ``register_spec`` adds a spec (or a zero-argument factory) under its name.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path

from flashsim_coffea.errors import UserError

from .jets import make_jets_spec
from .muons import make_muons_spec
from .pileup_jets import make_pileup_jets_spec
from .spec import ObjectSpec

__all__ = ["get_spec", "register_spec", "known_specs", "registered_order"]

_REGISTRY: dict[str, Callable[[], ObjectSpec]] = {"jets": make_jets_spec, "muons": make_muons_spec,
                                                  "pileup_jets": make_pileup_jets_spec}


#: the registered specs built so far, by name: specs are frozen, so one object per name serves
#: every caller (and keeps per-object caches, e.g. of the spec hash, warm across chunks)
_BUILT: dict[str, ObjectSpec] = {}


def register_spec(spec: ObjectSpec | Callable[[], ObjectSpec], name: str | None = None) -> None:
    factory = spec if callable(spec) and not isinstance(spec, ObjectSpec) else (lambda s=spec: s)
    key = name or factory().name
    _REGISTRY[key] = factory
    _BUILT.pop(key, None)


def known_specs() -> list[str]:
    return sorted(_REGISTRY)


def registered_order() -> list[str]:
    """The registered spec names in the order they were registered (the built-in ones first)."""
    return list(_REGISTRY)


def get_spec(spec: str | ObjectSpec) -> ObjectSpec:
    """Resolve a spec object, registered name, ``.json`` file or ``module:attribute``."""
    if isinstance(spec, ObjectSpec):
        return spec
    if spec in _REGISTRY:
        if spec not in _BUILT:
            _BUILT[spec] = _REGISTRY[spec]()
        return _BUILT[spec]
    if spec.endswith(".json") and Path(spec).is_file():
        try:
            return ObjectSpec.from_dict(json.loads(Path(spec).read_text()))
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"{spec}: not a valid spec JSON ({err})") from err
    if ":" in spec:
        mod, _, attr = spec.partition(":")
        try:
            obj = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as err:
            raise UserError(f"cannot import spec {spec!r}: {err}") from err
        obj = obj() if callable(obj) and not isinstance(obj, ObjectSpec) else obj
        if not isinstance(obj, ObjectSpec):
            raise UserError(f"{spec!r} is not an ObjectSpec")
        return obj
    raise UserError(
        f"unknown object spec {spec!r}; known specs: {', '.join(known_specs())} "
        "(or give a spec .json file or module:attribute)"
    )
