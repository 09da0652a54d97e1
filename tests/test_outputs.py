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


def test_root_layout_one_th1_per_dataset_region_variable_variation(tmp_path):
    full = _output(ref=({"SR": {"x": _h([0.1, 0.5])}, "SB": {"x": _h([0.7])}}, 2.0), other=({"SR": {"x": _h([0.3])}}, 1.0))
    flash = _output(ref=({"SR": {"x": _h([0.1, 0.5])}, "SB": {"x": _h([0.7])}}, 2.0),
                    alt=({"SR": {"x": _h([0.1, 0.1])}, "SB": {"x": _h([0.7])}}, 2.0))
    n = write_root(by_variable(full, {"alt": flash_variation(full, flash, "ref", "alt")}), tmp_path / "shapes.root")
    with uproot.open(tmp_path / "shapes.root") as f:
        names = sorted(k.split(";")[0] for k, cls in f.classnames(recursive=True).items() if cls.startswith("TH1"))
        assert names == ["other/SB/x", "other/SR/x", "ref/SB/x", "ref/SB/x_alt", "ref/SR/x", "ref/SR/x_alt"] and n == 6
        np.testing.assert_allclose(f["ref/SR/x"].values(), full["ref"]["hists"]["SR"]["x"].values())
