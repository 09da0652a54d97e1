"""The VBF H→μμ DNN: inputs, numpy inference vs torch, the shipped model, a tiny training run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flashsim_coffea.analysis import dnn
from flashsim_coffea.analysis.training import weighted_auc


def _variables(n: int, rng) -> dict[str, np.ndarray]:
    names = [k for k in dnn.INPUTS if k not in dnn.FIXED_INPUTS]
    return {k: rng.normal(size=n) for k in names}


def test_inputs_order_and_fixed_values():
    assert len(dnn.INPUTS) == 25
    rng = np.random.default_rng(0)
    v = _variables(7, rng)
    x = dnn.dnn_inputs(v)
    assert x.shape == (7, 25)
    np.testing.assert_array_equal(x[:, dnn.INPUTS.index("mass")], v["mass"])
    assert np.all(x[:, dnn.INPUTS.index("year")] == 2018)
    assert np.all(x[:, dnn.INPUTS.index("n_soft5")] == 0)
    assert np.all(x[:, dnn.INPUTS.index("ht_soft2")] == 1.0)


def test_numpy_inference_matches_torch_and_cache(tmp_path):
    torch.manual_seed(3)
    model = dnn.build_torch_model()
    # give batch norm non-trivial running statistics
    model.train()
    with torch.no_grad():
        for _ in range(5):
            model(torch.randn(64, 25) * 3 + 1)
    model.eval()
    rng = np.random.default_rng(1)
    mean, std = rng.normal(size=25), rng.uniform(0.5, 2, size=25)
    dnn.save_model(model, mean, std, tmp_path, {"note": "test"})
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["inputs"] == list(dnn.INPUTS) and card["training"] == {"note": "test"}
    x = rng.normal(size=(100, 25)) * 2
    with torch.inference_mode():
        ref = model(torch.from_numpy(((x - mean) / std).astype(np.float32))).numpy()[:, 0]
    m = dnn.load_dnn(tmp_path)
    np.testing.assert_allclose(m.score(x), ref, atol=2e-6)
    # row results do not depend on the batch
    np.testing.assert_array_equal(m.score(x[:10]), m.score(x)[:10])
    assert dnn.load_dnn(tmp_path) is m  # module-level cache
    # tampered weights are refused
    (tmp_path / "model.safetensors").write_bytes((tmp_path / "model.safetensors").read_bytes()[:-1] + b"\0")
    from flashsim_coffea.errors import UserError

    with pytest.raises(UserError, match="does not match the card"):
        dnn.load_dnn(tmp_path)


def test_dnn_atanh_finite():
    s = np.array([0.0, 0.5, 1.0])
    out = dnn.dnn_atanh(s)
    assert out[0] == 0 and out[1] == pytest.approx(np.arctanh(0.5)) and np.isfinite(out[2])


def test_weighted_auc():
    y = np.array([1, 1, 0, 0])
    assert weighted_auc(np.array([0.9, 0.8, 0.2, 0.1]), y, np.ones(4)) == pytest.approx(1.0)
    assert weighted_auc(np.array([0.1, 0.2, 0.8, 0.9]), y, np.ones(4)) == pytest.approx(0.0)
    assert weighted_auc(np.full(4, 0.5), y, np.ones(4)) == pytest.approx(0.5)
    # weights count like repeated events
    s = np.array([0.9, 0.3, 0.5, 0.1])
    rep = weighted_auc(np.r_[s, s[1]], np.r_[y, y[1]], np.ones(5))
    assert weighted_auc(s, y, np.array([1, 2, 1, 1.0])) == pytest.approx(rep)


def test_shipped_model():
    m = dnn.load_dnn()
    assert m.inputs == dnn.INPUTS
    tr = m.card["training"]
    assert tr["auc_validation"] > 0.5
    assert tr["numpy_vs_torch_max_abs_diff"] < 1e-4


def test_dnn_axis_covers_the_shipped_model():
    """The dnn_atanh axis (bins of 0.1 over [0, 2.5)) contains every output of the shipped DNN:
    with hidden units in [−1, 1], logit ≤ b + Σ|w| of the last layer, so
    DNN18Atan ≤ atanh(sigmoid(b + Σ|w|)); and the bundled VBF sample lands inside it."""
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    from flashsim_coffea.analysis import analyse, axis_for, reco_jets, reco_muons
    from flashsim_coffea.samples import sample_path

    axis = axis_for("dnn_atanh")
    assert (axis.edges[0], axis.edges[-1], axis.size) == (0.0, 2.5, 25)
    w, b = dnn.load_dnn().layers[-1]
    bound = np.arctanh(1.0 / (1.0 + np.exp(-(b[0] + np.abs(w).sum()))))
    assert bound < axis.edges[-1]
    sample = sample_path("vbf_hmm")
    ev = NanoEventsFactory.from_root({str(sample): "Events"}, schemaclass=NanoAODSchema, mode="virtual").events()
    out = analyse(reco_muons(ev), reco_jets(ev)).variables["dnn_atanh"]
    top = np.nanmax(out)
    assert 1.5 < top <= bound  # atanh(score) ends near 2, well inside the axis


@pytest.mark.slow
def test_tiny_training_run(tmp_path, generated):
    from flashsim_coffea.analysis.training import train_dnn

    sig, bkg = generated("vbf_hmm", 200, seed=11)[0], generated("ewk_mumujj", 120, seed=22)[0]
    rec = train_dnn([str(sig)], [str(bkg)], tmp_path / "model", seed=2, epochs=3, log=lambda *_: None)
    assert rec["n_train"]["signal"] > 0 and rec["n_train"]["background"] > 0
    assert 0.0 <= rec["auc_validation"] <= 1.0
    m = dnn.load_dnn(tmp_path / "model")
    assert m.card["training"]["seed"] == 2
    rec2 = train_dnn([str(sig)], [str(bkg)], tmp_path / "model2", seed=2, epochs=3, log=lambda *_: None)
    assert rec2["auc_validation"] == rec["auc_validation"]  # reproducible
