"""Flows: exact preprocessing inverses, snapping, determinism, checkpoints, training, CLI."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from conftest import REAL_NANOAOD, needs_real
from flashsim_coffea.errors import UserError
from flashsim_coffea.flows import TINY, FlowModel, TrainConfig, load_data, load_model, save_data, train
from flashsim_coffea.flows.data import TrainingData
from flashsim_coffea.flows.preprocess import Preprocessor, decode_target, encode_target
from flashsim_coffea.objects import get_spec



def admissible_targets(spec, n: int, rng: np.random.Generator) -> np.ndarray:
    """Random raw targets inside every target's admissible domain, including spike values."""
    cols = []
    for t in spec.targets:
        if t.kind == "ordinal":
            x = rng.choice(np.asarray(t.values), n)
        elif t.kind == "integer" and t.step > 0:
            x = t.step * rng.integers(int(np.ceil(t.bounds[0] / t.step)), int(t.bounds[1] / t.step), n)
        elif t.kind == "integer":
            x = rng.integers(int(t.bounds[0]), 60, n).astype(float)
        else:
            lo, hi = t.bounds
            lo, hi = max(lo, -0.5 if np.isinf(lo) else lo), min(hi, 2.0)
            x = rng.uniform(lo, hi, n)
            if t.spike is not None:
                x[rng.random(n) < 0.2] = t.spike.value
        cols.append(x)
    return np.stack(cols, axis=1)


