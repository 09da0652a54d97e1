"""The VBF H→μμ analysis (CMS, JHEP 01 (2021) 148) as the reference FlashSim study used it (docs/analysis.md).

Modules, one job each:

* :mod:`.objects`    — the input collections per mode (coffea's Muon/Jet, or Gen stand-ins) and
  the NanoAOD-version policy (jet ID, pile-up ID, quark–gluon score; :func:`reco_branches`)
* :mod:`.selection`  — object cuts (muons, jets with ΔR cleaning), dimuon, mass windows, and the
  event selection as a coffea ``PackedSelection`` (cutflow, regions presel/SR/SB)
* :mod:`.candidates` — the two leading selected muons and jets as flat per-event arrays
* :mod:`.kinematics` — Collins–Soper angles, z*, R(pT), mass resolution, min Δη
* :mod:`.variables`  — all analysis variables and their histogram binning
* :mod:`.dnn`        — the 25 DNN inputs, network, safetensors + card I/O, numpy inference
* :mod:`.pipeline`   — :func:`analyse`, the chain used by the processor and the training
* :mod:`.training`   — ``flashsim train-dnn``
"""

from .candidates import Candidates, build_candidates
from .dnn import INPUTS as DNN_INPUTS
from .dnn import DNNModel, check_dnn, dnn_atanh, dnn_inputs, load_dnn
from .kinematics import collins_soper, cos_theta_cs_analytic, mass_resolution, min_delta_eta, rpt, zstar
from .objects import JetPolicy, gen_jets, gen_muons, jet_policy, reco_branches, reco_jets, reco_muons
from .pipeline import AnalysisResult, analyse
from .selection import (
    CUTFLOW_STEPS,
    DIMUON_STEPS,
    REGION_CUTS,
    REGIONS,
    SELECTION_STEPS,
    cutflow_masks,
    dimuon_cuts,
    dimuon_mask,
    event_selection,
    region_masks,
    scattered_selection,
    select_jets,
    select_muons,
)
from .variables import VARIABLES, axis_for, compute_variables

__all__ = [
    "AnalysisResult", "Candidates", "CUTFLOW_STEPS", "DIMUON_STEPS", "DNN_INPUTS", "DNNModel", "JetPolicy", "REGION_CUTS", "REGIONS",
    "SELECTION_STEPS", "VARIABLES", "analyse", "axis_for", "build_candidates", "check_dnn", "collins_soper",
    "compute_variables", "cos_theta_cs_analytic", "cutflow_masks", "dimuon_cuts", "dimuon_mask", "dnn_atanh", "dnn_inputs",
    "event_selection", "gen_jets", "gen_muons", "jet_policy", "load_dnn", "mass_resolution", "min_delta_eta",
    "reco_branches", "reco_jets", "reco_muons", "region_masks", "rpt", "scattered_selection", "select_jets", "select_muons", "zstar",
]  # fmt: skip
