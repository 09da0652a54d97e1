"""Training loop: maximum likelihood with Adam, cosine LR, early stopping, resumable.

Loss = mean negative log-likelihood −log p(y | c) of the standardised targets y given the
standardised conditioning c. Integer/ordinal targets and spike bands are dequantized with
fresh uniforms every epoch, u = uniform(seed, "dequant", epoch, row, column) (counter-based,
so a resumed run sees the same numbers). The validation set (a seeded ``val_fraction``
split) uses one fixed dequantization. The learning rate follows a cosine from ``lr`` to
``lr·min_lr_factor`` over ``epochs`` (an epoch is one pass, or ``epoch_size`` random objects); training stops after ``patience`` epochs without a
better validation loss or after ``max_minutes``. ``init`` fine-tunes an existing model (its
architecture and standardisation are kept; the conditioning range is widened to the new data).

Files in MODEL_DIR: ``card.json`` + ``model.safetensors`` (the best model so far, a complete
shippable checkpoint), and ``checkpoint/`` with the last epoch's weights, optimizer moments
(safetensors) and the JSON training state used by ``--resume``. Nothing is pickled.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from flashsim_coffea import __version__, noise
from flashsim_coffea.errors import UserError
from flashsim_coffea.objects import ObjectSpec

from .checkpoint import save_checkpoint
from .data import TrainingData
from .model import ARCHITECTURES, build_flow, count_parameters
from .preprocess import Preprocessor, needs_noise

__all__ = ["TrainConfig", "train", "TINY"]

SAMPLING_BLOCK_SIZE = 2048


@dataclass
class TrainConfig:
    arch: str = "default"
    epochs: int = 60
    batch_size: int = 2048
    lr: float = 2e-3
    min_lr_factor: float = 0.02
    weight_decay: float = 0.0
    patience: int = 8
    val_fraction: float = 0.1
    seed: int = 1
    device: str = "cpu"
    max_objects: int | None = None
    max_minutes: float | None = None
    grad_clip: float = 5.0
    threads: int | None = None
    epoch_size: int | None = None
    stop_after: int | None = None
    init: str | None = None
    arch_overrides: dict = field(default_factory=dict)

    def architecture(self) -> dict:
        if self.arch not in ARCHITECTURES:
            raise UserError(f"unknown architecture {self.arch!r}; known: {', '.join(ARCHITECTURES)}")
        return {**ARCHITECTURES[self.arch], **self.arch_overrides}


#: configuration for tests: trains in seconds
TINY = dict(arch="tiny", epochs=4, batch_size=256, lr=5e-3, patience=10)


def _keep_unchanged(pre: Preprocessor, old: Preprocessor, old_spec: dict, spec: ObjectSpec, cond, targ, u) -> int:
    """Copy ``old``'s standardisation into ``pre`` for columns whose definition did not change."""
    kept = 0
    for j, f in enumerate(spec.conditioning):
        if j < len(old_spec["conditioning"]) and old_spec["conditioning"][j] == json.loads(json.dumps(f.to_dict())):
            for a in ("cond_mean", "cond_std"):
                getattr(pre, a)[j] = getattr(old, a)[j]
            pre.cond_min[j] = min(pre.cond_min[j], old.cond_min[j])
            pre.cond_max[j] = max(pre.cond_max[j], old.cond_max[j])
            kept += 1
    e = Preprocessor._encode_targets_raw(spec, targ, u, pre.ordinal_cdf)
    for j, t in enumerate(spec.targets):
        if j < len(old_spec["targets"]) and old_spec["targets"][j] == json.loads(json.dumps(t.to_dict())):
            pre.targ_mean[j], pre.targ_std[j] = old.targ_mean[j], old.targ_std[j]
            pre.targ_min[j] = (e[:, j].min() - pre.targ_mean[j]) / pre.targ_std[j]
            pre.targ_max[j] = (e[:, j].max() - pre.targ_mean[j]) / pre.targ_std[j]
            kept += 1
    return kept


