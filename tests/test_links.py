"""FlashSim in a user's own analysis: ``matched_gen`` and the index links stay right on any events
array (sliced, masked, repeated, eager, folded, a chunk of the Runner); links of other collections
into the FlashSim ``Jet``/``Muon`` are recomputed or absent; folds keep Σ weights."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from conftest import real_file
from flashsim_coffea.errors import UserError
from flashsim_coffea.inject import FlashSim
from flashsim_coffea.nanoaod.conventions import delta_r
from flashsim_coffea.nanoaod.links import AK4_CONE, AK8_CONE, chunk_rows, link_fields, link_target


def events_of(path, mode="virtual", **kw):
    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode=mode, **kw).events()


@pytest.fixture(scope="module")
def sim(tiny_models):
    return FlashSim(jets=tiny_models["jets"], muons=tiny_models["muons"], pileup_jets=False)


@pytest.fixture(scope="module")
def path(generated):
    return generated("vbf_hmm", 120, seed=5)[0]


@pytest.fixture(scope="module")
def ev(path):
    return events_of(path)


@pytest.fixture(scope="module")
def full(sim, ev):
    return sim.inject(ev)


def _gen_of(objs):
    g = objs.matched_gen
    return ak.fill_none(g.pt, -1.0), ak.fill_none(g.eta, -9.0), ak.is_none(g, axis=1)


def _assert_same(a, b):
    """Same objects and the same matched Gen objects, event by event."""
    for coll in ("Jet", "Muon"):
        assert ak.all(ak.num(a[coll]) == ak.num(b[coll]))
        assert ak.all(a[coll].pt == b[coll].pt)
        for x, y in zip(_gen_of(a[coll]), _gen_of(b[coll])):
            assert ak.all(x == y)
        for link in ("muonIdx1", "muonIdx2", "nMuons") if coll == "Jet" else ("jetIdx",):  # and the same links
            assert ak.all(a[coll][link] == b[coll][link])
    # local indices resolve in the event's own Gen collections (what the G index does globally)
    mu = a.Muon
    local = a.GenPart[ak.mask(mu.genPartIdx, mu.genPartIdx >= 0)]
    assert ak.all(ak.fill_none(local.pt == mu.matched_gen.pt, True))
    jet = a.Jet
    assert ak.all(ak.fill_none(a.GenJet[ak.mask(jet.genJetIdx, jet.genJetIdx >= 0)].pt == jet.matched_gen.pt, True))


SKIMS = {
    "slice": lambda ev: slice(37, None),
    "step": lambda ev: slice(None, None, -3),
    "empty": lambda ev: slice(0, 0),
    "mask": lambda ev: ak.to_numpy(ak.num(ev.GenJet) >= 4),
    "repeat+reorder": lambda ev: np.array([9, 3, 3, 50, 0, len(ev) - 1]),
}


@pytest.mark.parametrize("skim", list(SKIMS))
def test_matched_gen_survives_skims(sim, ev, full, skim):
    sel = SKIMS[skim](ev)
    out = sim.inject(ev[sel])
    _assert_same(out, full[sel])
    assert ak.all(abs(ak.flatten(out.Muon.matched_gen.pdgId)) == 13)
    ratio = ak.to_numpy(ak.flatten(out.Muon.pt / out.Muon.matched_gen.pt))
    assert len(out) == 0 if skim == "empty" else abs(np.median(ratio) - 1) < 0.05


def test_matched_gen_on_concatenated_skims(sim, ev, full):
    """Two skims of one chunk put together (e.g. two categories) are still rows of that chunk."""
    few, many = ak.to_numpy(ak.num(ev.GenJet) < 4), ak.to_numpy(ak.num(ev.GenJet) >= 4)
    out = sim.inject(ak.concatenate([ev[many], ev[few]]))
    _assert_same(out, ak.concatenate([full[many], full[few]]))


def test_matched_gen_on_eager_chunk_and_folds(sim, path, ev, full):
    # a chunk as the Runner reads it (entry range), then skimmed, in eager mode
    chunk = events_of(path, mode="eager", entry_start=20, entry_stop=100)
    sel = ak.to_numpy(ak.num(chunk.GenPart) > 0) & (np.arange(len(chunk)) % 3 != 0)
    out = sim.inject(chunk[sel])
    _assert_same(out, full[20:100][sel])
    # folded after a skim: fold 0 of each event is the unfolded injection
    sk = ev[SKIMS["mask"](ev)]
    folded = sim.inject(sk, folds=3)
    for coll in ("Jet", "Muon"):
        gen_pt = ak.fill_none(folded[coll].matched_gen.pt, -1.0)
        assert ak.all(gen_pt[::3] == _gen_of(sim.inject(sk)[coll])[0])
        # every fold's Gen match is the same Gen object list of that event
        idx = np.repeat(np.arange(len(sk)), 3)
        gen = (sk.GenPart if coll == "Muon" else sk.GenJet)[idx]
        field = "genPartIdx" if coll == "Muon" else "genJetIdx"
        i = folded[coll][field]
        assert ak.all(ak.fill_none(gen[ak.mask(i, i >= 0)].pt == folded[coll].matched_gen.pt, True))


def test_chunk_rows_duplicates_resolved_or_refused():
    ids = {"run": np.ones(5, np.int64), "luminosityBlock": np.ones(5, np.int64), "event": np.array([1, 2, 2, 3, 2])}
    gen = [[1.0] * n for n in (1, 2, 3, 1, 2)]
    orig = ak.Array({**ids, "GenPart": gen})
    orig = ak.Array(orig, attrs={"@original_array": orig})
    assert list(chunk_rows(orig[[3, 0]])) == [3, 0]
    assert list(chunk_rows(orig[[2, 3]])) == [2, 3]  # event 2 three times: the Gen content tells
    with pytest.raises(UserError, match=r"appears 3 times"):
        chunk_rows(orig[[1]])  # rows 1 and 4 have the same Gen content
    stranger = ak.Array({**{k: v[:1] + 7 for k, v in ids.items()}, "GenPart": gen[:1]}, attrs={"@original_array": orig})
    with pytest.raises(UserError, match=r"not in the chunk"):
        chunk_rows(stranger)


def test_link_targets_read_from_names():
    r = {"Jet", "Muon"}
    assert link_target("Electron", "jetIdx", r) == ("Jet", "closest", 0)
    assert link_target("Jet", "muonIdx1", r) == ("Muon", "nth", 0)
    assert link_target("Jet", "muonIdx2", r) == ("Muon", "nth", 1)
    assert link_target("FatJet", "muonIdx3SJ", r) == ("Muon", "closest", 0)
    assert link_target("Electron", "jetIdxG", r) == ("Jet", "global", 0)
    assert link_target("Jet", "muonIdxG", r) == ("Muon", "global", 0)
    assert link_target("Jet", "nMuons", r) == ("Muon", "count", 0)
    assert link_target("boostedTau", "jetIdx", r) == ("Jet", "closest", 0)  # not declared by coffea: the name tells
    for other in ("subJetIdx1", "genJetIdx", "genPartIdx", "electronIdx", "nElectrons", "fsrPhotonIdx", "pt"):
        assert link_target("FatJet", other, r) is None
    # where coffea's schemas declare another target, it wins over the name (PFNano: a FatJet's candidates)
    for coll in ("FatJetPFCands", "FatJetSVs", "GenJetCands"):
        assert link_target(coll, "jetIdx", r) is None and link_target(coll, "jetIdxG", r) is None
    assert link_target("JetPFCands", "jetIdx", r) == ("Jet", "closest", 0)


def test_links_of_other_targets_are_left_alone():
    """A PFNano candidate's jetIdx into FatJet is not touched when Jet is replaced."""
    from flashsim_coffea.nanoaod.links import relink

    ev = ak.Array({"Jet": [[{"eta": 2.0, "phi": 0.0}]], "FatJet": [[{"eta": 0.0, "phi": 0.0}]],
                   "FatJetPFCands": [[{"eta": 0.1, "phi": 0.0, "jetIdx": 0}, {"eta": 1.9, "phi": 0.0, "jetIdx": 0}]],
                   "Electron": [[{"eta": 1.9, "phi": 0.1, "jetIdx": 5}, {"eta": 0.0, "phi": 0.0, "jetIdx": 0}]]})
    out = relink(ev, ["Jet"])
    assert out.FatJetPFCands.jetIdx.tolist() == [[0, 0]]
    assert out.Electron.jetIdx.tolist() == [[0, -1]]


