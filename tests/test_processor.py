"""VBFHmmProcessor: fullsim and gen modes, folds through the flashsim hook, bad inputs."""

from __future__ import annotations

import pickle
import awkward as ak
import hist
import numpy as np
import pytest
from coffea import processor
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from conftest import REAL_NANOAOD, assert_same_output, needs_real
from flashsim_coffea.analysis import analyse, reco_jets, reco_muons
from flashsim_coffea.analysis import CUTFLOW_STEPS
from flashsim_coffea.errors import MissingBranchesError, UserError
from flashsim_coffea.folds import FoldBatch
from flashsim_coffea.hists import FoldHist
from flashsim_coffea.noise import normal
from flashsim_coffea.processors import VBFHmmProcessor

NanoAODSchema.warn_missing_crossrefs = False


@pytest.fixture(scope="module")
def vbf_file(generated) -> str:
    return str(generated("vbf_hmm", 200, seed=11)[0])


@pytest.fixture(scope="module")
def gen_only_file(tmp_path_factory) -> str:
    from flashsim_coffea.generate.driver import generate

    path = tmp_path_factory.mktemp("proc") / "gen_only.root"
    generate("vbf_hmm", 20, 12, path, progress=False, reference=False)
    return str(path)


def _events(path: str, dataset: str = "ds"):
    return NanoEventsFactory.from_root(
        {path: "Events"}, mode="virtual", metadata={"dataset": dataset, "filename": path}
    ).events()


def _run(proc, files: dict[str, list[str]], chunksize: int = 100_000):
    runner = processor.Runner(executor=processor.IterativeExecutor(status=False), schema=NanoAODSchema, chunksize=chunksize)
    return runner({ds: {"files": {f: "Events" for f in fs}} for ds, fs in files.items()}, processor_instance=proc, treename="Events")


def _check_consistency(out: dict, n_events: int) -> None:
    cf = out["cutflow"]
    assert cf["all"] == out["nevents"] == n_events
    counts = [cf[s] for s in CUTFLOW_STEPS]
    assert counts == sorted(counts, reverse=True)
    h = out["hists"]
    sr = h["SR"]["mass"].values(flow=True).sum()
    sb = h["SB"]["mass"].values(flow=True).sum()
    assert sr + sb == pytest.approx(out["cutflow_weighted"]["mass_window"])  # SR ∪ SB = the window
    for var in h["SR"]:  # every variable filled for every region event (flow bins included)
        assert h["SR"][var].values(flow=True).sum() == pytest.approx(sr)


# --------------------------------------------------------------------------- fullsim / gen
@pytest.mark.parametrize("mode", ["fullsim", "gen"])
def test_modes_on_generated_file(vbf_file, mode):
    out = _run(VBFHmmProcessor(mode=mode), {"vbf": [vbf_file]})["vbf"]
    _check_consistency(out, 200)
    assert out["cutflow"]["mass_window"] > 10  # VBF H->mumu passes the VBF selection often
    assert out["sumw"] == pytest.approx(200, rel=1e-3)
    assert out["files"] == {vbf_file: 200}
    assert type(out["hists"]["SR"]["dnn_atanh"]) is hist.Hist  # not a FoldHist (a hist.Hist subclass)
    dnn = out["hists"]["SR"]["dnn_atanh"]
    assert dnn.values().sum() > 0
    # presel has the lead-muon isolation and second-jet pT the reference FlashSim study showed (docs/analysis.md)
    assert out["hists"]["presel"]["mu1_iso"].values(flow=True).sum() >= out["hists"]["SR"]["mass"].values(flow=True).sum()
    assert "j2_pt" in out["hists"]["presel"]


def test_direct_process_and_empty_chunk(vbf_file):
    proc = VBFHmmProcessor(dnn=False)
    ev = _events(vbf_file)
    out = proc.process(ev)["ds"]
    assert "dnn_atanh" not in out["hists"]["SR"]
    empty = proc.process(ev[:0])["ds"]
    assert empty["empty_chunks"] == 1 and empty["nevents"] == 0
    assert all(v == 0 for v in empty["cutflow"].values())
    merged = processor.accumulate([{"ds": out}, {"ds": empty}])["ds"]
    assert merged["chunks"] == 2 and merged["empty_chunks"] == 1 and merged["nevents"] == 200