def _uniforms(spec: ObjectSpec, seed: int, tag: str, epoch: int, rows: np.ndarray) -> np.ndarray:
    """(N, T) dequantization uniforms; 0.5 (unused) in columns that need no noise."""
    u = np.full((len(rows), len(spec.targets)), 0.5)
    cols = [j for j, t in enumerate(spec.targets) if needs_noise(t)]
    if cols:
        u[:, cols] = noise.uniform(seed, f"dequant/{tag}", epoch, rows[:, None], np.asarray(cols)[None, :])
    return u


def _encodable(spec: ObjectSpec, cond: np.ndarray, targ: np.ndarray) -> np.ndarray:
    """Rows whose conditioning and targets are finite after the spec's transforms."""
    with np.errstate(all="ignore"):
        ok = np.isfinite(Preprocessor._transform_cond(spec, cond)).all(axis=1)
        ok &= np.isfinite(Preprocessor._encode_targets_raw(spec, targ, None)).all(axis=1)
    return ok


def _state_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"opt.{pid}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return tensors, {"param_groups": sd["param_groups"]}


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: dict) -> None:
    state: dict[int, dict] = {}
    for name, v in tensors.items():
        if name.startswith("opt."):
            _, pid, k = name.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": groups["param_groups"]})


def _nll(flow, y: torch.Tensor, c: torch.Tensor, batch: int = 8192) -> float:
    total = 0.0
    with torch.no_grad():
        for s in range(0, len(y), batch):
            total += -flow.log_prob(y[s : s + batch], context=c[s : s + batch]).sum().item()
    return total / max(len(y), 1)


