"""Re-running the reference detector response on existing Gen events: the reference-side data tools.

* :func:`resimulate_events` — a chunk's Gen branches plus a fresh reference draw (``Jet_*``,
  ``Muon_*``) with another seed: training and validation use the current reference response
  whatever version wrote the file, and validation draws its independent reference′ this way.
* :func:`resimulate_file` (``flashsim resimulate``) — the same for a whole NanoAOD file, written
  to a new file (below).
* :func:`reference_fingerprint` — which version of the response drew (a hash of its source).

``resimulate_file``: apply the reference detector response to any NanoAOD with Gen collections.

Reads the event ids, ``genWeight``, ``Pileup_*`` and every ``Gen*`` collection (GenJet,
GenPart, and whatever else the file has, e.g. GenJetAK8, GenDressedLepton), draws new
reference ``Jet_*``/``Muon_*`` with :func:`flashsim_coffea.reference.simulate`, and writes them
with the Gen branches to a new NanoAOD file. The ``Runs`` tree is copied unchanged when the
input has one (so normalisation with ``genEventSumw`` keeps working), else rebuilt from the
events. Works chunk by chunk; random numbers are keyed on event identity, so the result does
not depend on the chunk size.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

import awkward as ak
import numpy as np
import uproot
from tqdm.auto import tqdm

from ..errors import MissingBranchesError, UserError
from ..nanoaod.conventions import EVENT_ID
from ..nanoaod.io import NanoAODWriter, check_output_path, is_counter, open_events, read_metadata
from ..noise import check_seed

__all__ = ["GEN_BRANCHES", "reference_fingerprint", "resimulate_events", "resimulate_file"]

#: branches the reference response reads (Gen collections, pile-up, event ids)
GEN_BRANCHES = re.compile(r"^(run|luminosityBlock|event|nGenJet|nGenPart|GenJet_.*|GenPart_.*|Pileup_.*)$")
REQUIRED_GEN = (
    "GenJet_pt", "GenJet_eta", "GenJet_phi", "GenJet_mass", "GenJet_partonFlavour", "GenJet_hadronFlavour",
    "GenPart_pt", "GenPart_eta", "GenPart_phi", "GenPart_mass", "GenPart_pdgId", "GenPart_status",
    "GenPart_statusFlags", "GenPart_genPartIdxMother", "Pileup_nTrueInt",
)


def _kept_branches(tree) -> list[str]:
    names = list(tree.keys())
    keep = []
    for n in names:
        if is_counter(n, names):
            continue  # uproot recreates counters from the jagged branches
        if n in EVENT_ID or n == "genWeight" or n.startswith(("Gen", "Pileup_")):
            keep.append(n)
    return keep


def reference_fingerprint() -> str:
    """SHA-256 (12 hex digits) of the reference response's source files (every module of
    :mod:`flashsim_coffea.reference` but this one): which version drew."""
    h = hashlib.sha256()
    for f in sorted(Path(__file__).parent.glob("*.py")):
        if f.name != Path(__file__).name:
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def resimulate_events(events: ak.Array, seed: int, source: str = "<input>") -> ak.Array:
    """The Gen branches of ``events`` (names matching :data:`GEN_BRANCHES`) plus a reference
    draw of ``Jet_*``/``Muon_*`` with ``seed``."""
    from . import respond

    gen = {k: events[k] for k in ak.fields(events) if GEN_BRANCHES.match(k)}
    return ak.Array({**gen, **respond(gen, seed=seed, source=source)})


def resimulate_file(input_path: str | os.PathLike, output: str | os.PathLike, seed: int, force: bool = False, step: int = 50_000,
                    progress: bool = True, record: bool = True) -> dict:
    """Write ``output`` = Gen branches of ``input_path`` + new reference Jet/Muon (see module doc).

    ``record=False`` keeps the input's metadata as it is (no ``resimulated_from``/``reference_seed``):
    with a generated file's own generation seed the output is then the file ``flashsim generate``
    writes with the current reference (``python -m flashsim_coffea.samples --reference-only``)."""
    from . import respond

    check_seed(seed)
    if Path(input_path).resolve() == Path(output).resolve():
        raise UserError(f"output {output} is the input file; choose another name")
    tree = open_events(input_path)
    missing = [b for b in (*EVENT_ID, *REQUIRED_GEN) if b not in tree.keys()]
    if missing:
        hint = " (is it collision data? only simulation has Gen collections)" if "GenPart_pdgId" in missing else ""
        raise MissingBranchesError(str(input_path), missing, "resimulate it" + hint)
    out = check_output_path(output, force, inputs=[input_path])  # a hard link to the input too
    names = _kept_branches(tree)
    t0 = time.perf_counter()
    writer = NanoAODWriter(out)
    n_jets = n_muons = 0
    try:
        with tqdm(total=tree.num_entries, unit="ev", desc="resimulate", disable=not progress) as bar:
            for chunk in tree.iterate(names, step_size=step, how=dict):
                if "genWeight" not in chunk:
                    chunk["genWeight"] = np.ones(len(chunk["event"]), dtype=np.float32)
                reco = respond(chunk, seed)
                n_jets += int(ak.sum(ak.num(reco["Jet_pt"])))
                n_muons += int(ak.sum(ak.num(reco["Muon_pt"])))
                writer.extend({**chunk, **reco})
                bar.update(len(chunk["event"]))
        meta = read_metadata(input_path)
        if record:
            meta.update({"resimulated_from": str(input_path), "reference_seed": seed})
        runs = None
        with uproot.open(input_path) as f:
            if "Runs" in f:
                runs = f["Runs"].arrays(how=dict)
        writer.close(xsec_pb=meta.get("xsec_pb", float("nan")), filter_efficiency=meta.get("filter_efficiency", 1.0), metadata=meta, runs=runs)
    except BaseException:
        writer.abort()
        raise
    return {"events": tree.num_entries, "jets": n_jets, "muons": n_muons, "seconds": time.perf_counter() - t0, "output": str(out)}
