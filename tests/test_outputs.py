"""Analysis-ready histograms (flashsim_coffea.outputs): per-variable hist.Hist with dataset, region
and variation axes; the FlashSim-driven variation; the ROOT shape-file layout."""

from __future__ import annotations

import hist
import numpy as np
import pytest
import uproot

from flashsim_coffea.hists import FoldHist
from flashsim_coffea.outputs import NOMINAL, by_variable, flash_variation, write_root

AXIS = hist.axis.Regular(5, 0, 1, name="x")


def _h(values, weight=1.0):
    return hist.Hist(AXIS, storage=hist.storage.Weight()).fill(x=np.asarray(values), weight=weight)


def _fold(values, key, folds):
    return FoldHist(AXIS, folds=folds).fill(x=np.asarray(values), key=np.asarray(key))


def _output(**datasets):
    return {ds: {"hists": regions, "sumw": sumw} for ds, (regions, sumw) in datasets.items()}


def test_by_variable_slices_back_to_the_inputs():
    a, b, f = _h([0.1, 0.3, 0.3]), _h([0.9], 2.0), _fold([0.1, 0.1, 0.7, 0.7], [1, 1, 2, 2], folds=2)
    out = _output(sig=({"SR": {"x": a}, "presel": {"x": b}}, 3.0), bkg=({"SR": {"x": f}}, 2.0))
    h = by_variable(out)["x"]
    assert [ax.name for ax in h.axes] == ["dataset", "region", "variation", "x"]
    assert list(h.axes["dataset"]) == ["sig", "bkg"] and list(h.axes["variation"]) == [NOMINAL]
    one = h[{"dataset": "sig", "region": "SR", "variation": NOMINAL}]
    np.testing.assert_array_equal(one.values(flow=True), a.values(flow=True))
    fold = h[{"dataset": "bkg", "region": "SR", "variation": NOMINAL}]
    np.testing.assert_array_equal(fold.values(flow=True), f.values(flow=True))  # fold-weighted content
    np.testing.assert_array_equal(fold.variances(flow=True), f.variances(flow=True))
    assert h[{"dataset": "bkg", "region": "presel", "variation": NOMINAL}].values().sum() == 0  # not filled


def test_flash_variation_applies_the_flashsim_ratio_to_fullsim():
    full = _output(ref=({"SR": {"x": _h([0.1] * 10 + [0.5] * 10)}}, 20.0))
    # FlashSim: the varied sample doubles the first bin per unit Σw and keeps the third
    flash = _output(ref=({"SR": {"x": _h([0.1] * 5 + [0.5] * 5)}}, 10.0), alt=({"SR": {"x": _h([0.1] * 20 + [0.5] * 10)}}, 20.0))
    var = flash_variation(full, flash, "ref", "alt")
    pred = var["ref"]["hists"]["SR"]["x"]
    np.testing.assert_allclose(pred.values()[[0, 2]], [20.0, 10.0])
    assert pred.variances()[0] == pytest.approx(20.0**2 * (1 / 10 + 1 / 20 + 1 / 5))
    h = by_variable(full, {"alt_generator": var})["x"]
    assert list(h.axes["variation"]) == [NOMINAL, "alt_generator"]
    same = flash_variation(full, _output(ref=({"SR": {"x": _h([0.1] * 5 + [0.5] * 5)}}, 10.0),
                                         alt=({"SR": {"x": _h([0.1] * 5 + [0.5] * 5)}}, 10.0)), "ref", "alt")
    np.testing.assert_allclose(same["ref"]["hists"]["SR"]["x"].values(), full["ref"]["hists"]["SR"]["x"].values())
    with pytest.raises(KeyError, match="alt"):
        flash_variation(full, {"ref": flash["ref"]}, "ref", "alt")


