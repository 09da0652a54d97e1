"""`flashsim generate`: Pythia 8 + fastjet NanoAOD-format samples."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from flashsim_coffea.cli import main
from flashsim_coffea.generate.driver import generate
from flashsim_coffea.generate.genpart import BIT
from flashsim_coffea.generate.processes import PROCESSES
from flashsim_coffea.nanoaod.io import read_metadata


def events_of(path):
    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode="eager").events()


def flag(parts, name):
    return (parts.statusFlags >> BIT[name]) & 1 == 1


def test_list_prints_every_process(capsys):
    assert main(["generate", "--list"]) == 0
    out = capsys.readouterr().out
    for name in PROCESSES:
        assert name in out
    assert "dipoleRecoil" in out and "no EWK Zjj" in out


def test_vbf_sample_is_nanoaod(generated):
    path, summary = generated("vbf_hmm", 100)
    ev = events_of(path)
    assert len(ev) == 100
    for coll in ("GenJet", "GenPart", "Jet", "Muon", "Pileup"):
        assert coll in ev.fields
    tree = uproot.open(path)["Events"]
    for b in ("run", "luminosityBlock", "event", "genWeight", "nGenJet", "GenJet_partonFlavour", "GenJet_hadronFlavour",
              "GenPart_statusFlags", "GenPart_genPartIdxMother", "Jet_genJetIdx", "Muon_genPartIdx",
              "Pileup_nTrueInt", "Pileup_nPU", "Pileup_pudensity", "Pileup_gpudensity", "Pileup_sumEOOT", "Pileup_sumLOOT"):
        assert b in tree.keys(), b
    # event identity unique
    ids = np.stack([ak.to_numpy(ev.run), ak.to_numpy(ev.luminosityBlock), ak.to_numpy(ev.event)], axis=1)
    assert len(np.unique(ids, axis=0)) == len(ev)
    # Runs tree for normalisation, with the cross section
    runs = uproot.open(path)["Runs"].arrays(library="np")
    assert runs["genEventCount"][0] == 100 and runs["genEventSumw"][0] == pytest.approx(float(ak.sum(ev.genWeight)))
    assert 1e-4 < runs["XSecPb"][0] < 1e-2  # VBF H (3.8 pb LO-ish) x BR(mumu) 2.2e-4
    assert read_metadata(path)["process"] == "vbf_hmm"
    # NanoAOD behaviours: H -> mumu from the hard process, GenJets pT > 10 and sorted
    hard_mu = ev.GenPart[(abs(ev.GenPart.pdgId) == 13) & flag(ev.GenPart, "isHardProcess")]
    assert ak.all(ak.num(hard_mu) == 2)
    assert ak.all(abs((hard_mu[:, 0] + hard_mu[:, 1]).mass - 125.0) < 1.0)
    assert ak.all(ev.GenJet.pt > 10) and ak.all(ev.GenJet.pt[:, :-1] >= ev.GenJet.pt[:, 1:])
    # last-copy muons from the hard process are prompt, final state, and point back to the Higgs
    final_mu = ev.GenPart[(abs(ev.GenPart.pdgId) == 13) & (ev.GenPart.status == 1) & flag(ev.GenPart, "fromHardProcess")]
    assert ak.all(flag(final_mu, "isPrompt")) and ak.all(flag(final_mu, "isLastCopy"))
    anc = final_mu.parent
    for _ in range(5):
        anc = ak.where(abs(anc.pdgId) == 13, anc.parent, anc)
    assert ak.all(ak.flatten(anc.pdgId) == 25)
    # reco cross-references behave: matched_gen of jets/muons exists for matched objects
    jets_matched = ev.Jet[ev.Jet.genJetIdx >= 0]
    assert ak.all(abs(jets_matched.eta - jets_matched.matched_gen.eta) < 0.4)
    mu = ev.Muon[ev.Muon.genPartIdx >= 0]
    assert ak.all(abs(mu.matched_gen.pdgId) == 13)


def test_ttbar_mumu_both_w_to_munu_and_physical_xsec(generated):
    """ttbar_mumu: both W → μν in every event; XSecPb is σ(tt̄)·BR(W → μν)² (Pythia applies the BR)."""
    path, summary = generated("ttbar_mumu", 40, seed=5)
    gp = events_of(path).GenPart
    ws = gp[(abs(gp.pdgId) == 24) & flag(gp, "isLastCopy")]
    hard_mu = gp[(abs(gp.pdgId) == 13) & (gp.status == 1) & flag(gp, "isPrompt") & flag(gp, "fromHardProcess")]
    assert ak.all(ak.num(ws) == 2) and ak.all(ak.num(hard_mu) == 2)
    assert ak.all(ak.sum(hard_mu.pdgId, axis=1) == 0)  # μ⁺μ⁻
    incl = generated("ttbar", 60)[1]
    br = 0.1081  # Pythia's BR(W → μν)
    assert 0.6 < summary.xsec_pb / (incl.xsec_pb * br**2) < 1.6, (summary.xsec_pb, incl.xsec_pb)
    assert read_metadata(path)["process"] == "ttbar_mumu"


def test_genpart_mothers_and_flags_consistent(generated):
    path, _ = generated("ttbar", 60)
    ev = events_of(path)
    gp = ev.GenPart
    n = ak.num(gp)
    mom = gp.genPartIdxMother
    assert ak.all((mom >= -1) & (mom < n))
    # bits are consistent: isLastCopy & isFirstCopy exist, hard-process top quarks are prompt
    tops = gp[(abs(gp.pdgId) == 6) & flag(gp, "isHardProcess")]
    assert ak.all(ak.num(tops) >= 2) and ak.all(flag(tops, "isPrompt"))
    # muons from b-hadron decays are not prompt and flagged as direct hadron decay products
    mu = gp[(abs(gp.pdgId) == 13) & (gp.status == 1)]
    from_had = mu[flag(mu, "isDirectHadronDecayProduct")]
    assert ak.sum(ak.num(from_had)) > 0
    assert not ak.any(flag(from_had, "isPrompt"))
    # tt̄ -> 2 b-quark GenJets per event on average with hadronFlavour 5, their partonFlavour mostly ±5
    bj = ev.GenJet[ev.GenJet.hadronFlavour == 5]
    assert 1.0 < ak.mean(ak.num(bj)) < 3.0
    assert ak.mean(abs(ak.flatten(bj.partonFlavour)) == 5) > 0.6
    assert set(np.unique(ak.to_numpy(ak.flatten(ev.GenJet.hadronFlavour)))) <= {0, 4, 5}
    # status codes are NanoAOD's
    assert set(np.unique(ak.to_numpy(ak.flatten(gp.status)))) <= {1, 2, *range(21, 30), *range(31, 80)}


def test_pileup_profile(generated):
    path, _ = generated("ttbar", 60)
    pu = uproot.open(path)["Events"].arrays(filter_name="Pileup_*", library="np")
    assert 20 < pu["Pileup_nTrueInt"].mean() < 45
    assert np.all(pu["Pileup_nTrueInt"] == np.floor(pu["Pileup_nTrueInt"]))
    assert np.corrcoef(pu["Pileup_nTrueInt"], pu["Pileup_nPU"])[0, 1] > 0.7
    assert np.corrcoef(pu["Pileup_nTrueInt"], pu["Pileup_sumEOOT"])[0, 1] > 0.9


@pytest.mark.slow  # runs Pythia
def test_workers_do_not_change_events(tmp_path):
    a = generate("vbf_hmm", 40, 7, tmp_path / "w1.root", workers=1, progress=False, block_size=15)
    b = generate("vbf_hmm", 40, 7, tmp_path / "w2.root", workers=2, progress=False, block_size=15)
    ta = uproot.open(a.path)["Events"].arrays(how=dict)
    tb = uproot.open(b.path)["Events"].arrays(how=dict)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert ak.all(ta[k] == tb[k]), k
    c = generate("vbf_hmm", 40, 8, tmp_path / "s8.root", progress=False, block_size=15)
    tc = uproot.open(c.path)["Events"].arrays(["GenJet_pt"], how=dict)
    assert not ak.all(ak.num(tc["GenJet_pt"]) == ak.num(ta["GenJet_pt"])) or not ak.all(tc["GenJet_pt"] == ta["GenJet_pt"])


@pytest.mark.slow  # runs Pythia
def test_vbf_filter_records_efficiency(tmp_path):
    s = generate("ewk_mumujj", 8, 3, tmp_path / "f.root", filter_name="vbf", progress=False)
    assert s.n_tried > s.n_events and 0 < s.filter_efficiency < 1
    meta = read_metadata(s.path)
    assert meta["filter"] == "vbf" and meta["filter_efficiency"] == pytest.approx(s.filter_efficiency)
    assert meta["xsec_pb"] == pytest.approx(meta["xsec_pb_before_filter"] * s.filter_efficiency)
    ev = events_of(s.path)
    mu = ev.GenPart[(abs(ev.GenPart.pdgId) == 13) & (ev.GenPart.status == 1) & (ev.GenPart.pt > 15)]
    assert ak.all(ak.num(mu) >= 2)
    jets = ev.GenJet[ev.GenJet.pt > 20]
    assert ak.all(ak.num(jets) >= 2)


@pytest.mark.slow  # runs Pythia
def test_vbf_window_filter_keeps_the_mass_window(tmp_path):
    """``vbf_window``: the VBF topology and the leading Gen muon pair's mass within (100, 160) GeV."""
    import vector

    s = generate("vbf_hmm", 12, 4, tmp_path / "w.root", filter_name="vbf_window", progress=False)
    assert read_metadata(s.path)["filter"] == "vbf_window" and 0 < s.filter_efficiency < 1
    ev = events_of(s.path)
    mu = ev.GenPart[(abs(ev.GenPart.pdgId) == 13) & (ev.GenPart.status == 1) & (ev.GenPart.pt > 15)
                    & (abs(ev.GenPart.eta) < 2.5)]
    mu = mu[ak.argsort(mu.pt, axis=1, ascending=False)][:, :2]
    p4 = vector.zip({k: mu[k] for k in ("pt", "eta", "phi", "mass")})
    m = (p4[:, 0] + p4[:, 1]).mass
    assert ak.all((m > 100) & (m < 160))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "higgs", "-n", "5", "--seed", "1", "-o", "{tmp}/x.root"], "valid processes: ttbar, ttbar_mumu, dy"),
        (["generate", "ttbar", "-n", "0", "--seed", "1", "-o", "{tmp}/x.root"], "-n must be a positive"),
        (["generate", "ttbar", "-n", "5", "--seed", "0", "-o", "{tmp}/x.root"], "outside Pythia's range"),
        (["generate", "ttbar", "-n", "5", "--seed", "900000001", "-o", "{tmp}/x.root"], "outside Pythia's range"),
        (["generate", "ttbar", "-n", "5", "--seed", "1", "-o", "{tmp}/nofolder/x.root"], "does not exist"),
        (["generate", "ttbar", "-n", "5", "--seed", "1", "-o", "{tmp}/exists.root"], "--force"),
        (["generate", "ttbar", "-n", "5", "--seed", "1"], "missing -o"),
    ],
)
def test_bad_input_is_refused_before_work(tmp_path, capsys, argv, message):
    (tmp_path / "exists.root").write_bytes(b"keep me")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert (tmp_path / "exists.root").read_bytes() == b"keep me"
    assert not (tmp_path / "x.root").exists()


