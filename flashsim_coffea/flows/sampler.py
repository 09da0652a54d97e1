"""Public sampling API: ``FlowModel.load(path)`` and ``model.sample(cond, keys, fold)``.

Base noise for object i, dimension d is

    z_id = Φ⁻¹(u),  u = uniform(seed, stream + attempt, run_i, lumi_i, event_i, object_i, fold, d)

(``flashsim_coffea.noise``), so an object's reco values depend only on its identity, never
on the batch, chunk or executor. The inverse pass is :class:`.fast_inverse.FastInverse`
(nflows' maths restructured for CPU throughput, equal to float32 rounding). The flow is inverted in blocks of exactly ``block_size``
rows (the last one zero-padded) under ``torch.inference_mode()`` with float32: the matrix
library then runs the same kernels on every block, so results do not change with the number
of objects per call either. Rows whose output is not finite, or lies outside the training
support of the targets (widened by 2 % of its width) or outside a transform's image, are redrawn with
``attempt`` = 1, 2, … (still counter-based, in fixed blocks of ``REDRAW_BLOCK_SIZE`` rows; each row keeps
its first good attempt) and counted; after ``MAX_ATTEMPTS`` they take the
decoded zero vector (the mode of the standardised base) and are counted as ``n_fallback``.
A model with a discrete head (:mod:`.head`) then draws its classified targets from
p(k | c, y_R), again in fixed blocks, with u keyed on the same identity.

``precision="bfloat16"`` (:meth:`FlowModel.set_precision`, ``load_model(..., precision=)``)
runs the conditioner products of the inverse with bfloat16 operands: ~1.1–1.2x faster on CPUs
with AMX, a slightly different model (see :mod:`.fast_inverse`); the head stays float32. On
CPUs where oneDNN's fused bfloat16 kernel does not work (no AVX-512, e.g. AMD Zen 3) a portable
kernel computes the same products at about float32 speed (:func:`.fast_inverse.bf16_kernel`,
one warning per process; ``FLASHSIM_FORCE_PORTABLE_KERNELS=1`` forces it).

Use :func:`load_model` from workers: a module-level cache keyed on (path, weights SHA-256)
loads each model once per process.
"""

from __future__ import annotations

import dataclasses
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from flashsim_coffea import noise
from flashsim_coffea.errors import UserError
from flashsim_coffea.nanoaod.conventions import EVENT_ID
from flashsim_coffea.objects import ObjectSpec, get_spec
from flashsim_coffea.objects.rules import RecoRules

from ..sampling_precision import check_precision
from .checkpoint import CARD_NAME, describe_mismatch, load_weights, read_card, resolve_card_path
from .fast_inverse import FUSED, FastInverse
from .head import DiscreteHead, draw, head_columns
from .model import build_flow
from .preprocess import Preprocessor

__all__ = ["FlowModel", "block_threads", "load_model", "shipped_model_path", "check_device", "check_finite_weights", "cpu_has_fast_bf16", "KEY_NAMES", "MAX_ATTEMPTS", "GPU_BLOCK_SIZE"]

KEY_NAMES = (*EVENT_ID, "object")
MAX_ATTEMPTS = 8
#: redraws (typically < 1 % of the rows) are inverted in their own, smaller fixed blocks, in two
#: passes (attempt 1; attempts 2..MAX_ATTEMPTS together): see ``FlowModel._redraw``
REDRAW_BLOCK_SIZE = 64
#: rows per block when sampling on a GPU (``FlowModel.to("cuda")``)
GPU_BLOCK_SIZE = 262_144


