"""Training loop: maximum likelihood with Adam, cosine LR, early stopping, resumable.

Loss = mean negative log-likelihood −log p(y | c) of the standardised targets y given the
standardised conditioning c. Integer/ordinal targets and spike bands are dequantized with
fresh uniforms every epoch, u = uniform(seed, "dequant", epoch, row, column) (counter-based,
so a resumed run sees the same numbers). The validation set holds a ``val_fraction`` of the
*events* (``split="event"``, default: event (run, lumi, event) goes to validation when
uniform(split_seed, "split/event", run, lumi, event) < val_fraction; ``split_seed`` defaults
to ``seed``): the training files hold each Gen
object several times (one row per reference draw), and a split by rows would put copies of
training objects into validation and make its loss optimistic. ``split="row"`` (a seeded
permutation of rows) is how the first shipped models were trained. Validation uses one fixed
dequantization. The learning rate follows a cosine from ``lr`` to
``lr·min_lr_factor`` over ``epochs`` (an epoch is one pass, or ``epoch_size`` random objects); training stops after ``patience`` epochs without a
better validation loss or after ``max_minutes``. ``init`` fine-tunes an existing model (its
architecture and standardisation are kept; the conditioning range is widened to the new data).
A spec that *appends* conditioning features to the initial model's (same targets, the old
features first and unchanged) starts from the initial network with zero weights on the new
context columns (:func:`extend_context`), i.e. from exactly the initial model's density; the
new columns are standardised afresh, the old ones keep their standardisation.

A spec with classified targets (``Target.classify``) gets a discrete head
(:mod:`.head`) trained after the flow: cross-entropy of the combination of classified values
given [c, y_R] (y_R: the other targets, dequantized afresh every epoch as for the flow),
AdamW with a cosine LR over ``head_epochs``, early stopping on the validation
cross-entropy. ``head_only`` (with ``init``) keeps the initial model's flow and
standardisation and trains only the head — the initial model may come from the spec
without ``classify`` flags (same :meth:`~flashsim_coffea.objects.ObjectSpec.flow_hash`).

Files in MODEL_DIR: ``card.json`` + ``model.safetensors`` (the best model so far, a complete
shippable checkpoint), and ``checkpoint/`` with the last epoch's weights, optimizer moments
(safetensors) and the JSON training state used by ``--resume``. Nothing is pickled. A folder
that already holds a model (:data:`MODEL_FILES`) is refused before any work unless ``force``
(or ``resume``: its training continues); with ``force`` the files of the replaced model that the
new one supersedes (:data:`SUPERSEDED`: its efficiency map, count model and resumable state) are
removed once every check has passed, and one line says so; other files in the folder stay.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from flashsim_coffea import __version__, noise
from flashsim_coffea.errors import UserError
from flashsim_coffea.safe_write import atomic_write
from flashsim_coffea.objects import ObjectSpec
from flashsim_coffea.nanoaod.conventions import EVENT_ID

from .checkpoint import load_weights, read_card, save_checkpoint
from .data import TrainingData
from .head import HEAD_ARCHITECTURE, DiscreteHead, combination_index, combinations, head_columns
from .model import ARCHITECTURES, build_flow, count_parameters
from .preprocess import Preprocessor, needs_noise

__all__ = ["MODEL_FILES", "SUPERSEDED", "TrainConfig", "check_model_dir", "train", "validation_split", "beyond_tail_bound",
           "TINY"]

#: what training writes in MODEL_DIR: a folder holding one of them holds a model
MODEL_FILES = ("card.json", "model.safetensors", "checkpoint")
#: files of a model that a new model in its folder supersedes (removed when ``force`` replaces it)
SUPERSEDED = ("efficiency.json", "count.json", "checkpoint/state.json", "checkpoint/last.safetensors")

SAMPLING_BLOCK_SIZE = 2048


#: the options that shape the layers of appended targets (TrainConfig fields)
APPEND_OPTIONS = ("append_layers", "append_hidden", "append_blocks")


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
    split: str = "event"
    seed: int = 1
    split_seed: int | None = None
    device: str = "cpu"
    max_objects: int | None = None
    max_minutes: float | None = None
    grad_clip: float = 5.0
    threads: int | None = None
    epoch_size: int | None = None
    stop_after: int | None = None
    init: str | None = None
    append_layers: int = 4
    append_hidden: int | None = None  # the extension networks' width (None: the architecture's)
    append_blocks: int | None = None
    freeze_init: bool = False
    arch_overrides: dict = field(default_factory=dict)
    head_only: bool = False
    head_epochs: int = 12
    head_lr: float = 1e-3
    head_batch_size: int = 4096

    def __post_init__(self):
        for name in APPEND_OPTIONS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise UserError(f"--{name.replace('_', '-')} must be an integer ≥ 1, got {value!r}")

    @property
    def validation_seed(self) -> int:
        """Seed of the train/validation split and of the validation dequantization:
        ``split_seed``, or ``seed`` when unset. Fixing it across fine-tuning stages with other
        ``seed`` values keeps every stage's validation set (and NLL) the same."""
        return self.seed if self.split_seed is None else self.split_seed

    def architecture(self) -> dict:
        if self.arch not in ARCHITECTURES:
            raise UserError(f"unknown architecture {self.arch!r}; known: {', '.join(ARCHITECTURES)}")
        return {**ARCHITECTURES[self.arch], **self.arch_overrides}