def _check_links(out, replaced=("Jet", "Muon")):
    """Every link into the replaced collections names an object within the cone (or −1): the
    closest for jetIdx-like links, the k-th in collection (pT) order for muonIdx1/2-like ones;
    counts match; no global index is left."""
    n_links = 0
    for coll, names in link_fields(out, replaced).items():
        src = out[coll]
        cone = AK8_CONE if coll.startswith("FatJet") else AK4_CONE
        for name in names:
            target, kind, rank = link_target(coll, name, replaced)
            assert kind != "global", f"{coll}.{name} left in place"
            tgt = out[target]
            pairs = ak.cartesian([src, tgt], axis=1, nested=True)
            dr = delta_r(pairs["0"].eta, pairs["0"].phi, pairs["1"].eta, pairs["1"].phi)
            inside = ak.sum(dr < cone, axis=2)
            if kind == "count":
                assert ak.all(src[name] == inside)
                continue
            idx = src[name]
            assert ak.all((idx >= -1) & (idx < ak.num(tgt)))
            assert ak.all((idx >= 0) == (inside > rank)), f"{coll}.{name}"
            d_link = ak.fill_none(ak.firsts(dr[ak.singletons(ak.mask(idx, idx >= 0), axis=-1)], axis=2), 0.0)
            assert ak.all(d_link < cone)
            if kind == "closest":
                best = ak.fill_none(ak.min(dr, axis=2), np.inf)
                assert ak.all(ak.where(idx >= 0, abs(d_link - best) < 1e-6, True)), f"{coll}.{name} is not the closest"
            else:  # the (rank+1)-th target inside the cone, in the target's order
                local = ak.local_index(dr, axis=2)
                kth = ak.fill_none(ak.pad_none(local[dr < cone], rank + 1, axis=2)[:, :, rank], -1)
                assert ak.all(idx == kth), f"{coll}.{name}"
                assert ak.all(tgt.pt[:, :-1] >= tgt.pt[:, 1:])  # collection order is pT order
            n_links += int(ak.sum(idx >= 0))
    return n_links