@needs_real
@pytest.mark.parametrize("mode", ["fullsim", "gen"])
def test_real_cms_nanoaod(mode):
    out = _run(VBFHmmProcessor(mode=mode), {"dy": [str(REAL_NANOAOD / "nano_dy.root")]})["dy"]
    _check_consistency(out, 40)
    assert out["cutflow"]["two_muons"] > 0
    assert out["sumw"] > 0


# --------------------------------------------------------------------------- bad input
def test_required_branches():
    assert "Muon_ptErr" in VBFHmmProcessor(mode="fullsim").required_branches()
    assert "GenJet_pt" in VBFHmmProcessor(mode="gen").required_branches()
    assert VBFHmmProcessor(mode="gen").missing_branches({"GenJet_pt"})[0] == "GenPart_pt"


def test_bad_arguments():
    with pytest.raises(UserError, match="folds"):
        VBFHmmProcessor(mode="flashsim", folds=0)
    with pytest.raises(UserError, match="folds"):
        VBFHmmProcessor(mode="flashsim", folds=-2)
    with pytest.raises(UserError, match="needs mode 'flashsim'"):
        VBFHmmProcessor(mode="fullsim", folds=3)
    with pytest.raises(UserError, match="unknown mode"):
        VBFHmmProcessor(mode="delphes")


@pytest.mark.slow  # gen_only_file runs Pythia
def test_fullsim_without_reco_branches_names_them(gen_only_file):
    with pytest.raises(MissingBranchesError, match=r"Muon_pt.*fullsim"):
        VBFHmmProcessor(mode="fullsim").process(_events(gen_only_file))
    # the same Gen-only file is fine in gen mode
    out = VBFHmmProcessor(mode="gen", dnn=False).process(_events(gen_only_file))["ds"]
    assert out["nevents"] == 20


@needs_real
def test_gen_mode_on_collision_data_names_branches():
    with pytest.raises(MissingBranchesError, match="GenPart_pt"):
        VBFHmmProcessor(mode="gen").process(_events(str(REAL_NANOAOD / "nano_dimuon.root")))
    out = VBFHmmProcessor(mode="fullsim").process(_events(str(REAL_NANOAOD / "nano_dimuon.root")))["ds"]
    assert out["sumw"] == out["nevents"] == 40  # data: weight 1


# --------------------------------------------------------------------------- folds via the hook
class FakeFlashSim:
    """Stand-in for FlashSim (its ``prepare(events).simulate(collection, batch)`` protocol): the
    file's muons/jets with pT smeared per (event, object, fold) by keyed noise."""

    def prepare(self, events, need=None):
        return _FakeChunk(events)

    def required_branches(self):
        return []

    def inject(self, events, folds: int = 1):
        chunk, batch = _FakeChunk(events), FoldBatch.all_folds(len(events), folds)
        ev = ak.with_field(batch.take(events), batch.fold, "fold")
        for coll in ("Muon", "Jet"):
            ev = ak.with_field(ev, chunk.simulate(coll, batch), coll)
        return ev


class _FakeChunk:
    info: dict = {}

    def __init__(self, events):
        self.events = events
        self.candidates = np.ones(len(events), dtype=bool)

    def simulate(self, coll, batch, attach=True):
        sigma = {"Muon": 0.01, "Jet": 0.15}[coll]
        c = batch.take(self.events[coll])
        counts = ak.to_numpy(ak.num(c, axis=1))
        keys = (np.repeat(ak.to_numpy(self.events.event)[batch.entry], counts),
                ak.to_numpy(ak.flatten(ak.local_index(c, axis=1))), np.repeat(batch.fold, counts))
        smear = ak.unflatten(1.0 + sigma * normal(3, coll, *keys), counts)
        return ak.with_field(c, c.pt * smear, "pt")


