"""The demo's inputs and output folder, all checked before any work starts.

* :func:`prepare_output` — the report folder must be writable and empty (or ``force``); nothing
  in it is removed then: the report's files are replaced when written, and
  :func:`remove_replaced_figures` removes the earlier report's figures that the new one did not
  draw again (never other files).
* :func:`resolve_samples` — process → ROOT file: given files, a folder of ``<process>.root``,
  samples generated with ``flashsim generate`` (``events``; cached in ``DIR/samples``) or the
  bundled package data (a missing file names the package data path).
* :func:`check_models` — the FlashSim jets/muons flows and the DNN exist (shipped models are
  package data: a missing one names ``flashsim_coffea/models``).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..safe_write import check_output_dir, ensure_writable_dir, remove_replaced
from .config import DemoConfig

__all__ = ["REPORT_FILES", "check_models", "check_output_free", "prepare_output", "remove_replaced_figures",
           "resolve_samples", "make_simulator"]

#: what the demo writes into its folder besides the figures listed in summary.json (``--force`` replaces these)
REPORT_FILES = ("summary.md", "summary.json")
FIGURES = "figures"
SAMPLES = "samples"


def check_output_free(cfg: DemoConfig) -> Path:
    """The report folder: clear error if it is a file or not empty without ``force`` (touches
    nothing; ``DIR/samples``, the generated samples cache, does not count)."""
    return check_output_dir(cfg.output, cfg.force, keep=(SAMPLES,))


def prepare_output(cfg: DemoConfig) -> Path:
    """Create/check the report folder; clear error if not writable or not empty without ``force``.
    Nothing in it is removed (module docstring).

    Reused: ``DIR/samples`` (generated samples cache) is not counted as content.
    """
    out = ensure_writable_dir(check_output_free(cfg))
    (out / FIGURES).mkdir(exist_ok=True)
    return out


def remove_replaced_figures(out_dir: str | Path, written) -> list[str]:
    """After the new figures are drawn, before the new ``summary.json`` is written: remove the
    figures of the earlier report in ``out_dir`` (listed in its ``summary.json``) that are not in
    ``written`` (paths relative to ``out_dir``); returns them
    (:func:`flashsim_coffea.safe_write.remove_replaced`)."""
    return remove_replaced(out_dir, written, listing=REPORT_FILES[1], key="figures", under=FIGURES)


def _num_entries(path: Path) -> int | None:
    import uproot

    try:
        with uproot.open(path) as f:
            return int(f["Events"].num_entries)
    except Exception:  # noqa: BLE001 - treated as "not there"
        return None


def resolve_samples(cfg: DemoConfig, log=print) -> dict[str, Path]:
    """process → ROOT file, in the order of ``cfg.processes`` (module docstring)."""
    from ..samples import BUNDLED, sample_dir, sample_path

    if cfg.samples is not None:
        out = {p: Path(cfg.samples[p]) for p in cfg.processes if p in cfg.samples}
        missing = [p for p in cfg.processes if p not in out]
        if missing:
            raise UserError(f"no sample given for {', '.join(missing)}")
    elif cfg.sample_dir is not None:
        out = {p: Path(cfg.sample_dir) / f"{p}.root" for p in cfg.processes}
    elif cfg.events is not None:
        out = _generated(cfg, log)
    else:
        missing = [p for p in cfg.processes if not (sample_dir() / f"{p}.root").exists()]
        if missing:
            raise UserError(
                f"bundled sample(s) {', '.join(missing)} missing from the package data folder {sample_dir()} "
                "(broken install?): reinstall flashsim-coffea, regenerate them with `python -m flashsim_coffea.samples`, "
                "or run `flashsim demo --events N` to generate new ones"
            )
        out = {p: sample_path(p) for p in cfg.processes}
    for p, path in out.items():
        if not path.is_file():
            raise UserError(f"sample of {p}: {path} does not exist")
        if p in BUNDLED and _num_entries(path) is None:
            raise UserError(f"sample of {p}: {path} is not a readable NanoAOD file (no Events tree)")
    return out


def _generated(cfg: DemoConfig, log) -> dict[str, Path]:
    """``flashsim generate`` samples of ``cfg.events`` events each (bundled seeds and filters), cached."""
    from ..generate.driver import generate
    from ..samples import generate_args

    if cfg.events < 1:
        raise UserError(f"--events must be ≥ 1, got {cfg.events}")
    folder = Path(cfg.output) / SAMPLES
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for p in cfg.processes:
        path = folder / f"{p}.root"
        process, settings = generate_args(p)
        if _num_entries(path) != cfg.events:
            log(f"generating {cfg.events} {p} events -> {path}")
            generate(process, cfg.events, settings["seed"], path, workers=max(1, cfg.workers),
                     filter_name=settings.get("filter_name"), force=True, progress=cfg.progress)
        out[p] = path
    return out


def check_models(cfg: DemoConfig) -> dict[str, Path]:
    """FlashSim model folders {"jets", "muons"}, each loaded once here so that a missing, corrupt
    or out-of-date model (trained for another spec) is a clear error before any work; the DNN too."""
    from ..analysis.dnn import check_dnn
    from ..flows.bundle import load_bundle, resolve_model

    models = {}
    for name in ("jets", "muons"):
        given = (cfg.models or {}).get(name)
        try:
            models[name] = resolve_model(name, "default") if given is None else Path(given)
        except UserError as err:
            raise UserError(f"{err} (broken install?): the shipped FlashSim models are package data of "
                            "flashsim_coffea; reinstall it or pass your own with --jets-model/--muons-model") from err
        resolve_model(name, models[name])  # a missing or corrupt card: a clear error here
        spec = load_bundle(models[name]).spec
        if spec.name != name:
            raise UserError(f"{name} model folder {models[name]} holds a model of spec {spec.name!r}, not {name!r}")
    if cfg.dnn is not False:
        check_dnn(None if cfg.dnn is True else cfg.dnn)
    return models


def make_simulator(models: dict[str, Path]):
    """The FlashSim injector used by the processor (carries only paths; loads lazily on workers)."""
    from ..inject import FlashSim

    return FlashSim(jets=models["jets"], muons=models["muons"])