@pytest.mark.parametrize("name", ["nano_tt_v12.root", "nano_dy.root"])
def test_no_stale_links_on_real_nanoaod(name, tiny_models):
    ev = events_of(real_file(name))
    before = link_fields(ev, ("Jet", "Muon"))
    sim = FlashSim(jets=tiny_models["jets"], muons=tiny_models["muons"], pileup_jets=False)
    out = sim.inject(ev[ak.to_numpy(ak.num(ev.GenJet) >= 1)])
    after = link_fields(out, ("Jet", "Muon"))
    # every local link of the file is still there (recomputed), the global ones are gone
    for coll, names in before.items():
        assert {n for n in names if not n.endswith("G")} <= set(after[coll])
    assert {"Electron", "Muon", "Jet"} <= set(after) and "jetIdx" in after["Electron"]
    assert {"muonIdx1", "muonIdx2", "nMuons"} <= set(ak.fields(out.Jet)) and "jetIdx" in ak.fields(out.Muon)
    assert _check_links(out) > 50
    with pytest.raises(AttributeError, match="jetIdxG"):
        out.Electron.matched_jet  # coffea would resolve it in the file's jets: absent, not wrong
    # collections FlashSim does not simulate pass through unchanged (apart from their links)
    assert ak.all(out.Electron.pt == ev.Electron.pt[ak.to_numpy(ak.num(ev.GenJet) >= 1)])


def test_links_when_one_collection_is_kept(tiny_models):
    """FlashSim muons with the file's jets: the file's Jet.muonIdx1/2/nMuons point into FlashSim muons."""
    ev = events_of(real_file("nano_dy.root"))
    out = FlashSim(jets=False, muons=tiny_models["muons"], pileup_jets=False).inject(ev)
    assert ak.all(out.Jet.pt == ev.Jet.pt)
    assert "muonIdxG" not in ak.fields(out.Jet) and "jetIdx" in ak.fields(out.Muon)
    assert _check_links(out, replaced=("Muon",)) > 10


@pytest.mark.parametrize("folds", [1, 4])
def test_folds_keep_the_normalisation(sim, ev, folds):
    out = sim.inject(ev, folds=folds)
    assert len(out) == folds * len(ev)
    assert ak.to_numpy(out.genWeight).dtype == ak.to_numpy(ev.genWeight).dtype
    np.testing.assert_allclose(float(ak.sum(out.genWeight)), float(ak.sum(ev.genWeight)), rtol=1e-6)
    assert "Generator" not in ak.fields(ev)  # generated files: genWeight only (real files: below)
    if folds == 1:
        assert ak.all(out.genWeight == ev.genWeight)
    else:
        assert ak.all(out.genWeight[::folds] == (ak.to_numpy(ev.genWeight).astype(np.float64) / folds).astype(np.float32))


def test_folds_scale_every_absolute_weight_of_a_real_file(tiny_models):
    ev = events_of(real_file("nano_tt_v12.root"))
    out = FlashSim(jets=tiny_models["jets"], muons=tiny_models["muons"], pileup_jets=False).inject(ev, folds=4)
    for get in (lambda e: e.genWeight, lambda e: e.Generator.weight, lambda e: e.LHEWeight.originalXWGTUP):
        np.testing.assert_allclose(float(ak.sum(get(out))), float(ak.sum(get(ev))), rtol=1e-6)
    assert ak.all(out.LHEScaleWeight[::4] == ev.LHEScaleWeight)  # relative weights unchanged