def test_folds_through_the_flashsim_hook(vbf_file):
    folds = 5
    proc = VBFHmmProcessor(mode="flashsim", folds=folds, flashsim=FakeFlashSim())
    out = _run(proc, {"vbf": [vbf_file]}, chunksize=70)["vbf"]  # several chunks
    h = out["hists"]["SR"]["mjj"]
    assert isinstance(h, FoldHist) and h.folds == folds
    assert out["cutflow"]["all"] == 200 * folds  # fold entries
    assert out["nevents"] == 200
    counts = [out["cutflow"][s] for s in CUTFLOW_STEPS]
    assert counts == sorted(counts, reverse=True)

    # direct evaluation of the upsampling formulas, event by event
    ev = FakeFlashSim().inject(_events(vbf_file), folds=folds)
    res = analyse(reco_muons(ev), reco_jets(ev), dnn=False)
    sr = res.regions["SR"]
    axis = h.axes[0]
    ev_id = ak.to_numpy(ev.event)
    w = ak.to_numpy(ev.genWeight).astype(float)
    val = np.zeros(axis.size + 2)
    var = np.zeros(axis.size + 2)
    for e in np.unique(ev_id[sr]):
        m = sr & (ev_id == e)
        c = np.bincount(axis.index(res.variables["mjj"][m]) + 1, minlength=axis.size + 2)
        val += w[m][0] * c / folds
        var += (w[m][0] * c / folds) ** 2
    np.testing.assert_allclose(h.values(flow=True), val, rtol=1e-12)
    np.testing.assert_allclose(h.variances(flow=True), var, rtol=1e-12)
    # upsampling: the fold-weighted error is larger than the naive per-fold one
    naive = np.sqrt(np.sum((w[sr] / folds) ** 2))
    assert np.sqrt(h.variances(flow=True).sum()) >= naive


def test_processor_is_a_small_stateless_bundle():
    """The processor carries only configuration: its FlashSim holds model paths, so it pickles small
    into every coffea task, and a clone runs identically."""
    proc = VBFHmmProcessor(mode="flashsim", folds=3)
    blob = pickle.dumps(proc)
    assert len(blob) < 4000
    clone = pickle.loads(blob)
    assert clone.folds == 3 and repr(clone.flashsim) == repr(proc.flashsim)
    with pytest.raises(UserError, match="mode 'flashsim'"):
        VBFHmmProcessor(mode="fullsim", flashsim=proc.flashsim)


@pytest.mark.slow
@pytest.mark.parametrize("folds", [1, 5])
def test_staged_injection_is_bit_identical_to_simulating_everything(vbf_file, tiny_models, folds):
    """Jets simulated only for the dimuon (event, fold) pairs give the histograms of simulating
    every pair, for every chunking, fold batching and executor (the noise is keyed on identity):
    bit for bit with folds = 1, to floating-point rounding for FoldHists (assert_same_output)."""
    from flashsim_coffea.inject import FlashSim
    from flashsim_coffea.runner import run_processor

    sim = FlashSim(jets=tiny_models["jets"], muons=tiny_models["muons"])
    fileset = {"vbf": {"files": {vbf_file: "Events"}}}
    everything = run_processor(fileset, VBFHmmProcessor(mode="flashsim", folds=folds, flashsim=sim, staged=False), chunksize=1000)
    staged = run_processor(fileset, VBFHmmProcessor(mode="flashsim", folds=folds, flashsim=sim), chunksize=1000)
    info = staged["vbf"]["flashsim"]
    # fewer jets were simulated than Gen jets exist, and the histograms do not notice
    assert info["Jet"]["n_gen"] < everything["vbf"]["flashsim"]["Jet"]["n_gen"]
    assert info["Muon"]["n_gen"] < everything["vbf"]["flashsim"]["Muon"]["n_gen"]  # only events with ≥ 2 Gen muons
    assert_same_output(everything, staged)
    assert_same_output(everything, run_processor(fileset, VBFHmmProcessor(mode="flashsim", folds=folds, flashsim=sim),
                                                  chunksize=37))
    assert_same_output(everything, run_processor(fileset, VBFHmmProcessor(mode="flashsim", folds=folds, flashsim=sim,
                                                                          max_fold_events=150), chunksize=60))
    assert_same_output(everything, run_processor(fileset, VBFHmmProcessor(mode="flashsim", folds=folds, flashsim=sim),
                                                  "futures", workers=2, chunksize=50))


def test_non_finite_genweight_is_counted_not_propagated(vbf_file):
    ev = NanoEventsFactory.from_root({vbf_file: "Events"}, mode="eager", metadata={"dataset": "ds", "filename": vbf_file}).events()
    gw = ak.to_numpy(ev.genWeight).copy()
    gw[[3, 10]] = np.nan
    ev["genWeight"] = gw
    with pytest.warns(UserWarning, match="2 events with non-finite genWeight"):
        out = VBFHmmProcessor(mode="fullsim", dnn=False).process(ev)["ds"]
    assert out["nonfinite_genweight"] == 2 and np.isfinite(out["sumw"])
    assert np.isfinite(out["cutflow_weighted"]["all"])
