"""`flashsim resimulate` on generated and on real CMS NanoAOD."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from conftest import real_file
from flashsim_coffea.cli import main
from flashsim_coffea.errors import MissingBranchesError
from flashsim_coffea.reference.resimulate import resimulate_file as resimulate


def load(path):
    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode="eager").events()


@pytest.mark.parametrize("name", ["nano_dy.root", "nano_tt_v12.root"])
def test_resimulate_real_cms_nanoaod(tmp_path, name):
    src = real_file(name)
    out = tmp_path / "resim.root"
    summary = resimulate(src, out, seed=5, progress=False)
    assert summary["events"] == uproot.open(src)["Events"].num_entries
    ev, orig = load(out), load(src)
    # Gen and event-id branches kept exactly
    for f in ("run", "luminosityBlock", "event"):
        assert ak.all(ev[f] == orig[f])
    assert ak.all(ev.GenJet.pt == orig.GenJet.pt) and ak.all(ev.GenPart.pdgId == orig.GenPart.pdgId)
    # new reco collections with valid cross-references into the kept Gen collections
    assert ak.all((ev.Jet.genJetIdx >= -1) & (ev.Jet.genJetIdx < ak.num(ev.GenJet)))
    matched = ev.Jet[ev.Jet.genJetIdx >= 0]
    assert ak.mean(abs(matched.pt / matched.matched_gen.pt - 1)) < 0.3
    mu = ev.Muon[ev.Muon.genPartIdx >= 0]
    assert ak.all(abs(mu.matched_gen.pdgId) == 13) and ak.all(mu.matched_gen.status == 1)
    # reco muons exist where the real file had matched muons (most prompt muons are reconstructed)
    assert ak.sum(ak.num(ev.Muon)) >= 0.5 * ak.sum(ak.num(orig.Muon[orig.Muon.genPartIdx >= 0]))
    # the Runs tree is copied, so genEventSumw normalisation keeps working
    with uproot.open(src) as f:
        if "Runs" in f:
            a = f["Runs"].arrays(library="np")
            b = uproot.open(out)["Runs"].arrays(library="np")
            assert set(a) <= set(b)
            for k in a:
                if a[k].dtype != object:
                    assert np.all(a[k] == b[k])


def test_resimulate_is_reproducible_and_seeded(tmp_path):
    src = real_file("nano_tt_v12.root")
    a = resimulate(src, tmp_path / "a.root", seed=5, progress=False, step=37)
    b = resimulate(src, tmp_path / "b.root", seed=5, progress=False)
    c = resimulate(src, tmp_path / "c.root", seed=6, progress=False)
    ja, jb, jc = (uproot.open(x["output"])["Events"]["Jet_pt"].array() for x in (a, b, c))
    assert ak.all(ja == jb)  # chunking (step 37 vs all at once) does not matter
    assert not (ak.all(ak.num(ja) == ak.num(jc)) and ak.all(ja == jc))


def test_resimulate_refuses_data_without_gen(tmp_path, capsys):
    src = real_file("nano_dimuon.root")
    with pytest.raises(MissingBranchesError) as err:
        resimulate(src, tmp_path / "x.root", seed=1, progress=False)
    assert "GenJet_pt" in str(err.value) and "GenPart_pdgId" in str(err.value) and "nano_dimuon.root" in str(err.value)
    assert main(["resimulate", str(src), "-o", str(tmp_path / "x.root"), "--seed", "1"]) == 2
    assert "collision data" in capsys.readouterr().err
    assert not (tmp_path / "x.root").exists()


def test_resimulate_generated_file_keeps_metadata(generated, tmp_path):
    path, _ = generated("vbf_hmm", 100)
    out = tmp_path / "re.root"
    resimulate(path, out, seed=77, progress=False)
    from flashsim_coffea.nanoaod.io import read_metadata

    meta = read_metadata(out)
    assert meta["process"] == "vbf_hmm" and meta["reference_seed"] == 77
    a = uproot.open(path)["Events"].arrays(["GenPart_pt", "Jet_pt"], how=dict)
    b = uproot.open(out)["Events"].arrays(["GenPart_pt", "Jet_pt"], how=dict)
    assert ak.all(a["GenPart_pt"] == b["GenPart_pt"])
    assert not ak.all(ak.flatten(a["Jet_pt"])[:50] == ak.flatten(b["Jet_pt"])[:50])


def test_resimulate_bad_paths(tmp_path, capsys):
    assert main(["resimulate", str(tmp_path / "missing.root"), "-o", str(tmp_path / "o.root"), "--seed", "1"]) == 2
    assert "no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.root"
    junk.write_bytes(b"not a root file")
    assert main(["resimulate", str(junk), "-o", str(tmp_path / "o.root"), "--seed", "1"]) == 2
    assert "not a readable ROOT file" in capsys.readouterr().err


def test_resimulate_cli_no_progress(tmp_path, capsys):
    """`--no-progress` (the one progress switch of every command) silences the progress bar."""
    src = real_file("nano_tt_v12.root")
    assert main(["resimulate", str(src), "-o", str(tmp_path / "a.root"), "--seed", "5", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "wrote" in out and "resimulate" not in err
    assert uproot.open(tmp_path / "a.root")["Events"].num_entries == uproot.open(src)["Events"].num_entries
