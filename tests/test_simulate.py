"""``flashsim simulate``: FlashSim Jet/Muon written to NanoAOD, equal to ``FlashSim().inject`` bit
for bit; ``flashsim run OUT --mode fullsim`` equals ``flashsim run IN --mode flashsim``; folds,
Runs, provenance, dropped index branches, chunk independence, several inputs, clear refusals.

Input: the first 300 events of the bundled ``vbf_hmm.root`` (with its Runs and metadata).
"""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest
import uproot
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from conftest import REPO, real_file
from flashsim_coffea.cards import sha256_file
from flashsim_coffea.cli import main
from flashsim_coffea.errors import MissingBranchesError, UserError
from flashsim_coffea.inject import FlashSim
from flashsim_coffea.nanoaod.io import METADATA_KEY, NanoAODWriter, is_counter, read_metadata
from flashsim_coffea.simulate_file import dropped_branches, simulate_file, written_fields

try:  # the runner module is being split out of commands/run.py; same signature in both
    from flashsim_coffea.runner import run_processor
except ImportError:  # pragma: no cover
    from flashsim_coffea.commands.run import run_processor

SAMPLE = REPO / "flashsim_coffea" / "samples" / "vbf_hmm.root"
N_EVENTS = 300
ANALYSIS_FIELDS = {"Muon": ("pt", "eta", "phi", "mass", "charge", "mediumId", "pfRelIso04_all", "ptErr"),
                   "Jet": ("pt", "eta", "phi", "mass", "jetId", "puId", "qgl")}


def _write_subset(path, start, stop, drop=()):
    """Events [start, stop) of the bundled sample (all branches but ``drop``), its Runs and metadata."""
    tree = uproot.open(SAMPLE)["Events"]
    names = [n for n in tree.keys() if not is_counter(n, tree.keys()) and n not in drop]
    w = NanoAODWriter(path)
    w.extend(tree.arrays(names, entry_start=start, entry_stop=stop, how=dict))
    w.close(metadata=read_metadata(SAMPLE), runs=uproot.open(SAMPLE)["Runs"].arrays(how=dict))
    return path


def _events(path, **kw):
    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode="eager",
                                       metadata={"filename": str(path)}, **kw).events()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("simulate")


@pytest.fixture(scope="module")
def source(folder):
    return _write_subset(folder / "in.root", 0, N_EVENTS)


@pytest.fixture(scope="module")
def out1(source, folder):
    return folder / "out1.root", simulate_file(source, folder / "out1.root", folds=1, progress=False)


@pytest.fixture(scope="module")
def out3(source, folder):
    return folder / "out3.root", simulate_file(source, folder / "out3.root", folds=3, chunksize=70, progress=False)


def _assert_same(a, b, what):
    a, b = ak.to_numpy(ak.flatten(a, axis=None)), ak.to_numpy(ak.flatten(b, axis=None))
    assert a.dtype == b.dtype, f"{what}: {a.dtype} vs {b.dtype}"
    np.testing.assert_array_equal(a, b, err_msg=what)


@pytest.mark.parametrize("folds", [1, 3])
def test_jets_and_muons_equal_inject_bit_for_bit(source, out1, out3, folds):
    path = (out1 if folds == 1 else out3)[0]
    written = _events(path)  # readable by coffea's NanoAODSchema
    expected = FlashSim().inject(_events(source), folds=folds)
    assert len(written) == len(expected) == N_EVENTS * folds
    for coll in ("Jet", "Muon"):
        fields = written_fields(coll, ak.fields(expected[coll]))
        assert set(fields) <= set(ak.fields(written[coll])), coll
        assert set(ak.fields(expected[coll])) - set(fields) <= {"genJetIdxG", "genPartIdxG", "charge"}
        assert "charge" in fields or coll == "Jet"  # Jet.charge: coffea's 0.0, as for any NanoAOD
        _assert_same(ak.num(written[coll]), ak.num(expected[coll]), f"n{coll}")
        for f in fields:
            _assert_same(written[coll][f], expected[coll][f], f"{coll}_{f}")
    # coffea resolves the Gen cross-references of the written file
    jets = written.Jet
    assert ak.all(jets.matched_gen.pt == written.GenJet.pt[jets.genJetIdx])
    assert ak.all(abs(written.Muon.matched_gen.pdgId) == 13)
    # the analysis' fields keep NanoAOD's dtypes in the file (uproot)
    tree = uproot.open(path)["Events"]
    types = {"float": "float[]", "int": "int32_t[]", "bool": "bool[]"}
    for coll, fields in ANALYSIS_FIELDS.items():
        for f in fields:
            kind = {"charge": "int", "jetId": "int", "puId": "int", "mediumId": "bool"}.get(f, "float")
            assert tree[f"{coll}_{f}"].typename == types[kind], f"{coll}_{f}"


