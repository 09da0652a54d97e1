"""CPU kernels of the flow inverse: the portable bfloat16 path (forced here, so it runs on any CPU),
the capability probe of oneDNN's fused kernel, and the float32 path's independence of both.

On CPUs without AVX-512 (e.g. AMD Zen 3) oneDNN refuses bfloat16 inner products; the sampler
must then fall back to the portable kernel, ``y = bf16([relu](bf16(x)·bf16(W)ᵀ + bf16(b)))``
computed as float32 ``mm`` of bfloat16-rounded operands. These tests force that fallback with
``FLASHSIM_FORCE_PORTABLE_KERNELS=1`` or a failing fused op, whatever CPU they run on.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import flashsim_coffea.flows.fast_inverse as fi
from flashsim_coffea.errors import UserError
from flashsim_coffea.flows.fast_inverse import FUSED, PORTABLE, FastInverse, bf16_kernel, reset_kernel_choice
from flashsim_coffea.sampling_precision import PORTABLE_KERNELS_ENV, portable_kernels_forced


@pytest.fixture(autouse=True)
def fresh_choice(monkeypatch):
    """Each test decides the kernel afresh (no env override unless it sets one), and leaves no trace."""
    monkeypatch.delenv(PORTABLE_KERNELS_ENV, raising=False)
    reset_kernel_choice()
    yield
    monkeypatch.undo()
    reset_kernel_choice()


@pytest.fixture
def force_portable(monkeypatch):
    monkeypatch.setenv(PORTABLE_KERNELS_ENV, "1")
    reset_kernel_choice()


@pytest.fixture(scope="module")
def flow():
    from flashsim_coffea.flows.model import ARCHITECTURES, build_flow

    torch.manual_seed(0)
    f = build_flow(17, 14, ARCHITECTURES["small"])
    with torch.no_grad():
        for p in f.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return f.eval()


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    return 2 * torch.randn(3000, 17, generator=g), torch.randn(3000, 14, generator=g)  # beyond the tail bound too


def fused_available() -> bool:
    """Whether oneDNN's fused bfloat16 kernel works here (decided without any override)."""
    return bf16_kernel() == FUSED


def test_env_var_forces_portable_and_warns_once(force_portable, flow):
    assert portable_kernels_forced()
    with pytest.warns(RuntimeWarning, match=r"portable CPU kernel \(forced by FLASHSIM_FORCE_PORTABLE_KERNELS\)"):
        assert bf16_kernel() == PORTABLE
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process: no second warning
        assert bf16_kernel() == PORTABLE
        inv = FastInverse(flow, precision="bf16")
    assert inv.kernel == PORTABLE and inv.set_precision("float32").kernel == "float32"


@pytest.mark.parametrize("value,forced", [("0", False), ("", False), ("yes", True), ("TRUE", True)])
def test_env_var_values(monkeypatch, value, forced):
    monkeypatch.setenv(PORTABLE_KERNELS_ENV, value)
    assert portable_kernels_forced() is forced


def test_failing_fused_op_falls_back_to_portable(monkeypatch, flow, inputs):
    """What an AMD Zen 3 does: oneDNN cannot create the bfloat16 primitive."""
    def broken(*args):
        raise RuntimeError("could not create a primitive descriptor for the inner product forward propagation primitive")

    monkeypatch.setattr(fi, "_FUSED_OP", broken)
    reset_kernel_choice()
    with pytest.warns(RuntimeWarning, match="portable CPU kernel.*no bfloat16 linear for this CPU"):
        inv = FastInverse(flow, precision="bfloat16")
    assert bf16_kernel() == PORTABLE and inv.kernel == PORTABLE
    z, c = inputs
    with torch.inference_mode():
        assert torch.isfinite(inv(z[:500], c[:500])).all()


def test_wrong_results_or_missing_op_mean_portable(monkeypatch, flow):
    real = fi._FUSED_OP
    if real is None:
        pytest.skip("this PyTorch build has no oneDNN fused linear")
    monkeypatch.setattr(fi, "_FUSED_OP", lambda x, w, b, *a: real(x, w, b, *a) * 1.01)  # silently wrong
    reset_kernel_choice()
    with pytest.warns(RuntimeWarning):
        assert bf16_kernel() == PORTABLE
    monkeypatch.setattr(fi, "_FUSED_OP", None)
    reset_kernel_choice()
    with pytest.warns(RuntimeWarning, match="no oneDNN fused linear"):
        assert FastInverse(flow, precision="bf16").kernel == PORTABLE


