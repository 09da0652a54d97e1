"""Validation of FlashSim against the reference response: W1 with noise floor, C2ST, plots.

Public API::

    from flashsim_coffea.validation import run_validation, w1_table, c2st_auc
    metrics = run_validation(spec, model, files, "report/", ref_seed=90210)
    tables = conditional_tables(spec, build_samples(spec, model, files, 90210, draws=5))
"""

from .conditional import conditional_markdown, conditional_tables
from .metrics import c2st_auc, w1_table
from .report import run_validation, write_report
from .samples import build_samples, flash_targets

__all__ = ["build_samples", "c2st_auc", "conditional_markdown", "conditional_tables", "flash_targets", "run_validation", "w1_table", "write_report"]