def test_flash_variation_hand_values_and_empty_bins():
    """PRED = REF_Full·VAR_Flash/REF_Flash with σ² = PRED²(σ_RF²/RF² + σ_VF²/VF² + σ_RFl²/RFl²); 0, no error, where an input is empty."""
    axis = hist.axis.Regular(3, 0, 3, name="x")

    def weighted(values, variances):
        h = hist.Hist(axis, storage=hist.storage.Weight())
        view = h.view(flow=False)
        view.value, view.variance = values, variances
        return h

    full = _output(ref=({"SR": {"x": weighted([10.0, 4.0, 0.0], [10.0, 4.0, 0.0])}}, 1.0))
    flash = _output(ref=({"SR": {"x": weighted([5.0, 4.0, 2.0], [5.0, 4.0, 2.0])}}, 1.0),
                    alt=({"SR": {"x": weighted([6.0, 2.0, 3.0], [6.0, 2.0, 3.0])}}, 1.0))
    pred = flash_variation(full, flash, "ref", "alt")["ref"]["hists"]["SR"]["x"]
    np.testing.assert_allclose(pred.values(), [12.0, 2.0, 0.0])
    np.testing.assert_allclose(pred.variances()[:2], [144 * (1 / 10 + 1 / 6 + 1 / 5), 4 * (1 / 4 + 1 / 2 + 1 / 4)])
    assert pred.variances()[2] == 0.0


def test_root_layout_one_th1_per_dataset_region_variable_variation(tmp_path):
    full = _output(ref=({"SR": {"x": _h([0.1, 0.5])}, "SB": {"x": _h([0.7])}}, 2.0), other=({"SR": {"x": _h([0.3])}}, 1.0))
    flash = _output(ref=({"SR": {"x": _h([0.1, 0.5])}, "SB": {"x": _h([0.7])}}, 2.0),
                    alt=({"SR": {"x": _h([0.1, 0.1])}, "SB": {"x": _h([0.7])}}, 2.0))
    n = write_root(by_variable(full, {"alt": flash_variation(full, flash, "ref", "alt")}), tmp_path / "shapes.root")
    with uproot.open(tmp_path / "shapes.root") as f:
        names = sorted(k.split(";")[0] for k, cls in f.classnames(recursive=True).items() if cls.startswith("TH1"))
        assert names == ["other/SB/x", "other/SR/x", "ref/SB/x", "ref/SB/x_alt", "ref/SR/x", "ref/SR/x_alt"] and n == 6
        np.testing.assert_allclose(f["ref/SR/x"].values(), full["ref"]["hists"]["SR"]["x"].values())


def test_output_differences_compares_folded_histograms_to_rounding():
    """Plain histograms: bit for bit. Folded ones (FoldHist or its saved plain copy): binning and
    folds exactly, values and variances to ``fold_rtol``."""
    from flashsim_coffea.outputs import output_differences

    f = _fold([0.1, 0.1, 0.7, 0.7, 0.3, 0.3], [1, 1, 2, 2, 3, 3], folds=2)
    nudged = f.copy()
    nudged.view(flow=True).value *= 1 + 1e-15
    out = lambda h: _output(d=({"SR": {"x": h}}, 1.0))  # noqa: E731
    assert output_differences(out(f), out(nudged)) != []  # default: bit for bit
    assert output_differences(out(f), out(nudged), fold_rtol=1e-12) == []
    assert output_differences(out(f), out(f.to_hist()), fold_rtol=1e-12) == []  # the saved form
    far = f.copy()
    far.view(flow=True).variance *= 1 + 1e-9
    assert output_differences(out(f), out(far), fold_rtol=1e-12) != []
    assert "folds differ" in output_differences(out(f), out(_fold([0.1] * 3, [1] * 3, folds=3)), fold_rtol=1e-12)[0]
    assert "folds differ" in output_differences(out(f), out(_h([0.1, 0.7, 0.3])), fold_rtol=1e-12)[0]
    other_axis = FoldHist(hist.axis.Regular(5, 0, 2, name="x"), folds=2)
    assert "binning differs" in output_differences(out(f), out(other_axis), fold_rtol=1e-12)[0]
    plain = _h([0.1, 0.3, 0.3], weight=0.1)
    plain_nudged = plain.copy()
    plain_nudged.view(flow=True).value *= 1 + 1e-15
    assert output_differences(out(plain), out(plain_nudged), fold_rtol=1e-12) != []  # plain: exact