#: configuration for tests: trains in seconds
TINY = dict(arch="tiny", epochs=4, batch_size=256, lr=5e-3, patience=10, head_epochs=4, head_batch_size=256,
            head_lr=5e-3)


def _as_dicts(features) -> list[dict]:
    return [json.loads(json.dumps(f if isinstance(f, dict) else f.to_dict())) for f in features]


def _appended(old: list, new: list) -> int:
    """len(new) − len(old) when ``new`` starts with exactly ``old`` and is longer, else 0."""
    return len(new) - len(old) if len(new) > len(old) and new[: len(old)] == old else 0


def appends_conditioning(old_spec: dict, spec: ObjectSpec) -> int:
    """Number of conditioning features ``spec`` appends to ``old_spec``'s (a card's spec dict),
    0 when ``spec``'s conditioning does not start with exactly the old features."""
    return _appended(_as_dicts(old_spec["conditioning"]), _as_dicts(spec.conditioning))


def extend_context(state: dict[str, torch.Tensor], n_added: int) -> dict[str, torch.Tensor]:
    """The flow's weights with ``n_added`` zero columns after the context inputs.

    nflows' ResidualNet reads the context as the last columns of ``initial_layer``'s input
    (cat(x_A, c)) and as the whole input of each block's ``context_layer``: zero columns there
    make the extended network compute exactly what the initial one did.
    """
    out = {}
    for k, v in state.items():
        if k.endswith(("initial_layer.weight", "context_layer.weight")) and v.ndim == 2:
            v = torch.cat([v, v.new_zeros(v.shape[0], n_added)], dim=1)
        out[k] = v
    return out


def appends_targets(old_spec: dict, spec: ObjectSpec) -> int:
    """Number of targets ``spec`` appends to ``old_spec``'s (a card's spec dict), 0 when
    ``spec``'s targets do not start with exactly the old ones."""
    return _appended(_as_dicts(old_spec["targets"]), _as_dicts(spec.targets))