def test_folds_branch_event_ids_weights_and_carried_branches(source, out3):
    path, summary = out3
    assert summary["events_in"] == N_EVENTS and summary["events_out"] == 3 * N_EVENTS
    a = uproot.open(source)["Events"].arrays(["run", "luminosityBlock", "event", "genWeight", "GenJet_pt", "Pileup_nTrueInt"])
    b = uproot.open(path)["Events"].arrays(["run", "luminosityBlock", "event", "fold", "genWeight", "GenJet_pt", "Pileup_nTrueInt"])
    assert ak.to_numpy(b.fold).dtype == np.int32
    np.testing.assert_array_equal(ak.to_numpy(b.fold), np.tile([0, 1, 2], N_EVENTS))
    rep = np.repeat(np.arange(N_EVENTS), 3)
    for k in ("run", "luminosityBlock", "event", "Pileup_nTrueInt"):
        _assert_same(b[k], a[k][rep], k)
    _assert_same(b.GenJet_pt, a.GenJet_pt[rep], "GenJet_pt")
    # genWeight / N, stored as float32: Σ over the file = Σ over the input
    _assert_same(b.genWeight, (ak.to_numpy(a.genWeight).astype(np.float64)[rep] / 3).astype(np.float32), "genWeight")
    assert np.isclose(ak.sum(b.genWeight), ak.sum(a.genWeight), rtol=1e-6)


def test_runs_and_provenance(source, out1, out3):
    src_runs = uproot.open(source)["Runs"].arrays(library="np")
    for path, summary in (out1, out3):
        runs = uproot.open(path)["Runs"].arrays(library="np")
        assert runs.keys() == src_runs.keys()
        for k in runs:
            np.testing.assert_array_equal(runs[k], src_runs[k], err_msg=k)  # genEventSumw stays the input's
        meta = read_metadata(path)
        assert meta["process"] == "vbf_hmm"  # the input's own metadata is kept
        sim = meta["simulate"]
        assert sim["folds"] == summary["folds"] and sim["genweight_scale"] == 1 / summary["folds"]
        assert sim["flashsim_coffea_version"]
        for name in ("jets", "muons"):
            m = sim["models"][name]
            assert m["shipped"] and m["model"] == name
            assert m["card_sha256"] == sha256_file(REPO / "flashsim_coffea" / "models" / name / "card.json")
        (inp,) = sim["inputs"]
        assert inp == {"name": "in.root", "bytes": source.stat().st_size, "sha256": sha256_file(source), "events": N_EVENTS}
        assert {"Jet_pt", "Jet_muonIdx1", "Muon_jetIdx", "nJet", "nMuon"} <= set(sim["dropped_branches"])
        assert set(sim["counts"]) == {"Jet", "Muon"} and sim["counts"]["Jet"]["n_reco"] == summary["objects"]["Jet"]
        raw = str(uproot.open(path)[METADATA_KEY])
        assert str(path.parent) not in raw and str(REPO) not in raw  # no absolute paths
        # replaced collections and the indices into them are gone (the links between the FlashSim
        # collections are FlashSim's own); Gen and event branches stay
        keys = set(uproot.open(path)["Events"].keys())
        from flashsim_coffea.objects import get_spec

        muons = {k for k in keys if k.startswith("Muon_")}  # FlashSim's fields (README table) + its links, nothing else
        assert muons == {f"Muon_{f}" for f in get_spec("muons").field_sources()} | {"Muon_jetIdx"}
        assert {"Jet_muonIdx1", "Jet_muonIdx2", "Jet_nMuons", "Muon_jetIdx"} <= keys
        assert {"nJet", "nMuon", "Jet_pt", "Muon_pt", "GenPart_pdgId", "GenJet_pt", "fold"} <= keys