def synthetic(spec, n: int, seed: int = 0) -> TrainingData:
    """Conditioning in plausible ranges; targets correlated with the first conditioning column."""
    rng = np.random.default_rng(seed)
    cond = np.abs(rng.normal(size=(n, len(spec.conditioning)))) + 0.1
    cond[:, 0] = rng.lognormal(3.5, 0.6, n)  # a pt
    y = admissible_targets(spec, n, rng)
    j = spec.target_names.index("ptRatio")
    y[:, j] = np.clip(1.0 + 0.05 * rng.normal(size=n) + 0.001 * (cond[:, 0] - 30), 0, 3)
    keys = {"run": np.ones(n, np.int64), "luminosityBlock": np.ones(n, np.int64),
            "event": np.arange(n, dtype=np.int64) // 3, "object": np.arange(n, dtype=np.int64) % 3}
    return TrainingData(cond.astype(np.float32), y.astype(np.float32), keys, {"pt": cond[:, 0]},
                        {"spec": spec.name, "spec_hash": spec.hash()})


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.set_num_threads(1)
    spec = get_spec("jets")
    data = synthetic(spec, 3000)
    out = tmp_path_factory.mktemp("model") / "jets"
    metrics = train(spec, data, out, TrainConfig(**TINY), progress=False)
    return out, data, metrics


@pytest.mark.parametrize("name", ["jets", "muons"])
def test_encode_decode_exact_inverse(name):
    spec = get_spec(name)
    rng = np.random.default_rng(1)
    x = admissible_targets(spec, 5000, rng)
    u = rng.uniform(1e-9, 1 - 1e-9, size=x.shape)
    for j, t in enumerate(spec.targets):
        back = decode_target(t, encode_target(t, x[:, j], u[:, j]))
        if t.kind == "real":
            np.testing.assert_allclose(back, x[:, j], rtol=1e-12, atol=1e-12, err_msg=t.name)
        else:
            np.testing.assert_array_equal(back, x[:, j], err_msg=t.name)
    # standardisation included
    pre = Preprocessor.fit(spec, np.abs(rng.normal(size=(5000, len(spec.conditioning)))) + 1, x, u)
    np.testing.assert_allclose(pre.decode_targets(pre.encode_targets(x, u)), x, rtol=1e-10, atol=1e-10)


def test_quantile_dequantization_of_ordinals():
    from dataclasses import replace

    q = get_spec("jets")  # puId, jetId quantile-dequantized
    assert {t.name for t in q.targets if t.dequantize == "quantile"} == {"puId", "jetId"}
    spec = replace(q, targets=tuple(replace(t, dequantize="uniform" if t.dequantize == "quantile" else t.dequantize,
                                            classify=False) for t in q.targets))
    assert q.hash() != spec.hash() and q.extraction_hash() == spec.extraction_hash()
    assert q.flow_hash() != spec.flow_hash()  # dequantization changes the flow's inputs, classify does not
    rng = np.random.default_rng(2)
    x = admissible_targets(q, 20_000, rng)
    j = q.target_names.index("jetId")
    x[:, j] = rng.choice([0.0, 2.0, 6.0], size=len(x), p=[0.01, 0.02, 0.97])  # a rare 1 % value
    u = rng.uniform(1e-9, 1 - 1e-9, size=x.shape)
    pre = Preprocessor.fit(q, np.abs(rng.normal(size=(len(x), len(q.conditioning)))) + 1, x, u)
    assert pre.ordinal_cdf["jetId"][1] == pytest.approx(0.01, abs=0.003)
    y = pre.encode_targets(x, u)
    np.testing.assert_array_equal(pre.decode_targets(y)[:, j], x[:, j])  # exact, with standardisation
    # the encoded marginal is a standard normal (up to standardisation): no isolated box for the rare value
    e = y[:, j] * pre.targ_std[j] + pre.targ_mean[j]
    assert abs(e.mean()) < 0.05 and abs(e.std() - 1) < 0.05
    # the fitted fractions travel with the card; a card without them is a clear error
    back = Preprocessor.from_dict(q, pre.to_dict())
    np.testing.assert_array_equal(back.decode_targets(y), pre.decode_targets(y))
    d = pre.to_dict()
    del d["ordinal_cdf"]
    with pytest.raises(UserError, match="jetId"):
        Preprocessor.from_dict(q, d)
    with pytest.raises(ValueError, match="quantile"):
        replace(spec.targets[0], dequantize="quantile")  # area is an integer lattice, not an ordinal


def test_snapping_to_admissible_sets():
    spec = get_spec("jets")
    e = np.linspace(-20, 20, 4001)
    by = {t.name: decode_target(t, e) for t in spec.targets}
    assert set(np.unique(by["jetId"])) == {0, 2, 6}
    assert set(np.unique(by["puId"])) == {0, 4, 6, 7}
    n = by["nConstituents"]
    assert np.all(n == np.rint(n)) and n.min() >= 1
    cut = next(t for t in spec.targets if t.name == "btagDeepB").spike.cut  # below logit(0) − 1
    assert set(np.unique(by["btagDeepB"][e < cut])) == {-1.0}
    ok = by["btagDeepB"][e >= cut]
    assert ok.min() >= 0 and ok.max() <= 1 and np.ptp(ok) > 0.99
    for t in get_spec("muons").targets:
        if t.dtype == "bool":
            assert set(np.unique(decode_target(t, e))) == {0.0, 1.0}


def test_tiny_training_loss_decreases(tiny_model):
    out, data, metrics = tiny_model
    hist = [h["val_nll"] for h in metrics["history"]]
    assert len(hist) == TINY["epochs"] and hist[-1] < hist[0]
    card = json.loads((out / "card.json").read_text())
    assert card["spec_hash"] == get_spec("jets").hash() and card["metrics"]["best_val_nll"] == min(hist)
    assert {"preprocessing", "architecture", "data", "seed", "package_version", "weights_sha256"} <= set(card)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_samples_finite_snapped_and_batch_independent(tiny_model, precision):
    out, data, _ = tiny_model
    model = FlowModel.load(out, spec="jets").set_precision(precision)
    model.block_size = 256  # any fixed block size; small keeps the test fast
    n = 600
    cond, keys = data.cond[:n], {k: v[:n] for k, v in data.keys.items()}
    full = model.sample(cond, keys, fold=0)
    assert set(np.unique(full["jetId"])) <= {0, 2, 6} and set(np.unique(full["puId"])) <= {0, 4, 6, 7}
    assert np.all(full["nConstituents"] == np.rint(full["nConstituents"])) and full["nConstituents"].min() >= 1
    assert all(np.isfinite(v).all() for v in full.values())
    for chunk in (1, 7, 250):
        parts = [model.sample(cond[s:s + chunk], {k: v[s:s + chunk] for k, v in keys.items()}, fold=0)
                 for s in range(0, n if chunk > 1 else 20, chunk)]
        for name in full:
            got = np.concatenate([p[name] for p in parts])
            np.testing.assert_array_equal(got, full[name][: len(got)], err_msg=f"{name} chunk {chunk}")
    # shuffled order: same object, same values
    perm = np.random.default_rng(0).permutation(n)
    shuffled = model.sample(cond[perm], {k: v[perm] for k, v in keys.items()}, fold=0)
    np.testing.assert_array_equal(shuffled["ptRatio"], full["ptRatio"][perm])
    # another fold gives another draw; the same fold again the same
    other = model.sample(cond, keys, fold=1)
    assert not np.array_equal(other["ptRatio"], full["ptRatio"])
    np.testing.assert_array_equal(model.sample(cond, keys, fold=0)["ptRatio"], full["ptRatio"])


def test_bad_conditioning_never_nan(tiny_model):
    out, data, _ = tiny_model
    model = load_model(out)
    cond = data.cond[:50].astype(np.float64).copy()
    cond[0, 0] = np.nan
    cond[1, 3] = np.inf
    cond[2, 0] = 1e7  # GenJet pt far beyond the training maximum
    keys = {k: v[:50] for k, v in data.keys.items()}
    with pytest.warns(UserWarning, match="non-finite conditioning"):
        res, info = model.sample(cond, keys, return_info=True)
    assert all(np.isfinite(v).all() for v in res.values())
    assert info["n_nonfinite_cond"] == 2 and info["n_out_of_range_cond"] >= 1
    assert list(np.flatnonzero(~info["valid"])) == [0, 1]


def test_nonfinite_samples_redrawn_deterministically(tiny_model, monkeypatch):
    out, data, _ = tiny_model
    model = FlowModel.load(out)
    model.block_size = 64
    keys = {k: v[:40] for k, v in data.keys.items()}
    real_invert = FlowModel._invert
    calls = {"n": 0}

    def flaky(self, z, c, block=None):
        x = real_invert(self, z, c, block)
        calls["n"] += 1
        if calls["n"] == 1:
            x[[3, 17]] = np.nan
        return x

    monkeypatch.setattr(FlowModel, "_invert", flaky)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res, info = model.sample(data.cond[:40], keys, return_info=True)
        calls["n"] = 0
        res2, _ = model.sample(data.cond[:40], keys, return_info=True)
    assert info["n_redrawn"] >= 2 and info["n_fallback"] <= 2  # the 2 NaN rows (+ any out of support)
    assert all(np.isfinite(v).all() for v in res.values())
    np.testing.assert_array_equal(res["ptRatio"], res2["ptRatio"])


def test_batched_redraws_equal_sequential_attempts(tiny_model, monkeypatch):
    """Each redrawn row keeps its first good attempt, as if attempts 1, 2, … ran one by one."""
    from flashsim_coffea.flows.sampler import KEY_NAMES, MAX_ATTEMPTS

    out, data, _ = tiny_model
    model = FlowModel.load(out)
    n = 300
    c, _ = model.pre.encode_cond(data.cond[:n])
    keys = {k: v[:n] for k, v in data.keys.items()}
    monkeypatch.setattr(FlowModel, "_bad", lambda self, y: y[:, 0] > -0.3)  # ~60 % of draws "bad"
    y = model._invert(model.base_noise(keys, 0), c)
    bad = model._bad(y)
    expect, still = y.copy(), bad.copy()
    for attempt in range(1, MAX_ATTEMPTS + 1):  # the sequential definition
        idx = np.flatnonzero(still)
        sub = {k: np.asarray(keys[k])[idx] for k in KEY_NAMES}
        expect[idx] = model._invert(model.base_noise(sub, 0, attempt), c[idx], 64)
        still[idx] = model._bad(expect[idx])
    model._redraw(y, bad, c, keys, 0)
    assert 0 < still.sum() < bad.size and np.array_equal(bad, still)
    np.testing.assert_array_equal(y[~bad], expect[~bad])


def test_samples_stay_in_training_support(tiny_model):
    out, data, _ = tiny_model
    model = FlowModel.load(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = model._invert(model.base_noise({k: v[:2000] for k, v in data.keys.items()}, 0), model.pre.encode_cond(data.cond[:2000])[0])
        res, info = model.sample(data.cond[:2000], {k: v[:2000] for k, v in data.keys.items()}, return_info=True)
    assert info["n_redrawn"] == int((~model.pre.in_support(y)).sum())
    ratio = res["ptRatio"]
    lo, hi = data.targets[:, model.target_names.index("ptRatio")].min(), data.targets[:, model.target_names.index("ptRatio")].max()
    assert ratio.min() >= lo - 0.2 * (hi - lo) and ratio.max() <= hi + 0.2 * (hi - lo)


def test_checkpoint_errors(tiny_model, tmp_path):
    out, _, _ = tiny_model
    with pytest.raises(UserError, match="trained for spec 'jets'"):
        FlowModel.load(out, spec="muons")
    pt = tmp_path / "model.pt"
    torch.save({"x": torch.zeros(1)}, pt)
    with pytest.raises(UserError, match="pickle"):
        FlowModel.load(pt)
    bad = tmp_path / "corrupt"
    shutil.copytree(out, bad)
    w = bad / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-10] ^= 0xFF
    w.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="corrupted"):
        FlowModel.load(bad)
    w.unlink()
    with pytest.raises(UserError, match="missing"):
        FlowModel.load(bad)
    with pytest.raises(UserError, match="card not found"):
        FlowModel.load(tmp_path / "nothing")