def test_unwritable_output_folder(tmp_path, capsys):
    from conftest import read_only_folder

    with read_only_folder(tmp_path) as ro:
        assert main(["generate", "ttbar", "-n", "5", "--seed", "1", "-o", str(ro / "x.root")]) == 2
        assert "not writable" in capsys.readouterr().err


def test_package_exports_and_picklable_errors():
    import pickle

    import flashsim_coffea
    from flashsim_coffea.errors import MissingBranchesError

    assert flashsim_coffea.FoldHist.__name__ == "FoldHist" and flashsim_coffea.FlashSim.__name__ == "FlashSim"
    err = pickle.loads(pickle.dumps(MissingBranchesError("f.root", ["GenJet_pt"], "run FlashSim")))
    assert isinstance(err, MissingBranchesError) and str(err) == "f.root: missing branch(es) GenJet_pt needed to run FlashSim"


@pytest.mark.slow  # runs Pythia
def test_cli_no_progress(tmp_path, capsys):
    """`--no-progress` (the one progress switch of every command) silences the progress bar."""
    out = tmp_path / "q.root"
    assert main(["generate", "vbf_hmm", "-n", "5", "--seed", "3", "-o", str(out), "--no-progress"]) == 0
    assert "generate vbf_hmm" not in capsys.readouterr().err
    assert uproot.open(out)["Events"].num_entries == 5


def test_a_rare_filter_is_announced_before_the_run():
    """`flashsim generate ttbar --filter vbf -n 10` keeps ~6e-4 of the events: say so before minutes of silence."""
    from flashsim_coffea.generate.filters import expected_cost

    msg = expected_cost("ttbar", "vbf", 10)
    assert msg is not None and "6.0e-04" in msg and "Pythia events" in msg
    assert expected_cost("vbf_hmm", None, 10) is None and expected_cost("ewk_mumujj", "vbf", 10) is None
