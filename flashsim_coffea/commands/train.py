"""``flashsim train SPEC DATA -o MODEL_DIR``: train a conditional flow for an object spec."""

from __future__ import annotations

import argparse

from ._options import add_inputs, add_no_progress, add_output, input_files

NAME = "train"
HELP = "train a FlashSim flow (safetensors + JSON card) on data from `flashsim extract`"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from flashsim_coffea.flows.model import ARCHITECTURES

    parser.add_argument("spec", help="object spec: jets, muons, a spec .json file or module:attribute")
    add_inputs(parser, "training data (.npz/.safetensors from `flashsim extract`)", metavar="DATA", one=True,
               deprecated=("--data",))
    add_output(parser, "model directory (card.json + model.safetensors)", metavar="MODEL_DIR")
    parser.add_argument("--arch", default="default", choices=sorted(ARCHITECTURES), help="network size")
    parser.add_argument("--tiny", action="store_true", help="tiny configuration for tests (seconds)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--patience", type=int, default=None, help="early stopping: epochs without improvement")
    parser.add_argument("--max-objects", type=int, default=None)
    parser.add_argument("--epoch-size", type=int, default=None, help="objects per epoch (default: all)")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop after this many epochs (the LR schedule still spans --epochs)")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop after this wall time")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--split-seed", type=int, default=None,
                        help="seed of the train/validation split (default: --seed); keep it fixed across "
                             "fine-tuning stages so that they share one validation set")
    parser.add_argument("--split", choices=("event", "row"), default="event",
                        help="validation split by event (default; no Gen object on both sides) or by row")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--resume", action="store_true", help="continue from MODEL_DIR/checkpoint")
    parser.add_argument("--force", action="store_true",
                        help="replace the model in MODEL_DIR (its efficiency.json/count.json are removed: measure them again)")
    parser.add_argument("--init", default=None, metavar="MODEL", help="fine-tune starting from this model")
    parser.add_argument("--append-layers", type=int, default=None,
                        help="coupling layers that learn the targets the spec appends to the --init model's (default 4)")
    parser.add_argument("--append-hidden", type=int, default=None,
                        help="width of the appended layers' networks (default: the architecture's)")
    parser.add_argument("--append-blocks", type=int, default=None,
                        help="residual blocks of the appended layers' networks (default: the architecture's)")
    parser.add_argument("--freeze-init", action="store_true",
                        help="with appended targets: train only their new layers, the --init model's layers stay as they are; "
                             "with the --init model's own spec: train only its newest extension layers further")
    parser.add_argument("--head-only", action="store_true",
                        help="keep the --init model's flow and train only the discrete head of the spec's classified targets")
    parser.add_argument("--head-epochs", type=int, default=None, help="epochs of the discrete head (default 12)")
    add_no_progress(parser)


def run(args: argparse.Namespace) -> int:
    from flashsim_coffea.flows.data import load_data
    from flashsim_coffea.flows.train import TINY, TrainConfig, check_model_dir, train
    from flashsim_coffea.objects import get_spec

    spec = get_spec(args.spec)
    (data,) = input_files(args, one=True, metavar="DATA")
    check_model_dir(args.output, args.force, args.resume)  # before reading the data
    cfg = dict(TINY) if args.tiny else {"arch": args.arch}
    for key in ("epochs", "batch_size", "lr", "patience", "max_objects", "max_minutes", "threads", "init", "epoch_size", "stop_after",
                "head_epochs", "append_layers", "append_hidden", "append_blocks"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    config = TrainConfig(**cfg, seed=args.seed, device=args.device, head_only=args.head_only,
                         freeze_init=args.freeze_init, split=args.split, split_seed=args.split_seed)
    metrics = train(spec, load_data(data), args.output, config, resume=args.resume, progress=not args.no_progress,
                    force=args.force)
    print(f"{spec.name}: best validation NLL {metrics['best_val_nll']:.4f} at epoch {metrics['best_epoch']} "
          f"({metrics['epochs_run']} epochs, {metrics['n_parameters']} parameters) -> {args.output}")
    if "head" in metrics:
        h = metrics["head"]
        print(f"{spec.name}: discrete head validation cross-entropy {h['val_ce']:.4f} (marginal {h['marginal_val_ce']:.4f}), "
              f"accuracy {h['val_accuracy']:.4f}")
    return 0
