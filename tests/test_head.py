"""Discrete head: classified targets drawn from p(k | c, y_R), trained after (or on top of) the flow."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from flashsim_coffea.errors import UserError
from flashsim_coffea.flows import TINY, FlowModel, TrainConfig, train
from flashsim_coffea.flows.head import combination_index, draw
from flashsim_coffea.objects import get_spec

from test_flows import synthetic


def _without_classify(spec):
    return replace(spec, targets=tuple(replace(t, classify=False) for t in spec.targets))


def _threshold_data(spec, n: int, seed: int = 5):
    """Synthetic jets with jetId = 2 iff muEF > 0.8 (else 6): a sharp cut on another target."""
    data = synthetic(spec, n, seed=seed)
    names = spec.target_names
    mu = data.targets[:, names.index("muEF")]
    data.targets[:, names.index("jetId")] = np.where(mu > 0.8, 2.0, 6.0)
    return data


def test_draw_is_inverse_cdf():
    probs = np.array([[0.2, 0.5, 0.3]] * 5)
    u = np.array([0.1, 0.2, 0.69, 0.71, 0.999])
    np.testing.assert_array_equal(draw(probs, u), [0, 1, 1, 2, 2])
    combos = np.array([[0.0, 2.0], [4.0, 6.0]])
    np.testing.assert_array_equal(combination_index(combos, np.array([[4.0, 6.0], [0.0, 2.0], [1.0, 1.0]])), [1, 0, -1])


def test_head_learns_sharp_cut_and_is_deterministic(tmp_path):
    torch.set_num_threads(1)
    spec = get_spec("jets")
    assert spec.classified_names == ["puId", "jetId"]
    data = _threshold_data(spec, 6000)
    out = tmp_path / "jets"
    metrics = train(spec, data, out, TrainConfig(**dict(TINY, head_epochs=10)), progress=False)
    assert metrics["head"]["val_ce"] < metrics["head"]["marginal_val_ce"]
    card = json.loads((out / "card.json").read_text())
    assert card["head"]["targets"] == ["puId", "jetId"] and len(card["head"]["combos"]) <= 8  # 2 jetId x 4 puId
    model = FlowModel.load(out, spec="jets")
    model.block_size = 512
    n = 3000
    cond, keys = data.cond[:n], {k: v[:n] for k, v in data.keys.items()}
    with pytest.warns(UserWarning):
        s = model.sample(cond, keys)
    assert set(np.unique(s["jetId"])) <= {2, 6}  # jetId = 0 never seen in training: never drawn
    high, low = s["muEF"] > 0.9, s["muEF"] < 0.7
    assert high.sum() > 50 and low.sum() > 500
    # the cut acts on the flow's own muEF draw
    assert (s["jetId"][high] == 2).mean() > 0.8 and (s["jetId"][low] == 6).mean() > 0.9
    # counter-based: another block size or a permutation gives the same IDs per object
    model.block_size = 128
    perm = np.random.default_rng(1).permutation(n)
    with pytest.warns(UserWarning):
        again = model.sample(cond[perm], {k: v[perm] for k, v in keys.items()})
    np.testing.assert_array_equal(again["jetId"], s["jetId"][perm])
    np.testing.assert_array_equal(again["puId"], s["puId"][perm])


def test_head_only_keeps_the_flow_and_errors(tmp_path):
    torch.set_num_threads(1)
    spec = get_spec("muons")
    plain = _without_classify(spec)
    assert plain.flow_hash() == spec.flow_hash() and plain.hash() != spec.hash()
    data = synthetic(plain, 1500, seed=4)
    base = tmp_path / "base"
    train(plain, data, base, TrainConfig(**TINY), progress=False)
    with pytest.raises(UserError, match="--init"):
        train(spec, data, tmp_path / "x", TrainConfig(**TINY, head_only=True), progress=False)
    with pytest.raises(UserError, match="no classified targets"):
        train(plain, data, tmp_path / "x", TrainConfig(**TINY, head_only=True, init=str(base)), progress=False)
    headed = tmp_path / "headed"
    train(spec, data, headed, TrainConfig(**TINY, head_only=True, init=str(base)), progress=False)
    a, b = FlowModel.load(base, spec=plain), FlowModel.load(headed, spec=spec)
    a.block_size = b.block_size = 256
    cond, keys = data.cond[:400], {k: v[:400] for k, v in data.keys.items()}
    with pytest.warns(UserWarning):
        sa, sb = a.sample(cond, keys), b.sample(cond, keys)
    for name in spec.target_names:
        if name in spec.classified_names:
            t = spec.targets[spec.target_names.index(name)]
            assert set(np.unique(sb[name])) <= set(t.values)
        else:  # the flow and its preprocessing are the initial model's
            np.testing.assert_array_equal(sa[name], sb[name], err_msg=name)
    # a card of a classified spec without its head is refused with the command that fixes it
    card = json.loads((headed / "card.json").read_text())
    del card["head"]
    (headed / "card.json").write_text(json.dumps(card))
    with pytest.raises(UserError, match="--head-only"):
        FlowModel.load(headed)
