"""Declarative object specs: what each flow conditions on and simulates.

Public API::

    from flashsim_coffea.objects import get_spec, register_spec, known_specs, ObjectSpec
    spec = get_spec("jets")                     # or "muons", a .json file, "module:attr"
    ctx = spec.context(events)                  # events: uproot arrays or NanoEvents
    cond = spec.conditioning_matrix(ctx)        # (N, C) float64, Gen objects flattened
    keys = spec.noise_keys(ctx)                 # run, luminosityBlock, event, object
    gen = spec.gen_fields(ctx)                  # flat Gen fields for the rebuild (pt, eta, ...)
    reco = spec.rebuild(targets, gen)           # flat reco fields with NanoAOD precision
    counts = spec.counts(ctx)                   # objects per event, for ak.unflatten
    spec.hash()                                 # stable SHA-256 for checkpoint cards
    event_conditioning(spec, events)            # (n_events, C) for event-level specs (pile-up jets)
"""

from .features import Bit, EventBranch, Feature, Field, Neighbour, register_feature
from .gen import GenCollection, branch, has_branch
from .pileup_jets import event_conditioning
from .registry import get_spec, known_specs, register_spec
from .spec import GenContext, ObjectSpec
from .targets import Spike, Target
from .transforms import Arctan, Asinh, Identity, Log, Log1p, Logit, Transform, register_transform

__all__ = [
    "Arctan", "Asinh", "Bit", "EventBranch", "Feature", "Field", "GenCollection",
    "GenContext", "Identity", "Log", "Log1p", "Logit", "Neighbour", "ObjectSpec", "Spike", "Target",
    "Transform", "branch", "event_conditioning", "get_spec", "has_branch", "known_specs", "register_feature",
    "register_spec", "register_transform",
]