def test_resume_continues_identically(tmp_path):
    torch.set_num_threads(1)
    spec = get_spec("muons")
    data = synthetic(spec, 800, seed=3)
    cfg = dict(TINY, epochs=4)
    straight = train(spec, data, tmp_path / "a", TrainConfig(**cfg), progress=False)
    train(spec, data, tmp_path / "b", TrainConfig(**dict(cfg, max_minutes=0.0)), progress=False)  # stops after 1 epoch
    resumed = train(spec, data, tmp_path / "b", TrainConfig(**cfg), resume=True, progress=False)
    assert resumed["epochs_run"] == 4
    np.testing.assert_allclose([h["val_nll"] for h in resumed["history"]],
                               [h["val_nll"] for h in straight["history"]], rtol=1e-5)


def test_training_data_roundtrip(tmp_path):
    spec = get_spec("jets")
    d = synthetic(spec, 50)
    for suffix in (".npz", ".safetensors"):
        p = save_data(tmp_path / f"d{suffix}", d.cond, d.targets, d.keys, d.gen, d.provenance)
        back = load_data(p)
        np.testing.assert_array_equal(back.cond, d.cond)
        np.testing.assert_array_equal(back.keys["event"], d.keys["event"])
        assert back.provenance == d.provenance


@needs_real
def test_cli_extract_and_train_tiny(tmp_path, capsys):
    from flashsim_coffea.cli import main

    data = tmp_path / "jets.npz"
    assert main(["extract", "jets", str(REAL_NANOAOD / "nano_dy.root"), "-o", str(data), "--no-progress"]) == 0
    assert "dropped: unmatched 91, gen_not_stored 2" in capsys.readouterr().out
    assert main(["train", "jets", str(data), "-o", str(tmp_path / "m"), "--tiny", "--no-progress"]) == 0
    assert (tmp_path / "m" / "card.json").is_file()
    assert main(["train", "muons", str(data), "-o", str(tmp_path / "m2"), "--tiny"]) == 2


