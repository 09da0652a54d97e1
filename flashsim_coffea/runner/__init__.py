"""Running a processor over a fileset with the coffea ``Runner``: the library behind ``flashsim run``,
``flashsim closure``, ``flashsim demo``, the benchmarks and the notebooks.

One job per module:

* :mod:`~flashsim_coffea.runner.fileset` — coffea's fileset forms made canonical (absolute
  paths, each file once, metadata kept), ``flashsim run``'s inputs read, entries per file;
* :mod:`~flashsim_coffea.runner.normalise` — ``norm_weight = σ · L · 1000 / Σ genEventSumw``
  per dataset for a luminosity L in fb⁻¹;
* :mod:`~flashsim_coffea.runner.executors` — the iterative, futures (a worker process that
  dies is replaced and its chunks resubmitted) and dask executors, shared by several runs; the
  only module that touches coffea's internals;
* :mod:`~flashsim_coffea.runner.errors` — errors of a run as one clear line, the bad-file
  policy (``--skip-bad-files``), coffea's cross-reference warnings filtered;
* :mod:`~flashsim_coffea.runner.interface` — the optional processor interface the runner uses
  (``check``, ``required_branches``, ``missing_branches``, ``empty_output``) with its defaults;
* :mod:`~flashsim_coffea.runner.run` — :func:`run_processor`: checks before any work, the run,
  the bad-input report per dataset;
* :mod:`~flashsim_coffea.runner.output` — output paths checked before the run, the
  ``.coffea`` and ROOT files written atomically after it (:mod:`flashsim_coffea.safe_write`);
* :mod:`~flashsim_coffea.runner.build` — the VBF H→μμ processor from command options.

The runner knows no analysis: what a processor's output holds is the processor's business.

>>> from flashsim_coffea.runner import load_fileset, run_processor
>>> from flashsim_coffea.processors import VBFHmmProcessor
>>> out = run_processor(load_fileset(["vbf.root"]), VBFHmmProcessor(mode="fullsim"), "futures", lumi=300)
"""

from __future__ import annotations

from .build import make_processor
from .errors import as_user_error, bad_file_errors, ignore_crossref_warnings, user_errors
from .executors import EXECUTORS, default_threads, executor_session, local_cluster
from .fileset import canonical_fileset, expected_events, load_fileset
from .interface import FlashSimProcessor, ProcessorDefaults, processor_interface
from .normalise import PB_TIMES_FB_INV, normalisation
from .output import check_outputs, save_outputs, write_root
from .run import run_processor

__all__ = [
    "EXECUTORS",
    "PB_TIMES_FB_INV",
    "FlashSimProcessor",
    "ProcessorDefaults",
    "as_user_error",
    "bad_file_errors",
    "canonical_fileset",
    "check_outputs",
    "default_threads",
    "local_cluster",
    "executor_session",
    "expected_events",
    "ignore_crossref_warnings",
    "load_fileset",
    "make_processor",
    "normalisation",
    "processor_interface",
    "run_processor",
    "save_outputs",
    "user_errors",
    "write_root",
]
