"""The NanoAOD fields analyses read: present on FlashSim Muon/Jet as on the reference, filled as the
README says (simulated / derived / from Gen), and a user's selection runs the same way on both."""

from __future__ import annotations

import re
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from flashsim_coffea.inject import FlashSim
from flashsim_coffea.nanoaod.derived import charm_vs_light, muon_pf_iso_id, muon_tight_charge
from flashsim_coffea.objects import get_spec
from flashsim_coffea.samples import sample_path

README = Path(__file__).resolve().parents[1] / "README.md"

#: the fields of the issue's list that a user's processor reads
MUON_FIELDS = ("pdgId", "looseId", "tightId", "pfIsoId", "miniPFRelIso_all", "tkRelIso", "genPartFlav", "jetIdx",
               "tightCharge", "highPtId")
JET_FIELDS = ("btagDeepFlavCvL", "btagDeepFlavCvB", "rawFactor", "chEmEF", "neEmEF", "chHEF", "neHEF", "nMuons",
              "muonIdx1", "muonIdx2")


def user_selection(events) -> dict:
    """What a user's processor does: tight, isolated muons and charm-tagged central jets."""
    mu = events.Muon
    good_mu = mu[mu.tightId & (mu.pfIsoId >= 4) & (mu.pt > 20) & (abs(mu.pdgId) == 13)]
    jets = events.Jet
    central = jets[(jets.pt > 25) & (abs(jets.eta) < 2.4)]
    charm = central[(central.btagDeepFlavCvL > 0.1) & (central.btagDeepFlavCvB > 0.2)]
    raw_pt = central.pt * (1 - central.rawFactor)
    return {"n_mu": ak.num(good_mu), "n_charm": ak.num(charm), "raw_pt": ak.flatten(raw_pt),
            "prompt": ak.flatten(good_mu.genPartFlav == 1), "n_central": ak.num(central)}


@pytest.fixture(scope="module")
def reference_and_flashsim():
    path = sample_path("vbf_hmm")
    events = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode="eager",
                                         metadata={"filename": str(path)}).events()
    return events, FlashSim().inject(events)


@pytest.mark.slow
def test_user_selection_runs_the_same_way_on_flashsim_and_the_reference(reference_and_flashsim):
    ref, flash = reference_and_flashsim
    for coll, fields in (("Muon", MUON_FIELDS), ("Jet", JET_FIELDS)):
        for f in fields:
            assert f in ref[coll].fields and f in flash[coll].fields, f"{coll}.{f}"
            a, b = ak.flatten(ref[coll][f]), ak.flatten(flash[coll][f])
            assert ak.type(a).content == ak.type(b).content, f"{coll}.{f}: {ak.type(a)} vs {ak.type(b)}"
    r, s = user_selection(ref), user_selection(flash)
    n = len(ref)
    # VBF H→μμ: two prompt tight isolated muons in most events, on both sides alike (2000 events:
    # binomial errors ~1 %)
    two_r, two_s = np.mean(ak.to_numpy(r["n_mu"]) >= 2), np.mean(ak.to_numpy(s["n_mu"]) >= 2)
    assert 0.4 < two_r < 0.95 and abs(two_s - two_r) < 0.05, (two_r, two_s)
    assert np.mean(ak.to_numpy(r["prompt"])) > 0.95 and np.mean(ak.to_numpy(s["prompt"])) > 0.95
    # charm-tag rates per central jet and the raw pT below the corrected one for most hard jets
    cr = ak.sum(r["n_charm"]) / ak.sum(r["n_central"])
    cs = ak.sum(s["n_charm"]) / ak.sum(s["n_central"])
    assert abs(cs - cr) < 0.05, (cr, cs)
    assert abs(np.median(ak.to_numpy(s["raw_pt"])) / np.median(ak.to_numpy(r["raw_pt"])) - 1) < 0.05
    assert n == len(flash)


@pytest.mark.slow
def test_derived_fields_are_nanoaod_definitions_of_the_simulated_ones(reference_and_flashsim):
    """On FlashSim objects the derived fields follow exactly from the simulated ones (NanoAOD's
    definitions, tests/test_derived.py checks them on real CMS files); the five energy fractions
    sum to 1 within their 6-bit rounding; genPartFlav is the Gen muon's origin (prompt in VBF H→μμ)."""
    _, flash = reference_and_flashsim
    mu = flash.Muon
    flat = {f: ak.to_numpy(ak.flatten(mu[f])) for f in ("pfRelIso04_all", "pfIsoId", "ptErr", "pt", "tightCharge",
                                                        "charge", "pdgId", "isPFcand", "isGlobal", "isTracker", "looseId")}
    np.testing.assert_array_equal(flat["pfIsoId"], muon_pf_iso_id(flat["pfRelIso04_all"]))
    np.testing.assert_array_equal(flat["tightCharge"], muon_tight_charge(flat["ptErr"], flat["pt"]))
    np.testing.assert_array_equal(flat["pdgId"], -13 * flat["charge"])
    np.testing.assert_array_equal(flat["looseId"], flat["isPFcand"] & (flat["isGlobal"] | flat["isTracker"]))
    assert set(np.unique(ak.to_numpy(ak.flatten(mu.highPtId)))) <= {0, 1, 2}
    gen_flav = ak.to_numpy(ak.flatten(mu.genPartFlav))
    assert set(np.unique(gen_flav)) <= {1, 3, 4, 5, 15} and np.mean(gen_flav == 1) > 0.9
    jets = flash.Jet
    c, b = (ak.to_numpy(ak.flatten(jets[f])) for f in ("btagDeepFlavC", "btagDeepFlavB"))
    cvl = ak.to_numpy(ak.flatten(jets.btagDeepFlavCvL))
    np.testing.assert_allclose(cvl, charm_vs_light(c, b), rtol=2e-3)  # 10-bit storage
    total = sum(ak.to_numpy(ak.flatten(jets[f])) for f in ("muEF", "chHEF", "neHEF", "chEmEF", "neEmEF"))
    assert np.all(np.abs(total - 1) < 0.02)


def test_readme_lists_every_field_flashsim_fills_and_how():
    """The README's field table names each field of the FlashSim collections with its source, as
    the specs declare it (``ObjectSpec.field_sources``)."""
    text = README.read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+?) \|", text, flags=re.M))
    for name in ("jets", "muons"):
        spec = get_spec(name)
        for field, how in spec.field_sources().items():
            key = f"{spec.reco}_{field}"
            assert key in rows, f"README lacks {key} in its field table"
            assert how in rows[key], f"README: {key} is '{rows[key]}', the spec says {how}"


@pytest.mark.slow
def test_gen_part_flav_is_the_references_for_the_same_gen_muon(reference_and_flashsim):
    """genPartFlav comes from the Gen muon (its status flags and mother chain), so a FlashSim muon
    and the reference muon of the same Gen muon carry the same code."""
    ref, flash = reference_and_flashsim

    def by_gen(muons):
        evt = ak.to_numpy(ak.flatten(ak.broadcast_arrays(ak.local_index(muons.pt, axis=0), muons.pt)[0]))
        key = evt * 1000 + ak.to_numpy(ak.flatten(muons.genPartIdx))
        return dict(zip(key.tolist(), ak.to_numpy(ak.flatten(muons.genPartFlav)).tolist()))

    r, s = by_gen(ref.Muon), by_gen(flash.Muon)
    common = set(r) & set(s)
    assert len(common) > 0.8 * len(s)
    assert all(r[k] == s[k] for k in common)