def test_fast_inverse_matches_nflows(monkeypatch):
    from flashsim_coffea.flows.fast_inverse import FastInverse, reset_kernel_choice
    from flashsim_coffea.sampling_precision import PORTABLE_KERNELS_ENV
    from flashsim_coffea.flows.model import ARCHITECTURES, build_flow

    torch.manual_seed(0)
    flow = build_flow(17, 14, ARCHITECTURES["small"])
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    z, c = 2 * torch.randn(3000, 17), torch.randn(3000, 14)  # includes values beyond the tail bound
    with torch.inference_mode():
        ref = flow._transform.inverse(z, context=c)[0]
        fast = FastInverse(flow)(z, c)
        back = flow._transform.forward(fast, context=c)[0]
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(back, z, atol=1e-3, rtol=1e-3)
    # bfloat16 products: the same function to ~1e-3 of the sample spread (a few rows near a
    # bin or mode edge move further); switching back restores float32 exactly
    inv = FastInverse(flow, precision="bf16")
    assert inv.precision == "bfloat16"
    with torch.inference_mode():
        low = inv(z, c)
        diff = (low - ref).abs() / ref.std(0)
        assert torch.isfinite(low).all() and diff.median() < 5e-3 and torch.quantile(diff, 0.99) < 0.1
        torch.testing.assert_close(inv.set_precision("float32")(z, c), fast, atol=0, rtol=0)
        # the portable CPU kernel (forced; what CPUs without oneDNN bfloat16 support use) is the
        # same model to bfloat16 rounding (tests/test_cpu_paths.py checks both kernels in depth)
        monkeypatch.setenv(PORTABLE_KERNELS_ENV, "1")
        reset_kernel_choice()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                plain = inv.set_precision("bfloat16")
            assert plain.kernel == "portable"
            plain = plain(z, c)
        finally:
            monkeypatch.delenv(PORTABLE_KERNELS_ENV)
            reset_kernel_choice()
        assert ((plain - low).abs() / ref.std(0)).median() < 5e-3