def extend_targets(state: dict[str, torch.Tensor], flow: torch.nn.Module) -> tuple[dict[str, torch.Tensor], int]:
    """``flow``'s state with the trained ``state`` of a flow of fewer targets embedded in it;
    also the number of transforms (couplings and permutations) that come from ``state``.

    ``flow`` is :func:`~.model.build_flow` of the spec with appended targets (an
    ``arch["extensions"]`` entry more): its first transforms are the trained ones with the appended
    targets among their identity inputs. nflows' ResidualNet reads cat(x_A, c), x_A in target
    order, so the appended targets are columns between the old x_A and the context of each
    ``initial_layer``: they start at zero, and the trained layers compute exactly what they did.
    Permutations keep the appended targets in place. The extension layers keep their fresh
    initialisation.
    """
    out = dict(flow.state_dict())
    n_old = 0
    for k, v in state.items():
        if k.endswith(("identity_features", "transform_features")):
            continue  # the masks: the new flow's (the old ones plus the appended targets as identity)
        new = out[k]
        if k.startswith("_transform._transforms."):
            n_old = max(n_old, int(k.split(".")[2]) + 1)
        if new.shape == v.shape:
            out[k] = v
        elif k.endswith("_permutation"):
            out[k] = torch.cat([v, torch.arange(len(v), len(new), dtype=v.dtype)])
        elif k.endswith("initial_layer.weight"):
            out[k] = _insert_zero_columns(v, _context_of(k, state), new.shape[1] - v.shape[1])
        else:
            raise ValueError(f"cannot embed {k}: shape {tuple(v.shape)} into {tuple(new.shape)}")
    return out, n_old


def _context_of(key: str, state: dict[str, torch.Tensor]) -> int:
    """Context inputs of the ResidualNet owning ``key`` (its first block's context layer)."""
    ctx = state[key.replace("initial_layer.weight", "blocks.0.context_layer.weight")]
    return ctx.shape[1]


def _insert_zero_columns(w: torch.Tensor, n_context: int, n_added: int) -> torch.Tensor:
    """cat(w[:, :x_A], zeros(n_added), w[:, context]): zero columns before the last ``n_context``."""
    n_id = w.shape[1] - n_context
    return torch.cat([w[:, :n_id], w.new_zeros(w.shape[0], n_added), w[:, n_id:]], dim=1)


def _keep_unchanged(pre: Preprocessor, old: Preprocessor, old_spec: dict, spec: ObjectSpec, cond, targ, u) -> int:
    """Copy ``old``'s standardisation into ``pre`` for columns whose definition did not change."""
    kept = 0
    old_cond, new_cond = _as_dicts(old_spec["conditioning"]), _as_dicts(spec.conditioning)
    for j, f in enumerate(new_cond):
        if j < len(old_cond) and old_cond[j] == f:
            for a in ("cond_mean", "cond_std"):
                getattr(pre, a)[j] = getattr(old, a)[j]
            pre.cond_min[j] = min(pre.cond_min[j], old.cond_min[j])
            pre.cond_max[j] = max(pre.cond_max[j], old.cond_max[j])
            kept += 1
    e = Preprocessor._encode_targets_raw(spec, targ, u, pre.ordinal_cdf)
    old_targ, new_targ = _as_dicts(old_spec["targets"]), _as_dicts(spec.targets)
    for j, t in enumerate(new_targ):
        if j < len(old_targ) and old_targ[j] == t:
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