def test_dropped_branches_rule():
    names = ["nJet", "Jet_pt", "Jet_muonIdx1", "nMuon", "Muon_jetIdx", "Electron_jetIdx", "Electron_pt", "Photon_jetIdx",
             "Tau_jetIdx", "FsrPhoton_muonIdx", "boostedTau_jetIdx", "FatJet_muonIdx3SJ", "FatJet_subJetIdx1",
             "Jet_genJetIdx", "GenJet_pt", "nJet_pt", "JetCHS_pt", "MET_pt", "Electron_jetRelIso"]
    assert dropped_branches(names, {"Jet", "Muon"}) == [
        "nJet", "Jet_pt", "Jet_muonIdx1", "nMuon", "Muon_jetIdx", "Electron_jetIdx", "Photon_jetIdx", "Tau_jetIdx",
        "FsrPhoton_muonIdx", "boostedTau_jetIdx", "FatJet_muonIdx3SJ", "Jet_genJetIdx", "nJet_pt"]


def _analysis(path, mode, folds=1):
    from flashsim_coffea.processors import VBFHmmProcessor

    out = run_processor({"vbf": {"files": {str(path): "Events"}}}, VBFHmmProcessor(mode=mode, folds=folds), "iterative",
                        chunksize=1000)
    return out["vbf"]


def test_fullsim_on_output_equals_flashsim_on_input(source, out1):
    fullsim = _analysis(out1[0], "fullsim")
    flashsim = _analysis(source, "flashsim")
    assert fullsim["nevents"] == flashsim["nevents"] == N_EVENTS and fullsim["sumw"] == flashsim["sumw"]
    assert fullsim["cutflow"] == flashsim["cutflow"]
    assert fullsim["cutflow_weighted"] == flashsim["cutflow_weighted"]
    assert flashsim["hists"]["presel"]["mass"].values(flow=True).sum() > 0
    for region, hs in flashsim["hists"].items():
        for var, h in hs.items():
            other = fullsim["hists"][region][var]
            np.testing.assert_array_equal(other.values(flow=True), h.values(flow=True), err_msg=f"{region}/{var}")
            np.testing.assert_array_equal(other.variances(flow=True), h.variances(flow=True), err_msg=f"{region}/{var}")


def test_fullsim_on_folded_output_matches_flashsim_folds(source, out3):
    """With genWeight / N, fullsim on the N-fold file gives FlashSim's fold-averaged contents."""
    fullsim = _analysis(out3[0], "fullsim")
    flashsim = _analysis(source, "flashsim", folds=3)
    assert fullsim["cutflow"] == flashsim["cutflow"]  # both count (event, fold) entries
    assert np.isclose(fullsim["sumw"], flashsim["sumw"], rtol=1e-6)  # Σ genWeight of the Gen events
    for step, w in flashsim["cutflow_weighted"].items():  # one convention: each copy weighs w/N in both
        assert np.isclose(fullsim["cutflow_weighted"][step], w, rtol=1e-6), step
    for region, hs in flashsim["hists"].items():
        for var, h in hs.items():
            np.testing.assert_allclose(fullsim["hists"][region][var].values(flow=True), h.values(flow=True), rtol=1e-6,
                                       atol=1e-9, err_msg=f"{region}/{var}")


def _all_branches(path):
    with uproot.open(path) as f:
        return {t: f[t].arrays(library="ak", how=dict) for t in ("Events", "Runs")}