def test_sampling_precision_names(tiny_model):
    from flashsim_coffea.inject import FlashSim

    out, _, _ = tiny_model
    assert load_model(out, precision="bf16").precision == "bfloat16"
    assert load_model(out).precision == "float32"  # cached separately
    with pytest.raises(UserError, match="unknown sampling precision 'half'; choose one of float32, bfloat16"):
        FlowModel.load(out).set_precision("half")
    with pytest.raises(UserError, match="float32, bfloat16"):
        FlashSim(jets=out, muons=False, precision="float16")


def test_device_cuda_without_gpu_is_a_clear_error(tiny_model):
    out, _, _ = tiny_model
    model = FlowModel.load(out)
    if torch.cuda.is_available():
        pytest.skip("a GPU is available")
    with pytest.raises(UserError, match="cuda.is_available"):
        model.to("cuda")
    with pytest.raises(UserError, match="unsupported device"):
        model.to("meta")
    assert model.to("cpu", block_size=128).block_size == 128


def test_event_split_keeps_events_together():
    from flashsim_coffea.flows.train import _split

    spec = get_spec("muons")
    data = synthetic(spec, 3000, seed=6)  # 3 objects per event
    perm = np.random.default_rng(0).permutation(len(data))
    val, tr = _split(data, perm, TrainConfig(val_fraction=0.2))
    ev = data.keys["event"]
    assert not set(ev[val]) & set(ev[tr]) and len(val) + len(tr) == len(data)
    assert 0.15 < len(val) / len(data) < 0.25 and np.all(np.diff(val) > 0)
    rv, rt = _split(data, perm, TrainConfig(val_fraction=0.2, split="row"))
    assert len(rv) == 600 and set(ev[rv]) & set(ev[rt])  # rows of one event on both sides
    with pytest.raises(UserError, match="split"):
        _split(data, perm, TrainConfig(split="file"))