def test_shape_specific_probe(monkeypatch, flow):
    """The process default works but this model's (in, out) shape fails: the model goes portable."""
    if not fused_available():
        pytest.skip("oneDNN's fused bfloat16 kernel does not work on this CPU")
    from flashsim_coffea.flows.model import ARCHITECTURES, build_flow

    real = fi._FUSED_OP

    def only_64(x, w, b, *a):
        if w.shape[1] != 64:
            raise RuntimeError("could not create a primitive descriptor")
        return real(x, w, b, *a)

    monkeypatch.setattr(fi, "_FUSED_OP", only_64)
    reset_kernel_choice()
    assert FastInverse(flow, precision="bf16").kernel == FUSED  # hidden 64, the probe's own shape
    other = build_flow(17, 14, dict(ARCHITECTURES["tiny"], hidden=48)).eval()
    with pytest.warns(RuntimeWarning, match="fails for the shapes"):
        inv = FastInverse(other, precision="bf16")
    assert bf16_kernel() == FUSED and inv.kernel == PORTABLE


def test_fused_failure_at_run_time_is_a_user_error(monkeypatch, flow, inputs):
    if not fused_available():
        pytest.skip("oneDNN's fused bfloat16 kernel does not work on this CPU")
    inv = FastInverse(flow, precision="bf16")
    assert inv.kernel == FUSED

    def broken(*args):
        raise RuntimeError("could not create a primitive descriptor for the inner product forward propagation primitive")

    monkeypatch.setattr(fi, "_FUSED_OP", broken)
    with pytest.raises(UserError, match="FLASHSIM_FORCE_PORTABLE_KERNELS=1"), torch.inference_mode():
        inv(*inputs)


def test_float32_never_uses_a_cpu_specific_kernel(monkeypatch, flow, inputs):
    z, c = inputs
    with torch.inference_mode():
        ref = FastInverse(flow)(z, c)

        def broken(*args):
            raise AssertionError("the float32 path called oneDNN's fused linear")

        monkeypatch.setattr(fi, "_FUSED_OP", broken)
        monkeypatch.setenv(PORTABLE_KERNELS_ENV, "1")
        reset_kernel_choice()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # float32 does not even decide the bfloat16 kernel
            inv = FastInverse(flow)
            assert inv.kernel == "float32"
            torch.testing.assert_close(inv(z, c), ref, atol=0, rtol=0)


def test_portable_fast_inverse_matches_nflows(force_portable, flow, inputs):
    """Same tolerances as tests/test_flows.py::test_fast_inverse_matches_nflows, portable kernel forced."""
    z, c = inputs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low_inv = FastInverse(flow, precision="bf16")
    assert low_inv.kernel == PORTABLE
    with torch.inference_mode():
        ref = flow._transform.inverse(z, context=c)[0]
        fast = FastInverse(flow)(z, c)
        back = flow._transform.forward(fast, context=c)[0]
        torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(back, z, atol=1e-3, rtol=1e-3)
        low = low_inv(z, c)
        diff = (low - ref).abs() / ref.std(0)
        assert torch.isfinite(low).all() and diff.median() < 5e-3 and torch.quantile(diff, 0.99) < 0.1
        # deterministic (batch and chunk independence come from the sampler's fixed blocks: see
        # the sampling test below)
        torch.testing.assert_close(low_inv(z, c), low, atol=0, rtol=0)
        torch.testing.assert_close(low_inv.set_precision("float32")(z, c), fast, atol=0, rtol=0)


def test_portable_layer_is_the_formula(force_portable, flow, inputs):
    """One coupling's network: the portable kernel computes y = bf16(relu(bf16(x)·bf16(W)ᵀ + bf16(b)))
    exactly as written out here with float64 sums of the same operands, to float32 summation error."""
    z, c = inputs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        layer = FastInverse(flow, precision="bf16").plan[0][0]
    bf = lambda t: t.to(torch.bfloat16).double()  # noqa: E731
    x_id = z[:256, : len(layer.identity)].t().contiguous()
    with torch.inference_mode():
        got = layer.net(x_id, c[:256])
        h_ = layer.hidden
        ctx = (c[:256].double() @ layer.ctx_w.double().t() + layer.ctx_b.double())
        ctx[:, h_:] = torch.sigmoid(ctx[:, h_:])
        h = x_id.t().double() @ layer.w_in.double() + ctx[:, :h_]
        for i, (w1, b1, w2, b2) in enumerate(layer.blocks):
            t = bf(torch.relu(bf(torch.relu(h)) @ bf(w1).t() + bf(b1)).float())
            t = bf((t @ bf(w2).t() + bf(b2)).float())
            h = h + t * ctx[:, h_ * (i + 1) : h_ * (i + 2)]
        want = bf((bf(layer.w_out) @ bf(h).t()).float()) + layer.b_out.double()
    # float32 vs float64 sums may round a few outputs to the neighbouring bfloat16 value
    scale = (want - layer.b_out.double()).abs() + 1e-6
    rel = ((got.double() - want).abs() / scale)
    assert (rel < 2 ** -6).float().mean() > 0.999 and rel.median() < 1e-6