def check_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)``, or a clear error when it is not cpu/cuda or CUDA is unavailable."""
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise UserError(f"unsupported device {device!r}; use cpu or cuda") from err
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device {device}; use cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"device {device} requested but torch.cuda.is_available() is False (CPU-only torch build, "
            "no GPU or no driver); use --device cpu"
        )
    return device


class FlowModel:
    """A trained flow with its spec and preprocessing; samples targets for Gen objects."""

    def __init__(self, spec: ObjectSpec, preprocessor: Preprocessor, flow, card: dict, path: Path | None = None,
                 head: DiscreteHead | None = None):
        self.spec, self.pre, self.flow, self.card, self.path = spec, preprocessor, flow, card, path
        self.flow.eval()
        self.head = head.eval() if head is not None else None
        self.head_cols = head_columns(spec)
        self.combos = np.asarray(card["head"]["combos"], dtype=np.float64) if head is not None else None
        self.head_stream = noise.stream_id(f"flashsim/{spec.name}/head")
        sampling = card.get("sampling", {})
        self.block_size = int(sampling.get("block_size", 4096))
        self.seed = int(sampling.get("seed", 0))
        self.stream = noise.stream_id(f"flashsim/{spec.name}")
        self.inverse = FastInverse(flow)
        self.device = torch.device("cpu")

    @property
    def precision(self) -> str:
        """Operand precision of the inverse's products: ``float32`` (default) or ``bfloat16``."""
        return self.inverse.precision

    def set_precision(self, precision: str) -> "FlowModel":
        """Sample with the inverse's products in ``precision`` (``float32``/``fp32``, ``bfloat16``/``bf16``); returns self."""
        name = check_precision(precision)
        self.inverse.set_precision(name)  # picks the CPU kernel (warns once if it must be the portable one)
        if self.inverse.kernel == FUSED and not cpu_has_fast_bf16():
            warnings.warn("bfloat16 sampling requested but this CPU has neither AMX nor AVX512-BF16: "
                          "oneDNN emulates it, slower than float32", stacklevel=2)
        return self

    def to(self, device: str | torch.device, block_size: int | None = None) -> "FlowModel":
        """Sample on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``); returns self.

        On a GPU use large blocks (``block_size``, default ``GPU_BLOCK_SIZE``): the kernels are
        launch-bound below ~1e5 rows. GPU results equal the CPU ones only to float32 rounding
        (different kernels); on one device they stay independent of chunking and executor.
        """
        device = check_device(device)
        self.inverse.to(device)
        if self.head is not None:
            self.head.to(device)
        self.device = device
        if block_size is not None:
            self.block_size = int(block_size)
        elif device.type == "cuda":
            self.block_size = GPU_BLOCK_SIZE
        return self

    @property
    def target_names(self) -> list[str]:
        return self.spec.target_names

    # -- loading --------------------------------------------------------------------------
    @classmethod
    def from_card(cls, card: dict, state_dict: dict, path: Path | None = None, spec: str | ObjectSpec | None = None) -> "FlowModel":
        """The model of a card and its weights: a UserError naming ``path`` when the card's spec does not
        match its hash or ``spec``, the head is missing, a weight is NaN or inf
        (:func:`check_finite_weights`) or the weights do not fit the architecture."""
        card_spec = ObjectSpec.from_dict(card["spec"])
        if card_spec.hash() != card.get("spec_hash"):
            raise UserError(f"{path}: model card's spec does not match its recorded hash (card edited?)")
        if spec is not None:
            want = get_spec(spec)
            if want.hash() != card["spec_hash"]:
                raise UserError(
                    f"{path}: model was trained for spec {card_spec.name!r} (hash {card['spec_hash'][:12]}…), "
                    f"not for the requested spec {want.name!r} (hash {want.hash()[:12]}…)"
                )
        card_spec = _with_registered_rules(card_spec, card["spec"].get("rules"))
        flow = build_flow(card["n_targets"], card["n_context"], card["architecture"])
        head = None
        if card_spec.classified_names:
            h = card.get("head")
            if not h or h.get("targets") != card_spec.classified_names:
                raise UserError(
                    f"{path}: spec {card_spec.name!r} draws {', '.join(card_spec.classified_names)} with a discrete "
                    "head but the card has none (training stopped before the head was trained?); run "
                    f"`flashsim train {card_spec.name} --data DATA --init {path} --head-only -o DIR`"
                )
            head = DiscreteHead(h["n_inputs"], len(h["combos"]), **h["architecture"])
        check_finite_weights(state_dict, path)
        try:
            flow.load_state_dict({k: v for k, v in state_dict.items() if not k.startswith("head.")})
            if head is not None:
                head.load_state_dict({k[5:]: v for k, v in state_dict.items() if k.startswith("head.")})
        except RuntimeError as err:
            raise UserError(f"{path}: weights do not fit the card's architecture ({describe_mismatch(err)})") from err
        return cls(card_spec, Preprocessor.from_dict(card_spec, card["preprocessing"]), flow, card, path, head)

    @classmethod
    def load(cls, path: str | Path, spec: str | ObjectSpec | None = None) -> "FlowModel":
        """Load a model directory (card.json + model.safetensors); never unpickles."""
        card, card_path = read_card(path)
        state, _ = load_weights(card, card_path)
        return cls.from_card(card, state, card_path.parent, spec)

    # -- sampling -------------------------------------------------------------------------
    def base_noise(self, keys: dict[str, np.ndarray], fold, attempt: int | np.ndarray = 0) -> np.ndarray:
        """(N, T) standard normals keyed on (seed, stream+attempt, run, lumi, event, object, fold, d);
        ``attempt`` an int or one per row."""
        k = [np.asarray(keys[name], dtype=np.int64)[:, None] for name in KEY_NAMES]
        f = np.broadcast_to(np.asarray(fold, dtype=np.int64), k[0].shape[:1])[:, None]
        d = np.arange(len(self.spec.targets), dtype=np.int64)[None, :]
        a = np.asarray(attempt, dtype=np.int64)
        return noise.normal(self.seed, self.stream + (a[:, None] if a.ndim else a), *k, f, d)

    def _redraw(self, y: np.ndarray, bad: np.ndarray, c: np.ndarray, keys: dict[str, np.ndarray], fold) -> None:
        """Redraw the rows ``bad`` in place (``bad`` updated): each takes its first attempt
        1..MAX_ATTEMPTS whose output is good. Attempt 1 runs for all of them, then attempts
        2..MAX_ATTEMPTS run together for the few rows still bad — the same result as trying
        the attempts one after another, in 2 passes rather than up to MAX_ATTEMPTS (each pass
        has a fixed cost, ~10 % of a 1e4-object call in the sequential version)."""
        folds = np.broadcast_to(np.asarray(fold), (len(y),))
        for attempts in (np.array([1]), np.arange(2, MAX_ATTEMPTS + 1)):
            idx = np.flatnonzero(bad)
            if not idx.size or not attempts.size:
                continue
            rows, att = np.repeat(idx, len(attempts)), np.tile(attempts, len(idx))  # row-major: a row's attempts in order
            sub = {k: np.asarray(keys[k])[rows] for k in KEY_NAMES}
            yy = self._invert(self.base_noise(sub, folds[rows], att), c[rows], REDRAW_BLOCK_SIZE)
            good = ~self._bad(yy).reshape(len(idx), len(attempts))
            found = good.any(axis=1)
            first = good.argmax(axis=1)
            yy = yy.reshape(len(idx), len(attempts), -1)
            y[idx[found]] = yy[np.flatnonzero(found), first[found]]
            bad[idx[found]] = False

    def _blocked(self, fn, inputs: list[np.ndarray], width: int, block: int | None = None) -> np.ndarray:
        """``fn(*inputs)`` in fixed-size blocks of rows (the last one zero-padded): (N, width) float32.

        On CPU with T = ``torch.get_num_threads()`` > 1 the blocks run on T threads at once, each
        block single-threaded (:func:`block_threads`); every block is computed the same way
        whatever T, so the result does not depend on it."""
        n, b = len(inputs[0]), block or self.block_size
        out = np.empty((n, width), dtype=np.float32)

        def run(start: int) -> None:
            m = min(b, n - start)
            with torch.inference_mode():  # thread-local: entered in the thread that runs the block
                pads = [torch.zeros((b, a.shape[1]), dtype=torch.float32, device=self.device) for a in inputs]
                for p, a in zip(pads, inputs):
                    p[:m] = torch.from_numpy(np.ascontiguousarray(a[start : start + m], dtype=np.float32))
                out[start : start + m] = fn(*pads)[:m].cpu().numpy()

        starts = range(0, n, b)
        with block_threads(self.device, len(starts)) as pool:
            if pool is None:
                for start in starts:
                    run(start)
            else:
                list(pool.map(run, starts))
        return out

    def _invert(self, z: np.ndarray, c: np.ndarray, block: int | None = None) -> np.ndarray:
        """Flow inverse in fixed-size blocks: (N, T) float32."""
        return self._blocked(self.inverse, [z, c], z.shape[1], block)

    def _classify(self, y: np.ndarray, c: np.ndarray, keys: dict[str, np.ndarray], fold) -> np.ndarray:
        """Discrete head: (N, |D|) values of the classified targets drawn from p(k | c, y_R)."""
        d_cols, r_cols = self.head_cols
        logits = self._blocked(self.head, [np.concatenate([c, y[:, r_cols]], axis=1)], len(self.combos))
        logits = logits.astype(np.float64)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        k = [np.asarray(keys[name], dtype=np.int64) for name in KEY_NAMES]
        u = noise.uniform(self.seed, self.head_stream, *k, np.broadcast_to(np.asarray(fold, dtype=np.int64), k[0].shape))
        return self.combos[draw(probs, u)]

    def _bad(self, y: np.ndarray) -> np.ndarray:
        """Rows to redraw: non-finite, or outside the (widened) training support."""
        with np.errstate(invalid="ignore"):
            return ~np.isfinite(y).all(axis=1) | ~self.pre.in_support(y)

    def sample(self, cond: np.ndarray, keys: dict[str, np.ndarray], fold=0, return_info: bool = False):
        """Targets for each Gen object: dict name → float64 array (snapped, bounded, finite).

        cond: (N, C) raw conditioning (``spec.conditioning_matrix``); keys: run,
        luminosityBlock, event, object (``spec.noise_keys``); fold: int or (N,) array.
        With ``return_info`` also returns counts: n_nonfinite_cond (simulated at the
        training mean; flagged in ``info['valid']``), n_out_of_range_cond (clamped into the
        training range), n_redrawn, n_fallback.
        """
        cond = np.asarray(cond, dtype=np.float64)
        n = len(cond)
        if cond.ndim != 2 or cond.shape[1] != len(self.spec.conditioning):
            raise UserError(f"{self.spec.name}: conditioning must be (N, {len(self.spec.conditioning)}), got {cond.shape}")
        missing = [k for k in KEY_NAMES if k not in keys]
        if missing:
            raise UserError(f"{self.spec.name}: noise keys missing: {', '.join(missing)}")
        c, info = self.pre.encode_cond(cond)
        y = self._invert(self.base_noise(keys, fold), c) if n else np.zeros((0, len(self.spec.targets)), np.float32)
        bad = self._bad(y)
        info["n_redrawn"] = int(bad.sum())
        self._redraw(y, bad, c, keys, fold)
        info["n_fallback"] = int(bad.sum())
        y[bad] = 0.0
        x = self.pre.decode_targets(y)
        if self.head is not None and n:
            x[:, self.head_cols[0]] = self._classify(y, c, keys, fold)
        info["valid"] = ~info.pop("nonfinite_cond")
        if info["n_nonfinite_cond"] or info["n_out_of_range_cond"] or info["n_redrawn"]:
            warnings.warn(
                f"flashsim {self.spec.name}: {info['n_nonfinite_cond']} objects with non-finite conditioning "
                f"(simulated at the training mean, flagged invalid), {info['n_out_of_range_cond']} outside the "
                f"training range (clamped), {info['n_redrawn']} non-finite/out-of-support samples redrawn "
                f"({info['n_fallback']} fell back to the mode)",
                stacklevel=2,
            )
        out = {name: x[:, j] for j, name in enumerate(self.spec.target_names)}
        return (out, info) if return_info else out