@pytest.mark.parametrize("split", ["event", "row"])
def test_split_seed_keeps_the_validation_set_across_training_seeds(split):
    """Fine-tuning stages with other --seed values share one validation set with --split-seed."""
    from flashsim_coffea.flows.train import validation_split

    data = synthetic(get_spec("muons"), 3000, seed=6)
    base = validation_split(data, TrainConfig(seed=11, split=split))
    same = validation_split(data, TrainConfig(seed=42, split_seed=11, split=split))
    other = validation_split(data, TrainConfig(seed=42, split=split))
    assert np.array_equal(base[0], same[0]) and np.array_equal(base[1], same[1])
    assert not np.array_equal(base[0], other[0])
    assert TrainConfig(seed=3).validation_seed == 3 and TrainConfig(seed=3, split_seed=5).validation_seed == 5


def test_init_from_a_model_with_fewer_conditioning_features(tmp_path):
    """A spec that appends conditioning features fine-tunes from the initial model: the new context
    columns start at zero weight (the same density), the old columns keep their standardisation."""
    from dataclasses import replace

    from flashsim_coffea.flows.model import build_flow
    from flashsim_coffea.flows.train import appends_conditioning, extend_context

    torch.set_num_threads(1)
    # the network: zero columns after the context inputs leave log p(y | c) unchanged
    flow = build_flow(5, 3, {"layers": 2, "hidden": 8, "blocks": 2, "bins": 4, "tail_bound": 4.0}, seed=1)
    wider = build_flow(5, 4, {"layers": 2, "hidden": 8, "blocks": 2, "bins": 4, "tail_bound": 4.0}, seed=1)
    wider.load_state_dict(extend_context(flow.state_dict(), 1))
    y, c = torch.randn(64, 5), torch.randn(64, 3)
    c4 = torch.cat([c, 7.0 * torch.randn(64, 1)], dim=1)
    with torch.no_grad():
        np.testing.assert_allclose(wider.log_prob(y, c4).numpy(), flow.log_prob(y, c).numpy(), rtol=1e-5, atol=1e-5)

    spec = get_spec("muons")
    old = replace(spec, conditioning=spec.conditioning[:-1])
    assert appends_conditioning(json.loads(json.dumps(old.to_dict())), spec) == 1
    assert appends_conditioning(json.loads(json.dumps(spec.to_dict())), old) == 0
    base = tmp_path / "old"
    data_old = synthetic(old, 1500, seed=3)
    train(old, data_old, base, TrainConfig(**TINY), progress=False)
    data = synthetic(spec, 1500, seed=3)
    data.cond[:, :-1] = data_old.cond  # the same objects, one more feature
    tuned = tmp_path / "new"
    train(spec, data, tuned, TrainConfig(**dict(TINY, epochs=1), init=str(base)), progress=False)
    a, b = json.loads((base / "card.json").read_text()), json.loads((tuned / "card.json").read_text())
    assert (a["n_context"], b["n_context"]) == (len(old.conditioning), len(spec.conditioning))
    n = len(old.conditioning)
    assert b["preprocessing"]["cond_mean"][:n] == a["preprocessing"]["cond_mean"]
    assert b["preprocessing"]["cond_std"][:n] == a["preprocessing"]["cond_std"]
    # a spec that changes (not appends) the conditioning is still refused
    shuffled = replace(spec, conditioning=spec.conditioning[1:] + spec.conditioning[:1])
    with pytest.raises(UserError, match="only append"):
        train(shuffled, synthetic(shuffled, 600, seed=3), tmp_path / "x", TrainConfig(**TINY, init=str(base)), progress=False)


