"""The VBF H→μμ analysis (CMS, JHEP 01 (2021) 148) as the seed used it.

Modules, one job each:

* :mod:`.selection`  — muon / jet selection (with ΔR cleaning), VBF cuts, mass windows
* :mod:`.objects`    — the input collections per mode (reco Muon/Jet, or Gen stand-ins)
* :mod:`.candidates` — the two leading selected muons and jets as flat per-event arrays
* :mod:`.kinematics` — Collins–Soper angles, z*, R(pT), mass resolution, min Δη
* :mod:`.variables`  — all analysis variables and their histogram binning
* :mod:`.events`     — cutflow and regions (presel, SR, SB)
* :mod:`.dnn`        — the 25 DNN inputs, network, safetensors + card I/O, numpy inference
* :mod:`.pipeline`   — :func:`analyse`, the chain used by the processor and the training
* :mod:`.training`   — ``flashsim train-dnn``
"""

from .candidates import Candidates, build_candidates
from .dnn import INPUTS as DNN_INPUTS
from .dnn import DNNModel, check_dnn, dnn_atanh, dnn_inputs, load_dnn
from .events import CUTFLOW_STEPS, REGIONS, cutflow_masks, region_masks
from .kinematics import collins_soper, cos_theta_cs_analytic, mass_resolution, min_delta_eta, rpt, zstar
from .objects import gen_jets, gen_muons, reco_jets, reco_muons
from .pipeline import AnalysisResult, analyse
from .selection import select_jets, select_muons
from .variables import VARIABLES, axis_for, compute_variables

__all__ = [
    "AnalysisResult", "Candidates", "CUTFLOW_STEPS", "DNN_INPUTS", "DNNModel", "REGIONS", "VARIABLES",
    "analyse", "axis_for", "build_candidates", "collins_soper", "compute_variables", "cos_theta_cs_analytic",
    "cutflow_masks", "dnn_atanh", "dnn_inputs", "gen_jets", "gen_muons", "load_dnn", "check_dnn", "mass_resolution",
    "min_delta_eta", "reco_jets", "reco_muons", "region_masks", "rpt", "select_jets", "select_muons", "zstar",
]  # fmt: skip