def validation_split(data: TrainingData, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(validation rows, training rows) of ``data``: at most ``max_objects`` rows chosen and split
    with ``config.validation_seed`` (see the module docstring)."""
    n = len(data) if config.max_objects is None else min(len(data), config.max_objects)
    if n < 10:
        raise UserError(f"only {n} training objects: need at least 10")
    perm = np.random.default_rng(config.validation_seed).permutation(len(data))[:n]
    return _split(data, perm, config)


def _split(data: TrainingData, perm: np.ndarray, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(validation rows, training rows), sorted, among the rows ``perm`` (see module docstring)."""
    if config.split == "row":
        n_val = max(1, int(round(len(perm) * config.val_fraction)))
        return np.sort(perm[:n_val]), np.sort(perm[n_val:])
    if config.split != "event":
        raise UserError(f"unknown validation split {config.split!r}; use 'event' or 'row'")
    missing = [k for k in EVENT_ID if k not in data.keys]
    if missing:
        raise UserError(f"training data has no {', '.join(missing)} keys for an event split; use split='row'")
    rows = np.sort(perm)
    u = noise.uniform(config.validation_seed, "split/event", *(np.asarray(data.keys[k])[rows] for k in EVENT_ID))
    is_val = u < config.val_fraction
    if not is_val.any() or is_val.all():
        raise UserError(f"event split with val_fraction {config.val_fraction} left an empty training or "
                        f"validation set ({len(rows)} objects); add events or use split='row'")
    return rows[is_val], rows[~is_val]


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


#: fraction of a target's standardised training values beyond the spline range that is reported
BEYOND_TAIL_BOUND_REPORTED = 1e-4


def beyond_tail_bound(y: np.ndarray, names: list[str], bound: float,
                      min_fraction: float = BEYOND_TAIL_BOUND_REPORTED) -> dict[str, float]:
    """Targets whose standardised values y (rows × targets) lie beyond ±``bound`` in more than
    ``min_fraction`` of the rows, with that fraction.

    A rational-quadratic spline coupling maps [−B, B] onto itself and is the identity outside,
    so a coordinate of the flow's output leaves [−B, B] only where its base noise did: with B = 5
    for p = 2Φ(−5) ≈ 6·10⁻⁷. Training values out there are never sampled (the muon pT response
    tails beyond ±10 %, 0.17 % of muons, were missing for that reason)."""
    frac = np.mean(np.abs(y) > bound, axis=0) if len(y) else np.zeros(len(names))
    return {n: float(f) for n, f in zip(names, frac) if f > min_fraction}


def check_model_dir(out_dir: str | Path, force: bool = False, resume: bool = False) -> list[str]:
    """The model folder before any work: a UserError when it is a file, or holds a model
    (:data:`MODEL_FILES`) and neither ``force`` nor ``resume`` is set. Returns the files of
    :data:`SUPERSEDED` there that replacing its model (``force``, not ``resume``) supersedes."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out} is a file; give a model folder")
    held = [n for n in MODEL_FILES if (out / n).exists()]
    if not held or resume:
        return []
    if not force:
        raise UserError(f"model folder {out} already holds a model ({', '.join(held)}); use --force to replace it, "
                        "--resume to continue its training, or -o another folder")
    return [n for n in SUPERSEDED if (out / n).is_file()]


def train(spec: ObjectSpec, data: TrainingData, out_dir: str | Path, config: TrainConfig,
          resume: bool = False, progress: bool = True, force: bool = False) -> dict:
    """Train a flow for ``spec`` on ``data`` into the folder ``out_dir`` (one that holds a model only
    with ``force`` or ``resume``: :func:`check_model_dir`); returns the final card's metrics."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoint"
    superseded = check_model_dir(out_dir, force, resume)
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

    if config.head_only and not spec.classified_names:
        raise UserError(f"--head-only: spec {spec.name!r} has no classified targets (Target(classify=True))")
    val_rows, train_rows = validation_split(data, config)
    n_val = len(val_rows)
    cond, targ = data.cond.astype(np.float64), data.targets.astype(np.float64)
    usable = _encodable(spec, cond, targ)
    n_unusable = int((~usable[val_rows]).sum() + (~usable[train_rows]).sum())
    if n_unusable:
        if progress:
            print(f"{spec.name}: {n_unusable} rows outside the transforms' domains (non-finite once encoded) skipped")
        val_rows, train_rows = val_rows[usable[val_rows]], train_rows[usable[train_rows]]

    init_state, n_appended = None, 0
    if config.init:
        # fine-tuning: keep the initial model's standardisation (the network's input meaning)
        # and widen its conditioning range to cover the new data
        init_card, init_path = read_card(config.init)
        n_added = appends_conditioning(init_card["spec"], spec) if not config.head_only else 0
        n_appended = appends_targets(init_card["spec"], spec)
        same_shape = ((init_card["n_targets"] + n_appended, init_card["n_context"] + n_added)
                      == (len(spec.targets), len(spec.conditioning)))
        if init_card["spec"]["name"] != spec.name or not same_shape:
            raise UserError(f"{init_path}: --init model was trained for another spec ({init_card['spec']['name']!r}: "
                            f"{init_card['n_context']} conditioning features → {init_card['n_targets']} targets; this spec: "
                            f"{len(spec.conditioning)} → {len(spec.targets)}); a spec may only append conditioning "
                            "features and targets")
        init_state, _ = load_weights(init_card, init_path)
        init_state = {k: v for k, v in init_state.items() if not k.startswith("head.")}
        if n_added:
            init_state = extend_context(init_state, n_added)
            if progress:
                print(f"--init {init_path}: {n_added} conditioning feature(s) appended; their weights start at zero")
        arch = init_card["architecture"]
        if config.head_only and n_appended:
            raise UserError(f"{init_path}: --head-only keeps the --init model's flow, but this spec appends "
                            f"{n_appended} target(s) to it: train the flow with --init (and --freeze-init) first")
        if n_appended:
            extension = {"targets": n_appended, "layers": config.append_layers}
            extension.update({k: v for k, v in (("hidden", config.append_hidden), ("blocks", config.append_blocks))
                              if v is not None})
            arch = {**arch, "extensions": [*arch.get("extensions", []), extension]}
            if progress:
                print(f"--init {init_path}: {n_appended} target(s) appended, learned by {config.append_layers} new coupling "
                      f"layers{' (the initial layers frozen)' if config.freeze_init else ''}")
        elif config.freeze_init and not arch.get("extensions"):
            raise UserError("--freeze-init trains only the layers of appended targets: this spec appends none to --init, "
                            "whose architecture has no extension layers to train on")
        u_fit = _uniforms(spec, config.seed, "fit", 0, train_rows)
        same_flow = ObjectSpec.from_dict(init_card["spec"]).flow_hash() == spec.flow_hash()
        if config.head_only and not same_flow:
            raise UserError(f"{init_path}: --head-only needs a model of the same spec up to `classify` flags; "
                            f"{init_card['spec']['name']!r} differs in its conditioning or targets")
        if config.head_only:
            pre = Preprocessor.from_dict(spec, init_card["preprocessing"])  # the flow's, as it is
        elif same_flow:
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
    elif config.head_only:
        raise UserError("--head-only trains the discrete head of an existing model: give it with --init MODEL")
    elif config.freeze_init or any(getattr(config, k) != getattr(TrainConfig, k) for k in APPEND_OPTIONS):
        raise UserError("--freeze-init and --append-layers/--append-hidden/--append-blocks act on the layers a spec "
                        "appends to an --init model: give one with --init MODEL")
    else:
        pre = Preprocessor.fit(spec, cond[train_rows], targ[train_rows], _uniforms(spec, config.seed, "fit", 0, train_rows))
    if not config.head_only:  # the flow's tensors (the head encodes its own)
        c_train = torch.from_numpy(np.ascontiguousarray(pre.encode_cond(cond[train_rows])[0])).to(device)
        c_val = torch.from_numpy(np.ascontiguousarray(pre.encode_cond(cond[val_rows])[0])).to(device)
        y_val = torch.from_numpy(
            pre.encode_targets(targ[val_rows], _uniforms(spec, config.validation_seed, "val", 0, val_rows)).astype(np.float32)
        ).to(device)

        bound = float(arch["tail_bound"])
        beyond = beyond_tail_bound(y_val.cpu().numpy(), spec.target_names, bound)
        if beyond:
            listed = ", ".join(f"{t} {100 * f:.3g} %" for t, f in beyond.items())
            warnings.warn(f"{spec.name}: standardised training values beyond the flow's spline range ±{bound:g}: {listed} "
                          f"of the validation rows. The flow samples them only with base noise |z| > {bound:g} "
                          f"(p = {math.erfc(bound / math.sqrt(2)):.1g}): those tails will be missing; give the target a "
                          "transform that compresses them (e.g. Asinh(scale) with a larger scale)", UserWarning, stacklevel=2)

    if superseded:  # every check passed: the replaced model's maps and state go now
        for name in superseded:
            (out_dir / name).unlink(missing_ok=True)
        print(f"{out_dir}: replacing its model; removed {', '.join(superseded)} of the model it replaces "
              "(measure the efficiency map / count model again for the new one)", flush=True)
    torch.manual_seed(config.seed)
    flow = build_flow(len(spec.targets), len(spec.conditioning), arch, seed=config.seed)
    if init_state is not None:
        n_frozen = 0
        if n_appended:
            init_state, n_frozen = extend_targets(init_state, flow)
        elif config.freeze_init:  # continue training the newest extension of the same spec
            n_frozen = len(flow._transform._transforms) - int(arch["extensions"][-1]["layers"])
        flow.load_state_dict(init_state)
        if config.freeze_init:
            for t in flow._transform._transforms[:n_frozen]:
                t.requires_grad_(False)
    flow = flow.to(device)
    opt = torch.optim.AdamW([p for p in flow.parameters() if p.requires_grad], lr=config.lr,
                            weight_decay=config.weight_decay)
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
        "training": {**asdict(config), "init": Path(config.init).name if config.init else None,  # a name, never a machine's path
                     "n_train": int(len(train_rows)), "n_val": int(n_val)},
        "package_version": __version__,
        "torch_version": torch.__version__,
    }

    if config.head_only:
        card_base["metrics"] = init_card.get("metrics", {})
        card_base["training"] = {**init_card.get("training", {}), "head_only": True}
        card_base["data"] = init_card.get("data", {})
        card_base["seed"] = init_card.get("seed", config.seed)
        card_base["arch_name"] = init_card.get("arch_name", config.arch)
        state["epoch"] = config.epochs  # no flow epochs
        best_state = init_state
    t0 = time.time() - state["seconds"]
    bar = tqdm(total=config.epochs, initial=state["epoch"], desc=f"train {spec.name}", unit="epoch",
               disable=not progress or config.head_only)
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
            torch.nn.utils.clip_grad_norm_([p for p in flow.parameters() if p.requires_grad], config.grad_clip)
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

        with atomic_write(ckpt_dir / "last.safetensors") as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
        with atomic_write(ckpt_dir / "state.json") as tmp:
            Path(tmp).write_text(json.dumps(
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
    result = {"best_val_nll": state["best_val"], "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
              "history": state["history"], "n_parameters": count_parameters(flow)}
    if spec.classified_names:
        if not config.head_only:
            card, card_path = read_card(out_dir)
            best_state, _ = load_weights(card, card_path)
            card_base["metrics"] = card["metrics"]
        head_state, head_card = train_head(spec, pre, cond, targ, train_rows, val_rows, config, device, progress)
        head_card["data"] = data.provenance
        save_checkpoint(out_dir, {**{k: v for k, v in best_state.items() if not k.startswith("head.")},
                                  **{f"head.{k}": v for k, v in head_state.items()}},
                        {**card_base, "head": head_card})
        result["head"] = head_card["metrics"]
        if config.head_only:
            result.update(best_val_nll=card_base["metrics"].get("best_val_nll", float("nan")),
                          best_epoch=card_base["metrics"].get("best_epoch", 0), epochs_run=0)
    return result


def train_head(spec: ObjectSpec, pre: Preprocessor, cond: np.ndarray, targ: np.ndarray, train_rows: np.ndarray,
               val_rows: np.ndarray, config: TrainConfig, device: torch.device, progress: bool = True) -> tuple[dict, dict]:
    """Train the discrete head (see module docstring); returns (state_dict, card["head"])."""
    from tqdm.auto import tqdm

    d_cols, r_cols = head_columns(spec)
    combos = combinations(spec, targ[train_rows])
    labels = combination_index(combos, targ[:, d_cols])
    unseen = val_rows[labels[val_rows] < 0]
    val_rows = val_rows[labels[val_rows] >= 0]

    def inputs(rows: np.ndarray, tag: str, epoch: int) -> torch.Tensor:
        y = pre.encode_targets(targ[rows], _uniforms(spec, config.seed, tag, epoch, rows))[:, r_cols]
        x = np.concatenate([pre.encode_cond(cond[rows])[0], y.astype(np.float32)], axis=1)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)

    x_val = inputs(val_rows, "head-val", 0)
    l_val = torch.from_numpy(labels[val_rows]).to(device)
    l_train = torch.from_numpy(labels[train_rows]).to(device)
    torch.manual_seed(config.seed + 7)
    head = DiscreteHead(len(spec.conditioning) + len(r_cols), len(combos), **HEAD_ARCHITECTURE).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=config.head_lr)
    batch = config.head_batch_size
    steps = config.head_epochs * max(1, int(np.ceil(len(train_rows) / batch)))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=config.head_lr * config.min_lr_factor)
    ce = torch.nn.functional.cross_entropy

    def val_loss() -> tuple[float, float]:
        head.eval()
        with torch.no_grad():
            logits = torch.cat([head(x_val[s : s + 65536]) for s in range(0, len(x_val), 65536)])
            return ce(logits, l_val).item(), (logits.argmax(1) == l_val).float().mean().item()

    freq = np.bincount(labels[train_rows], minlength=len(combos)) / len(train_rows)
    marginal_ce = float(-np.log(np.maximum(freq[labels[val_rows]], 1e-12)).mean())
    best = {"val_ce": float("inf")}
    best_state, bad = None, 0
    bar = tqdm(range(config.head_epochs), desc=f"head {spec.name}", unit="epoch", disable=not progress)
    for epoch in bar:
        head.train()
        x_train = inputs(train_rows, "head-train", epoch)
        order = torch.randperm(len(train_rows), generator=torch.Generator().manual_seed(config.seed * 7919 + epoch))
        for s in range(0, len(order), batch):
            b = order[s : s + batch].to(device)
            loss = ce(head(x_train[b]), l_train[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        v, acc = val_loss()
        if v < best["val_ce"]:
            best = {"val_ce": v, "val_accuracy": acc, "best_epoch": epoch + 1}
            best_state, bad = {k: t.detach().cpu().clone() for k, t in head.state_dict().items()}, 0
        else:
            bad += 1
        bar.set_postfix(val_ce=f"{v:.4f}", acc=f"{acc:.4f}", marginal=f"{marginal_ce:.4f}")
        if not progress:
            print(f"{spec.name} head epoch {epoch + 1}/{config.head_epochs}: val cross-entropy {v:.4f} "
                  f"(marginal {marginal_ce:.4f}), accuracy {acc:.4f}", flush=True)
        if bad >= config.patience:
            break
    metrics = {**best, "marginal_val_ce": marginal_ce, "epochs_run": epoch + 1, "n_train": int(len(train_rows)),
               "n_val": int(len(val_rows)), "n_val_unseen_combination": int(len(unseen))}
    card = {"targets": spec.classified_names, "combos": combos.tolist(), "architecture": dict(HEAD_ARCHITECTURE),
            "n_inputs": len(spec.conditioning) + len(r_cols), "n_parameters": count_parameters(head), "metrics": metrics,
            "training": {"epochs": config.head_epochs, "lr": config.head_lr, "batch_size": batch, "seed": config.seed}}
    return best_state, card