def test_training_warns_about_targets_beyond_the_spline_range(tmp_path):
    """A spline coupling is the identity beyond ±tail_bound: standardised training values out
    there are never sampled, so training names the target and its fraction (the muon pT response
    tails were lost that way); a target inside the range is not named."""
    from flashsim_coffea.flows.train import beyond_tail_bound

    y = np.zeros((1000, 2))
    y[:3, 0] = 6.0
    assert beyond_tail_bound(y, ["a", "b"], 5.0) == {"a": 0.003}
    assert beyond_tail_bound(y, ["a", "b"], 5.0, min_fraction=0.01) == {}

    torch.set_num_threads(1)
    spec = get_spec("jets")
    data = synthetic(spec, 3000, seed=4)
    j = spec.target_names.index("ptRatio")
    rng = np.random.default_rng(5)
    tail = rng.random(len(data.targets)) < 0.05  # a narrow core with 5 % of far tails
    data.targets[:, j] = np.where(tail, 1.0 + 0.6 * rng.standard_t(2, len(tail)).clip(-1.6, 1.6), 1.0 + 0.01 * rng.normal(size=len(tail)))
    with pytest.warns(UserWarning, match=r"beyond the flow's spline range ±4: .*ptRatio") as rec:
        train(spec, data, tmp_path / "tails", TrainConfig(**dict(TINY, epochs=1)), progress=False)
    named = [str(w.message) for w in rec if "spline range" in str(w.message)]
    assert len(named) == 1 and "etaMinusGen" not in named[0]


def test_appended_targets_extend_the_trained_flow_exactly():
    """Appended targets: the trained layers see them as zero-weight inputs, so the old targets'
    latents (and log-density) are exactly the trained model's; the extension layers transform only
    the appended targets; the fast inverse samples the extended flow as nflows does (k ≥ 2 and k = 1)."""
    from flashsim_coffea.flows.fast_inverse import FastInverse
    from flashsim_coffea.flows.model import build_flow
    from flashsim_coffea.flows.train import extend_targets

    torch.manual_seed(0)
    arch = {"layers": 3, "hidden": 8, "blocks": 2, "bins": 4, "tail_bound": 4.0}
    old = build_flow(5, 3, arch, seed=1)
    with torch.no_grad():
        for p in old.parameters():
            p.normal_(0.0, 0.3)  # far from nflows' near-identity initialisation
    y, c = torch.randn(64, 8), torch.randn(64, 3)
    for k, size in ((3, {}), (1, {"hidden": 6, "blocks": 1})):  # the extension's networks: the architecture's or their own
        new = build_flow(5 + k, 3, {**arch, "extensions": [{"targets": k, "layers": 2, **size}]}, seed=1)
        state, n_old = extend_targets(old.state_dict(), new)
        new.load_state_dict(state)
        assert n_old == 2 * arch["layers"] - 1  # couplings and the permutations between them
        with torch.no_grad():
            z_old, logdet_old = old._transform(y[:, :5], context=c)
            z_base, logdet_base = _first_transforms(new, n_old)(y[:, : 5 + k], context=c)
            np.testing.assert_allclose(z_base[:, :5].numpy(), z_old.numpy(), atol=1e-5)
            np.testing.assert_allclose(logdet_base.numpy(), logdet_old.numpy(), atol=1e-4)
            np.testing.assert_array_equal(z_base[:, 5:].numpy(), y[:, 5 : 5 + k].numpy())  # passed through
            z = torch.randn(40, 5 + k)
            np.testing.assert_allclose(FastInverse(new)(z, c[:40]).numpy(),
                                       new._transform.inverse(z, context=c[:40])[0].numpy(), atol=2e-5)


def _first_transforms(flow, n: int):
    """The first ``n`` transforms of a flow's composite transform, as one transform."""
    from nflows.transforms.base import CompositeTransform

    return CompositeTransform(list(flow._transform._transforms)[:n])