def test_portable_replaces_every_foldhist_by_a_plain_hist():
    from flashsim_coffea.outputs import portable

    f, a = _fold([0.1, 0.1, 0.7, 0.7], [1, 1, 2, 2], folds=2), _h([0.3])
    out = {"d": {"hists": {"SR": {"x": f, "y": a}}, "sumw": 2.0, "files": ["p.root"], "pair": (f, 1)}}
    res = portable(out)
    h = res["d"]["hists"]["SR"]["x"]
    assert type(h) is hist.Hist and h.folds == 2 and type(res["d"]["pair"][0]) is hist.Hist
    np.testing.assert_array_equal(h.values(flow=True), f.values(flow=True))
    np.testing.assert_array_equal(h.variances(flow=True), f.variances(flow=True))
    assert res["d"]["hists"]["SR"]["y"] is a and res["d"]["files"] == ["p.root"] and res["d"]["sumw"] == 2.0
    assert out["d"]["hists"]["SR"]["x"] is f  # the input is not modified


_LOAD_WITHOUT_FLASHSIM = r"""
import json, sys

class _NoFlashsim:  # the editable install's finder and any path entry are never asked
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in ("flashsim_coffea", "processors"):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, _NoFlashsim)
try:
    import flashsim_coffea  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("flashsim_coffea could be imported")

from coffea.util import load

out = load(sys.argv[1])
assert not [m for m in sys.modules if m.split(".")[0] in ("flashsim_coffea", "processors")]
import hist

found = {}

def walk(obj, path):
    if isinstance(obj, hist.Hist):
        assert type(obj) is hist.Hist, type(obj)
        found["/".join(path)] = {"folds": obj.__dict__.get("folds"), "values": obj.values(flow=True).tolist(),
                                 "variances": obj.variances(flow=True).tolist()}
    elif isinstance(obj, dict):
        for k, v in obj.items():
            walk(v, path + [str(k)])

walk(out, [])
print(json.dumps(found))
"""


def load_without_flashsim(path, cwd) -> dict:
    """Load a ``.coffea`` file in a fresh isolated Python (``-I``: no PYTHONPATH, no current
    folder) where importing flashsim_coffea or processors raises ImportError; returns
    ``{"dataset/hists/region/var": {"folds", "values", "variances"}}`` of every ``hist.Hist``."""
    import json
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-I", "-c", _LOAD_WITHOUT_FLASHSIM, str(path)], cwd=cwd,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_saved_output_opens_without_flashsim(tmp_path):
    """``save_outputs`` writes FoldHists as plain hist.Hist: coffea and hist alone load the file,
    with the fold-weighted values and variances and the folds."""
    import subprocess
    import sys

    from coffea.util import save

    from flashsim_coffea.runner import save_outputs

    f, a = _fold([0.1, 0.1, 0.7, 0.7, 0.3, 0.9], [1, 1, 2, 2, 3, 3], folds=2), _h([0.3, 0.5], weight=0.5)
    out = _output(d=({"SR": {"x": f, "y": a}}, 3.0))
    save_outputs(out, tmp_path / "out.coffea")
    found = load_without_flashsim(tmp_path / "out.coffea", tmp_path)
    assert set(found) == {"d/hists/SR/x", "d/hists/SR/y"}
    assert found["d/hists/SR/x"]["folds"] == 2 and found["d/hists/SR/y"]["folds"] is None
    np.testing.assert_array_equal(found["d/hists/SR/x"]["values"], f.values(flow=True))
    np.testing.assert_array_equal(found["d/hists/SR/x"]["variances"], f.variances(flow=True))
    np.testing.assert_array_equal(found["d/hists/SR/y"]["values"], a.values(flow=True))
    # the check can fail: a FoldHist saved as it is needs flashsim_coffea to load
    save(out, tmp_path / "raw.coffea")
    res = subprocess.run([sys.executable, "-I", "-c", _LOAD_WITHOUT_FLASHSIM, str(tmp_path / "raw.coffea")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "flashsim_coffea" in res.stderr and "blocked" in res.stderr