def test_chunksize_does_not_change_the_file(source, out1, folder):
    small = folder / "out1_small.root"
    simulate_file(source, small, folds=1, chunksize=37, progress=False)
    a, b = _all_branches(out1[0]), _all_branches(small)
    for tree in a:
        assert list(a[tree]) == list(b[tree])
        for k in a[tree]:
            _assert_same(a[tree][k], b[tree][k], f"{tree}/{k}")


def test_several_inputs_are_concatenated(source, out3, folder):
    first = _write_subset(folder / "first.root", 0, 120)
    second = _write_subset(folder / "second.root", 120, N_EVENTS)
    merged = folder / "merged.root"
    assert main(["simulate", str(first), str(second), "-o", str(merged), "--folds", "3", "--no-progress"]) == 0
    a, b = _all_branches(out3[0])["Events"], _all_branches(merged)
    for k in a:
        _assert_same(b["Events"][k], a[k], k)
    runs = uproot.open(source)["Runs"].arrays(library="np")
    assert len(b["Runs"]["genEventSumw"]) == 2  # one Runs entry per input, as hadd does
    np.testing.assert_array_equal(ak.to_numpy(b["Runs"]["genEventSumw"]), np.repeat(runs["genEventSumw"], 2))
    assert [i["name"] for i in read_metadata(merged)["simulate"]["inputs"]] == ["first.root", "second.root"]
    # inputs with different branch sets are refused, naming the branch
    other = _write_subset(folder / "other.root", 0, 50, drop=("Pileup_sumLOOT",))
    with pytest.raises(UserError, match="Pileup_sumLOOT"):
        simulate_file([first, other], folder / "bad.root", progress=False)
    assert not (folder / "bad.root").exists()


def test_refusals_are_clear_and_leave_no_file(source, out1, folder, capsys):
    path = out1[0]
    before = path.stat().st_mtime_ns
    assert main(["simulate", str(source), "-o", str(path), "--no-progress"]) == 2
    assert "already exists; use --force" in capsys.readouterr().err and path.stat().st_mtime_ns == before
    assert main(["simulate", str(source), "-o", str(source), "--force", "--no-progress"]) == 2
    assert "is an input file" in capsys.readouterr().err
    assert main(["simulate", str(source), str(source), "-o", str(folder / "twice.root")]) == 2
    assert "given twice" in capsys.readouterr().err
    assert main(["simulate", str(source), "-o", str(folder / "nofolder" / "x.root")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["simulate", str(source), "-o", str(folder / "f.root"), "--folds", "0"]) == 2
    assert "folds" in capsys.readouterr().err
    nogen = _write_subset(folder / "nogen.root", 0, 20, drop=("GenJet_pt",))
    with pytest.raises(MissingBranchesError, match="GenJet_pt"):
        simulate_file(nogen, folder / "nogen_out.root", progress=False)
    assert not (folder / "nogen_out.root").exists() and not list(folder.glob(".*tmp*"))
    with pytest.raises(UserError, match="already has a 'fold' branch"):
        simulate_file(path, folder / "again.root", progress=False)


@pytest.mark.slow  # the shipped models on a real file (~15 s)
@pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning")  # coffea on the input's Photon_mass
def test_real_cms_nanoaod(tmp_path):
    src = real_file("nano_dy.root")
    out = tmp_path / "dy.root"
    s = simulate_file(src, out, folds=2, progress=False)
    ev, orig = _events(out), _events(src)
    assert len(ev) == 2 * len(orig) and s["objects"]["Jet"] == ak.sum(ak.num(ev.Jet))
    assert "jetIdx" not in ev.Electron.fields and "muonIdx" not in ev.FsrPhoton.fields
    assert ak.all(ev.Electron.pt == orig.Electron.pt[np.repeat(np.arange(len(orig)), 2)])
    a, b = uproot.open(src)["Runs"].arrays(library="ak", how=dict), uproot.open(out)["Runs"].arrays(library="ak", how=dict)
    for k in ("genEventSumw_", "LHEScaleSumw_"):
        assert ak.all(a[k] == b[k])
    assert json.loads(str(uproot.open(out)[METADATA_KEY]))["simulate"]["inputs"][0]["name"] == "nano_dy.root"