def test_training_with_appended_targets_from_a_trained_model(tmp_path):
    """``--init`` a model of a spec whose targets the new spec extends: the old targets keep their
    standardisation, the card records the extension; with ``freeze_init`` the trained layers'
    weights are unchanged after training; the model samples every target."""
    from dataclasses import replace

    from flashsim_coffea.flows.checkpoint import load_weights, read_card
    from flashsim_coffea.flows.sampler import load_model
    from flashsim_coffea.flows.train import appends_targets

    torch.set_num_threads(1)
    spec = get_spec("muons")
    n_new = 4
    old = replace(spec, targets=spec.targets[:-n_new])
    assert appends_targets(json.loads(json.dumps(old.to_dict())), spec) == n_new
    assert appends_targets(json.loads(json.dumps(spec.to_dict())), old) == 0
    data = synthetic(spec, 1500, seed=3)
    data_old = synthetic(old, 1500, seed=3)
    base, tuned = tmp_path / "old", tmp_path / "new"
    train(old, data_old, base, TrainConfig(**TINY), progress=False)
    data.targets[:, :-n_new] = data_old.targets  # the same objects, more targets
    train(spec, data, tuned, TrainConfig(**dict(TINY, epochs=2), init=str(base), freeze_init=True, append_layers=2),
          progress=False)
    a, _ = read_card(base)
    b, b_path = read_card(tuned)
    assert b["architecture"]["extensions"] == [{"targets": n_new, "layers": 2}]
    assert b["preprocessing"]["targ_mean"][:-n_new] == a["preprocessing"]["targ_mean"]
    wa, _ = load_weights(a, base / "card.json")
    wb, _ = load_weights(b, b_path)
    frozen = [k for k in wa if k.startswith("_transform.") and k.endswith(("final_layer.weight", "blocks.0.linear_layers.0.weight"))]
    assert frozen and all(torch.equal(wa[k], wb[k]) for k in frozen)
    model = load_model(tuned)
    cond = data.cond[:200]
    keys = {k: v[:200] for k, v in data.keys.items()}
    out = model.sample(cond, keys)
    assert set(out) >= set(spec.target_names) and all(np.all(np.isfinite(out[t])) for t in spec.target_names)
    with pytest.raises(UserError, match="appends none"):
        train(old, data_old, tmp_path / "x", TrainConfig(**TINY, init=str(base), freeze_init=True), progress=False)
    with pytest.raises(UserError, match="--head-only keeps the --init model's flow"):
        train(spec, data, tmp_path / "y", TrainConfig(**TINY, init=str(base), head_only=True), progress=False)
    # the same spec from the extended model: only the extension layers train further
    more = tmp_path / "more"
    train(spec, data, more, TrainConfig(**dict(TINY, epochs=1), init=str(tuned), freeze_init=True), progress=False)
    c, c_path = read_card(more)
    wc, _ = load_weights(c, c_path)
    assert c["architecture"]["extensions"] == b["architecture"]["extensions"]
    assert all(torch.equal(wb[k], wc[k]) for k in frozen)
    from flashsim_coffea.flows.model import ARCHITECTURES

    first_extension = 2 * ARCHITECTURES["tiny"]["layers"] - 1  # after the couplings and permutations of the architecture
    ext = [k for k in wb if k.startswith(f"_transform._transforms.{first_extension}.") and k.endswith("final_layer.weight")]
    assert ext and not all(torch.equal(wb[k], wc[k]) for k in ext)


def test_append_options_are_checked(tmp_path):
    """The options of appended layers: integers ≥ 1, and only with --init (else they would do nothing)."""
    with pytest.raises(UserError, match="append-layers must be an integer ≥ 1"):
        TrainConfig(append_layers=0)
    spec = get_spec("muons")
    data = synthetic(spec, 600, seed=3)
    for bad in ({"freeze_init": True}, {"append_hidden": 32}):
        with pytest.raises(UserError, match="give one with --init"):
            train(spec, data, tmp_path / "x", TrainConfig(**TINY, **bad), progress=False)