def test_portable_and_fused_agree_to_bf16_rounding(flow, inputs):
    if not fused_available():
        pytest.skip("oneDNN's fused bfloat16 kernel does not work on this CPU: nothing to compare")
    z, c = inputs
    fused = FastInverse(flow, precision="bf16")
    assert fused.kernel == FUSED
    fi._KERNEL = PORTABLE  # as if the probe had failed (no warning needed here)
    portable = FastInverse(flow, precision="bf16")
    assert portable.kernel == PORTABLE
    with torch.inference_mode():
        ref = FastInverse(flow)(z, c)
        a, b = fused(z, c), portable(z, c)
        # every coupling network, same inputs: outputs equal up to a bfloat16 ulp or so of the product
        for (lf, _), (lp, _) in zip(fused.plan, portable.plan):
            x_id = z[:512, : len(lf.identity)].t().contiguous()
            pf, pp = lf.net(x_id, c[:512]), lp.net(x_id, c[:512])
            scale = (pf - lf.b_out).abs() + 1e-6
            rel = (pf - pp).abs() / scale
            assert (pf == pp).float().mean() > 0.9 and (rel < 2 ** -5).float().mean() > 0.999
    diff = (a - b).abs() / ref.std(0)
    assert diff.median() < 1e-4 and torch.quantile(diff, 0.99) < 0.02  # vs ~1e-3 between bf16 and float32


@pytest.fixture(scope="module")
def shipped_jets():
    """The shipped jets model and conditioning of synthetic Gen events (no training needed)."""
    import awkward as ak

    from flashsim_coffea.flows.sampler import FlowModel, shipped_model_path
    from flashsim_coffea.generate.synthetic import synthetic_gen

    model = FlowModel.load(shipped_model_path("jets"))
    ev = ak.Array(synthetic_gen(300, seed=5))
    ctx = model.spec.context(ev)
    cond, keys = model.spec.conditioning_matrix(ctx), model.spec.noise_keys(ctx)
    return model, cond[:600], {k: v[:600] for k, v in keys.items()}


def test_portable_samples_finite_deterministic_and_chunk_independent(force_portable, shipped_jets):
    model, cond, keys = shipped_jets
    n = len(cond)
    assert n >= 300
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.set_precision("bfloat16")
        try:
            assert model.inverse.kernel == PORTABLE
            model.block_size = 256
            full = model.sample(cond, keys, fold=0)
            assert all(np.isfinite(v).all() for v in full.values())
            for chunk in (1, 7, 250):
                parts = [model.sample(cond[s:s + chunk], {k: v[s:s + chunk] for k, v in keys.items()}, fold=0)
                         for s in range(0, n if chunk > 1 else 20, chunk)]
                for name in full:
                    got = np.concatenate([p[name] for p in parts])
                    np.testing.assert_array_equal(got, full[name][: len(got)], err_msg=f"{name} chunk {chunk}")
            perm = np.random.default_rng(0).permutation(n)  # shuffled order: same object, same values
            shuffled = model.sample(cond[perm], {k: v[perm] for k, v in keys.items()}, fold=0)
            np.testing.assert_array_equal(shuffled["ptRatio"], full["ptRatio"][perm])
            np.testing.assert_array_equal(model.sample(cond, keys, fold=0)["ptRatio"], full["ptRatio"])  # again
            model.set_precision("float32")
            f32 = model.sample(cond, keys, fold=0)
        finally:
            model.set_precision("float32")
            model.block_size = 2048
    a, b = full["ptRatio"], f32["ptRatio"]
    assert not np.array_equal(a, b) and np.median(np.abs(a / b - 1)) < 0.01  # a slightly different model


def test_blocks_on_threads_give_the_same_samples(shipped_jets):
    """With torch threads T > 1 the blocks run T at a time, each single-threaded: the samples are
    bit-identical to T = 1, and the thread setting is restored afterwards, also after an error."""
    import threading

    import torch

    from flashsim_coffea.flows import sampler

    model, cond, keys = shipped_jets
    before = torch.get_num_threads()
    try:
        model.block_size = 64  # ~10 blocks
        torch.set_num_threads(1)
        one = model.sample(cond, keys, fold=3)
        torch.set_num_threads(2)
        seen: set[str] = set()
        inverse = model.inverse

        def spy(z, c):
            seen.add(threading.current_thread().name)
            assert torch.get_num_threads() == 1  # each block single-threaded
            return inverse(z, c)

        model.inverse = spy
        two = model.sample(cond, keys, fold=3)
        assert any(name.startswith("flashsim-block") for name in seen)
        assert torch.get_num_threads() == 2
        for name in one:
            np.testing.assert_array_equal(one[name], two[name])

        def broken(z, c):
            raise RuntimeError("boom")

        model.inverse = broken
        with pytest.raises(RuntimeError, match="boom"):
            model.sample(cond, keys, fold=3)
        assert torch.get_num_threads() == 2
    finally:
        model.inverse = inverse
        model.block_size = int(model.card.get("sampling", {}).get("block_size", 4096))
        torch.set_num_threads(before)