def train(spec: ObjectSpec, data: TrainingData, out_dir: str | Path, config: TrainConfig,
          resume: bool = False, progress: bool = True) -> dict:
    """Train a flow for ``spec`` on ``data``; returns the final card's metrics."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoint"
    prov = data.provenance
    if prov.get("spec_hash") not in (None, spec.hash()) and prov.get("extraction_hash", prov.get("spec_hash")) != spec.extraction_hash():
        raise UserError(
            f"training data was extracted for spec {data.provenance.get('spec')!r} "
            f"(hash {str(data.provenance.get('spec_hash'))[:12]}…), not for {spec.name!r} ({spec.hash()[:12]}…)"
        )
    if data.cond.shape[1] != len(spec.conditioning) or data.targets.shape[1] != len(spec.targets):
        raise UserError(f"training data shapes {data.cond.shape}/{data.targets.shape} do not match spec {spec.name!r}")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda requested but no CUDA device is available")
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    arch = config.architecture()

    n = len(data) if config.max_objects is None else min(len(data), config.max_objects)
    if n < 10:
        raise UserError(f"only {n} training objects: need at least 10")
    rng = np.random.default_rng(config.seed)
    perm = rng.permutation(len(data))[:n]
    n_val = max(1, int(round(n * config.val_fraction)))
    val_rows, train_rows = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    cond, targ = data.cond.astype(np.float64), data.targets.astype(np.float64)
    usable = _encodable(spec, cond, targ)
    n_unusable = int((~usable[perm]).sum())
    if n_unusable:
        if progress:
            print(f"{spec.name}: {n_unusable} rows outside the transforms' domains (non-finite once encoded) skipped")
        val_rows, train_rows = val_rows[usable[val_rows]], train_rows[usable[train_rows]]

    init_state = None
    if config.init:
        # fine-tuning: keep the initial model's standardisation (the network's input meaning)
        # and widen its conditioning range to cover the new data
        from .checkpoint import load_weights, read_card

        init_card, init_path = read_card(config.init)
        same_shape = (init_card["n_targets"], init_card["n_context"]) == (len(spec.targets), len(spec.conditioning))
        if init_card["spec"]["name"] != spec.name or not same_shape:
            raise UserError(f"{init_path}: --init model was trained for another spec ({init_card['spec']['name']!r})")
        init_state, _ = load_weights(init_card, init_path)
        arch = init_card["architecture"]
        u_fit = _uniforms(spec, config.seed, "fit", 0, train_rows)
        if init_card["spec_hash"] == spec.hash():
            pre = Preprocessor.from_dict(spec, init_card["preprocessing"])
            fresh = Preprocessor.fit(spec, cond[train_rows], targ[train_rows], u_fit)
            pre.cond_min, pre.cond_max = np.minimum(pre.cond_min, fresh.cond_min), np.maximum(pre.cond_max, fresh.cond_max)
            # target support of the new data, expressed in the kept standardisation
            e = Preprocessor._encode_targets_raw(spec, targ[train_rows], u_fit, pre.ordinal_cdf)
            pre.targ_min = (e.min(axis=0) - pre.targ_mean) / pre.targ_std
            pre.targ_max = (e.max(axis=0) - pre.targ_mean) / pre.targ_std
        else:
            # a revised version of the same spec (e.g. a target's encoding changed): preprocessing
            # fitted afresh, but unchanged targets and features keep the initial standardisation
            pre = Preprocessor.fit(spec, cond[train_rows], targ[train_rows], u_fit)
            old = Preprocessor.from_dict(ObjectSpec.from_dict(init_card["spec"]), init_card["preprocessing"])
            kept = _keep_unchanged(pre, old, init_card["spec"], spec, cond[train_rows], targ[train_rows], u_fit)
            if progress:
                print(f"--init {init_path}: spec {spec.name!r} was revised; kept the standardisation of "
                      f"{kept} unchanged columns, refitted the others")
    else:
        pre = Preprocessor.fit(spec, cond[train_rows], targ[train_rows], _uniforms(spec, config.seed, "fit", 0, train_rows))
    c_train = torch.from_numpy(pre.encode_cond(cond[train_rows])[0]).to(device)
    c_val = torch.from_numpy(pre.encode_cond(cond[val_rows])[0]).to(device)
    y_val = torch.from_numpy(
        pre.encode_targets(targ[val_rows], _uniforms(spec, config.seed, "val", 0, val_rows)).astype(np.float32)
    ).to(device)

    torch.manual_seed(config.seed)
    flow = build_flow(len(spec.targets), len(spec.conditioning), arch, seed=config.seed)
    if init_state is not None:
        flow.load_state_dict(init_state)
    flow = flow.to(device)
    opt = torch.optim.AdamW(flow.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = len(train_rows) if not config.epoch_size else min(config.epoch_size, len(train_rows))
    steps_per_epoch = max(1, int(np.ceil(per_epoch / config.batch_size)))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=config.epochs * steps_per_epoch, eta_min=config.lr * config.min_lr_factor
    )
    state = {"epoch": 0, "best_val": float("inf"), "best_epoch": -1, "bad_epochs": 0, "history": [], "seconds": 0.0}

    if resume and (ckpt_dir / "state.json").is_file():
        from safetensors.torch import load_file

        saved = json.loads((ckpt_dir / "state.json").read_text())
        if saved.get("spec_hash") != spec.hash():
            raise UserError(f"{ckpt_dir}: checkpoint belongs to another spec; cannot --resume")
        tensors = load_file(str(ckpt_dir / "last.safetensors"))
        flow.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        _restore_optimizer(opt, {k: v.to(device) for k, v in tensors.items() if k.startswith("opt.")}, saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        state = saved["state"]
        if progress:
            print(f"resuming {spec.name} at epoch {state['epoch']} (best val NLL {state['best_val']:.4f})")
    elif resume and progress:
        print(f"no checkpoint in {ckpt_dir}: starting from scratch")

    card_base = {
        "spec": spec.to_dict(),
        "spec_hash": spec.hash(),
        "preprocessing": pre.to_dict(),
        "architecture": arch,
        "arch_name": config.arch,
        "n_targets": len(spec.targets),
        "n_context": len(spec.conditioning),
        "n_parameters": count_parameters(flow),
        "sampling": {"block_size": SAMPLING_BLOCK_SIZE, "seed": 0},
        "data": data.provenance if not config.init else {**data.provenance, "initialised_from": init_card.get("data")},
        "seed": config.seed,
        "training": {**asdict(config), "n_train": int(len(train_rows)), "n_val": int(n_val)},
        "package_version": __version__,
        "torch_version": torch.__version__,
    }

    t0 = time.time() - state["seconds"]
    bar = tqdm(total=config.epochs, initial=state["epoch"], desc=f"train {spec.name}", unit="epoch", disable=not progress)
    while state["epoch"] < config.epochs and state["bad_epochs"] < config.patience:
        epoch = state["epoch"]
        flow.train()
        y_train = torch.from_numpy(
            pre.encode_targets(targ[train_rows], _uniforms(spec, config.seed, "train", epoch, train_rows)).astype(np.float32)
        ).to(device)
        order = torch.randperm(len(train_rows), generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch))
        order = order[:per_epoch].to(device)
        total, count = 0.0, 0
        for s in range(0, len(order), config.batch_size):
            b = order[s : s + config.batch_size]
            loss = -flow.log_prob(y_train[b], context=c_train[b]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), config.grad_clip)
            opt.step()
            sched.step()
            total += loss.item() * len(b)
            count += len(b)
        flow.eval()
        train_nll = total / count
        val_nll = _nll(flow, y_val, c_val)
        state["epoch"] = epoch + 1
        state["seconds"] = time.time() - t0
        state["history"].append({"epoch": epoch + 1, "train_nll": train_nll, "val_nll": val_nll,
                                 "lr": sched.get_last_lr()[0], "seconds": round(state["seconds"], 1)})
        improved = val_nll < state["best_val"] and np.isfinite(val_nll)
        if improved:
            state.update(best_val=val_nll, best_epoch=epoch + 1, bad_epochs=0)
            metrics = {"best_val_nll": val_nll, "train_nll": train_nll, "best_epoch": epoch + 1,
                       "epochs_run": epoch + 1, "train_seconds": round(state["seconds"], 1)}
            save_checkpoint(out_dir, flow.state_dict(), {**card_base, "metrics": metrics})
        else:
            state["bad_epochs"] += 1
        # periodic (every epoch) resumable checkpoint: model + optimizer moments + JSON state
        opt_tensors, opt_groups = _state_tensors(opt)
        tensors = {f"model.{k}": v for k, v in flow.state_dict().items()} | opt_tensors
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(ckpt_dir / "last.safetensors.tmp"))
        (ckpt_dir / "last.safetensors.tmp").replace(ckpt_dir / "last.safetensors")
        (ckpt_dir / "state.json").write_text(json.dumps(
            {"spec_hash": spec.hash(), "optimizer": opt_groups, "scheduler": sched.state_dict(), "state": state}, indent=1))
        bar.update(1)
        bar.set_postfix(train=f"{train_nll:.4f}", val=f"{val_nll:.4f}", lr=f"{sched.get_last_lr()[0]:.1e}",
                        best=f"{state['best_val']:.4f}")
        if not progress:
            print(f"{spec.name} epoch {epoch + 1}/{config.epochs}: train NLL {train_nll:.4f}, val NLL {val_nll:.4f}, "
                  f"lr {sched.get_last_lr()[0]:.2e}, {state['seconds']:.0f} s{' *' if improved else ''}", flush=True)
        if config.max_minutes is not None and state["seconds"] > 60 * config.max_minutes:
            break
        if config.stop_after is not None and state["epoch"] >= config.stop_after:
            break  # the LR schedule still spans ``epochs``: reproduces a run stopped by hand
    bar.close()
    return {"best_val_nll": state["best_val"], "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
            "history": state["history"], "n_parameters": count_parameters(flow)}