@contextmanager
def block_threads(device: torch.device, n_blocks: int):
    """A pool of T = ``torch.get_num_threads()`` threads that run whole blocks, with torch's own
    (intra-op) threads set to 1 meanwhile; ``None`` (run the blocks in turn) on a GPU, with
    T = 1, or with a single block (then run with one intra-op thread too).

    Why: the inverse of a 2048-row block is ~300 small kernels (matrix products of 128 columns,
    element-wise spline maths); splitting each of them over 2 threads gained 1.0-1.4x on this
    project's 2-core CPU, running 2 blocks at once (each on one thread; the kernels release the
    GIL) 1.7-2.0x (``benchmarks/README.md``). Each block then always runs single-threaded,
    so samples are the same for every T (and as with T = 1)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads <= 1:
        yield None
        return
    torch.set_num_threads(1)
    try:
        if n_blocks <= 1:
            yield None
        else:
            with ThreadPoolExecutor(min(threads, n_blocks), thread_name_prefix="flashsim-block") as pool:
                yield pool
    finally:
        torch.set_num_threads(threads)


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX tiles or AVX512-BF16)."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(p() for p in probes if p is not None)


_CACHE: dict[tuple[str, str, str, str], FlowModel] = {}
#: parsed cards by (card path, modification time, size): a worker asks for its models once per
#: chunk, and parsing the jets card (ordinal CDFs, metrics) took ~15 ms each time
_CARDS: dict[tuple[str, int, int], tuple[dict, Path]] = {}


def _read_card_cached(path: str | Path) -> tuple[dict, Path]:
    card_path = resolve_card_path(path).resolve()
    st = card_path.stat()
    key = (str(card_path), st.st_mtime_ns, st.st_size)
    if key not in _CARDS:
        _CARDS[key] = read_card(card_path)
    return _CARDS[key]


def load_model(path: str | Path, spec: str | ObjectSpec | None = None, device: str = "cpu",
               precision: str = "float32") -> FlowModel:
    """Cached :meth:`FlowModel.load` (moved to ``device``, sampling in ``precision``) keyed on
    (resolved card path, weights SHA-256, device, precision)."""
    card, card_path = _read_card_cached(path)
    precision = check_precision(precision)
    key = (str(card_path), str(card.get("weights_sha256")), str(device), precision)
    model = _CACHE.get(key)
    if model is None:
        model = FlowModel.load(path)
        if str(device) != "cpu":
            model.to(device)
        if precision != "float32":
            model.set_precision(precision)
        _CACHE[key] = model
    if spec is not None and get_spec(spec).hash() != model.card["spec_hash"]:
        FlowModel.from_card(model.card, model.flow.state_dict(), card_path.parent, spec)  # raises the clear error
    return model


def check_finite_weights(state_dict: dict, path: Path | str | None = None) -> None:
    """A UserError naming the model folder and the first tensor of ``state_dict`` holding NaN or
    inf (a flow with such weights samples NaN for every object)."""
    for name, tensor in state_dict.items():
        if not (torch.is_tensor(tensor) and tensor.is_floating_point()):
            continue
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise UserError(f"{path if path is not None else 'model'}: weight tensor {name!r} has {bad} non-finite "
                            "value(s) (NaN or inf); the model is broken: retrain it or restore its weights file")


def card_spec(card: dict) -> ObjectSpec:
    """The spec a model card states, with the rules it does not state from the registered spec
    of the same name and hash (:func:`_with_registered_rules`)."""
    return _with_registered_rules(ObjectSpec.from_dict(card["spec"]), card["spec"].get("rules"))


def _with_registered_rules(card_spec: ObjectSpec, card_rules: dict | None) -> ObjectSpec:
    """``card_spec`` with the rules its card does not state (all of them for a card older than
    :class:`~flashsim_coffea.objects.rules.RecoRules`) taken from the registered spec of the same
    name and hash; unchanged for a spec nobody registered."""
    fields = {f.name for f in dataclasses.fields(RecoRules)}
    missing = fields - set(card_rules or {})
    if not missing:
        return card_spec
    try:
        registered = get_spec(card_spec.name)
    except UserError:
        return card_spec
    if registered.hash() != card_spec.hash():
        return card_spec
    return card_spec.with_rules(dataclasses.replace(card_spec.rules, **{k: getattr(registered.rules, k) for k in missing}))


def shipped_model_path(name: str) -> Path:
    """Directory of a model shipped with the package (``flashsim_coffea/models/<name>``)."""
    path = Path(__file__).resolve().parents[1] / "models" / name
    if not (path / CARD_NAME).is_file():
        raise UserError(f"no shipped model {name!r} in {path.parent}")
    return path
