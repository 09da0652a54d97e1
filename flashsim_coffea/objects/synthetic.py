"""Training pairs from the reference response: on synthetic Gen events, or re-run on files.

``extract_synthetic(spec, n_events, gen_seed, ref_seed)`` draws Gen events with
:func:`flashsim_coffea.reference.synthetic.synthetic_gen` (numpy; broad pT/η/flavour/muon
coverage, not physics), runs :func:`flashsim_coffea.reference.simulate` on them and extracts
matched pairs exactly like :func:`.extract.extract_events`. Used for tests and to pre-train
flows before fine-tuning on generated (Pythia) events; fully determined by the two seeds.

``resimulated(events, seed)`` replaces a chunk's reco collections by a fresh reference
draw on its Gen branches (names matching :data:`GEN_BRANCHES`): training and validation then
use the current reference response whatever version wrote the file, and validation draws
its independent reference′ the same way.
"""

from __future__ import annotations

import re

import awkward as ak

from .extract import Extracted, extract_events
from .spec import ObjectSpec

__all__ = ["extract_synthetic", "resimulated", "reference_fingerprint", "GEN_BRANCHES"]


def reference_fingerprint() -> str:
    """SHA-256 (12 hex digits) of the reference-response source files: which version drew."""
    import hashlib
    from pathlib import Path

    import flashsim_coffea.reference as ref

    h = hashlib.sha256()
    for f in sorted(Path(ref.__file__).parent.glob("*.py")):
        h.update(f.read_bytes())
    return h.hexdigest()[:12]

#: branches the reference response reads (Gen collections, pile-up, event ids)
GEN_BRANCHES = re.compile(r"^(run|luminosityBlock|event|nGenJet|nGenPart|GenJet_.*|GenPart_.*|Pileup_.*)$")


def resimulated(events: ak.Array, seed: int, source: str = "<input>") -> ak.Array:
    """The Gen branches of ``events`` plus a reference draw of Jet_*/Muon_* with ``seed``."""
    from flashsim_coffea.reference import simulate

    gen = {k: events[k] for k in ak.fields(events) if GEN_BRANCHES.match(k)}
    return ak.Array({**gen, **simulate(gen, seed=seed, source=source)})


def extract_synthetic(spec: ObjectSpec, n_events: int, gen_seed: int = 1, ref_seed: int = 11,
                      chunk: int = 50_000, progress: bool = False) -> tuple[Extracted, dict]:
    from tqdm.auto import tqdm

    from flashsim_coffea.reference import simulate
    from flashsim_coffea.reference.synthetic import synthetic_gen

    parts = []
    for i, start in enumerate(tqdm(range(0, n_events, chunk), desc=f"synthetic {spec.name}", disable=not progress)):
        gen = synthetic_gen(min(chunk, n_events - start), seed=gen_seed * 100_000 + i)
        events = ak.Array({**gen, **simulate(gen, seed=ref_seed)})
        parts.append(extract_events(spec, events))
    data = Extracted.concatenate(parts, spec)
    provenance = {
        "spec": spec.name,
        "spec_hash": spec.hash(),
        "source": f"synthetic_gen({n_events} events, seed {gen_seed}) + reference.simulate(seed {ref_seed})",
        "reference_fingerprint": reference_fingerprint(),
        "n_events": data.n_events,
        "n_reco": data.n_reco,
        "n_objects": len(data),
        "dropped": dict(data.drops),
        "clipped": dict(data.clipped),
    }
    return data, provenance
