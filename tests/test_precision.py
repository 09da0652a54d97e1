"""NanoAOD reduced float precision (flashsim_coffea.nanoaod.precision)."""

import awkward as ak
import numpy as np
import pytest

from conftest import real_file
from flashsim_coffea.nanoaod.precision import NANOAOD_MANTISSA_BITS, apply_nanoaod_precision, round_mantissa


def low_bits(x: np.ndarray, bits: int) -> np.ndarray:
    return x.astype(np.float32).view(np.uint32) & np.uint32((1 << (23 - bits)) - 1)


@pytest.mark.parametrize("bits", [6, 8, 10, 12])
def test_representable_and_nearest(bits):
    rng = np.random.default_rng(bits)
    x = (rng.standard_normal(20000) * 10.0 ** rng.uniform(-4, 4, 20000)).astype(np.float32)
    r = round_mantissa(x, bits)
    assert r.dtype == np.float32
    assert not low_bits(r, bits).any()
    # round to nearest: error at most half a unit in the last kept place (relative 2^-(bits+1))
    rel = np.abs(r.astype(np.float64) - x) / np.abs(x.astype(np.float64))
    assert rel.max() <= 2.0 ** -(bits + 1) * (1 + 1e-6)
    # and better than truncation on average
    trunc = (x.view(np.uint32) & np.uint32((0xFFFFFFFF << (23 - bits)) & 0xFFFFFFFF)).view(np.float32)
    assert np.mean(np.abs(r - x)) < np.mean(np.abs(trunc - x))
    np.testing.assert_array_equal(round_mantissa(r, bits), r)  # idempotent
    np.testing.assert_array_equal(np.sign(r), np.sign(x))


def test_special_values_and_carry():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, 1.9999999, np.finfo(np.float32).max], dtype=np.float32)
    r = round_mantissa(x, 6)
    assert r[0] == 0 and r[1] == 0 and np.isposinf(r[2]) and np.isneginf(r[3]) and np.isnan(r[4])
    assert r[5] == 1.0
    assert r[6] == 2.0  # the carry out of the mantissa increments the exponent
    assert np.isfinite(r[7])
    np.testing.assert_array_equal(round_mantissa(x[5:7], 23), x[5:7])


def test_table_and_apply():
    assert NANOAOD_MANTISSA_BITS["Jet_pt"] == 10
    assert NANOAOD_MANTISSA_BITS["Muon_dxyErr"] == 6
    assert NANOAOD_MANTISSA_BITS["Muon_dzErr"] == 6
    assert NANOAOD_MANTISSA_BITS.get("Muon_pfRelIso04_all", 23) == 23
    d = {
        "Jet_pt": ak.Array([[31.2345, 20.1], [], [15.77]]),
        "Muon_dxyErr": np.array([0.00123456], dtype=np.float32),
        "Muon_pfRelIso04_all": np.array([0.123456789], dtype=np.float32),
    }
    out = apply_nanoaod_precision(d)
    assert ak.num(out["Jet_pt"]).tolist() == [2, 0, 1]
    assert not low_bits(ak.to_numpy(ak.flatten(out["Jet_pt"])), 10).any()
    assert not low_bits(out["Muon_dxyErr"], 6).any()
    assert out["Muon_pfRelIso04_all"][0] == np.float32(0.123456789)


def test_real_nanoaod_is_fixed_point():
    """Values stored by CMS are unchanged by our rounding with the table's bits."""
    uproot = pytest.importorskip("uproot")
    f = real_file("nano_dy.root")
    names = ["Jet_pt", "Jet_eta", "Jet_btagDeepB", "Jet_bRegCorr", "Jet_muEF", "Muon_dxyErr", "Muon_dz", "Muon_jetRelIso"]
    arr = uproot.open(f)["Events"].arrays(names, how=dict)
    for n in names:
        x = ak.to_numpy(ak.flatten(arr[n])).astype(np.float32)
        np.testing.assert_array_equal(round_mantissa(x, NANOAOD_MANTISSA_BITS[n]), x, err_msg=n)


@pytest.mark.parametrize("bits", [6, 12])
def test_fill_rounding_cell_stays_in_the_cell_and_fills_it(bits):
    from flashsim_coffea.nanoaod.precision import fill_rounding_cell

    rng = np.random.default_rng(bits)
    x = round_mantissa((rng.standard_normal(50000) * 10.0 ** rng.uniform(-4, 2, 50000)).astype(np.float32), bits)
    x = np.concatenate([x, np.float32([0.5, 1.0, 2.0, -1.0, -0.25])])  # powers of two: denser below
    u = rng.uniform(0.0, 0.999, len(x))  # (u → 1 reaches the upper edge, where float32 ties round up)
    y = fill_rounding_cell(x, bits, u)
    np.testing.assert_array_equal(round_mantissa(y.astype(np.float32), bits), x)
    # it fills the cell: offsets span ±½ of the spacing 2^(e − bits) (−¼ below a power of two)
    cell = 2.0 ** (np.floor(np.log2(np.abs(x.astype(np.float64)))) - bits)
    off = (np.abs(y) - np.abs(x)) / cell
    pow2 = np.isin(np.abs(x), [0.25, 0.5, 1.0, 2.0])
    assert off[~pow2].min() < -0.49 and off.max() > 0.49 and off[pow2].min() >= -0.25
    assert abs(np.mean(off[~pow2])) < 0.01
    np.testing.assert_array_equal(fill_rounding_cell(np.array([0.0, np.inf]), bits, np.array([0.3, 0.3])), [0.0, np.inf])
