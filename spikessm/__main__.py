"""Command line: `spikessm <command>` or `python -m spikessm <command>`.

    spikessm train                          the embedded default: tiny ListOps, gsu-s4d, a few minutes on a CPU
    spikessm train --task listops --model gsu-s4d --data-dir D [--set d_model=256 ...] [--resume --run-dir R]
    spikessm eval RUN_DIR_OR_CHECKPOINT     test accuracy, firing rates and the energy estimate
    spikessm generate listops --out D       the official ListOps generator (LRA sizes by default)
    spikessm generate pathfinder --out D    Pathfinder images in the LRA layout (--resolution 128: Path-X)
    spikessm check                          the ops against float64 references on this machine, with timings
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def parse_setting(text: str) -> tuple[str, object]:
    """"key=value" -> (key, value); value read as JSON where it parses (numbers, true/false, null), else a
    string; "True"/"False"/"None" are accepted too."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set takes key=value, got {text!r}")
    value = {"True": "true", "False": "false", "None": "null"}.get(value, value)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_train_parser(commands) -> None:
    from .models import PRESETS
    from .training import TASKS

    p = commands.add_parser("train", help="train a model on a task (no arguments: the embedded tiny ListOps)")
    p.add_argument("--task", default="tiny-listops", choices=sorted(TASKS))
    p.add_argument("--model", default="gsu-s4d", choices=sorted(PRESETS))
    p.add_argument("--data-dir", help="folder of the task's files (ListOps, Retrieval, Pathfinder, Path-X)")
    p.add_argument("--source", help="Hub dataset id or save_to_disk folder (Text, Image, sMNIST, psMNIST, sCIFAR)")
    p.add_argument("--run-dir", help="where checkpoints and metrics go (default runs/<task>-<model>-<time>)")
    for name, kind in (("epochs", int), ("batch-size", int), ("lr", float), ("ssm-lr", float),
                       ("weight-decay", float), ("warmup-steps", int)):
        p.add_argument(f"--{name}", type=kind, help="default: the task preset's")
    p.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--no-amp", action="store_true", help="no bfloat16 autocast on CUDA")
    p.add_argument("--log-every", type=int, default=20, help="steps between metric records")
    p.add_argument("--set", dest="settings", type=parse_setting, action="append", default=[], metavar="KEY=VALUE",
                   help="override a model setting (a ModelConfig field), e.g. --set d_model=256")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")


def run_train(args) -> int:
    from .training import TrainConfig, train

    if args.resume and not args.run_dir:
        raise SystemExit("spikessm train: --resume needs --run-dir")
    config = TrainConfig(task=args.task, model=args.model, run_dir=args.run_dir, data_dir=args.data_dir,
                         source=args.source, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         ssm_lr=args.ssm_lr, weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
                         grad_clip=args.grad_clip, seed=args.seed, device=args.device, amp=not args.no_amp,
                         log_every=args.log_every, model_overrides=dict(args.settings))
    train(config, resume=args.resume)
    return 0


def run_eval(args) -> int:
    from .training.tasks import get_task, load_task
    from .training.trainer import load_checkpoint_model, pick_device, report_test_split

    path = Path(args.checkpoint)
    if path.is_dir():
        path = path / "best.pt"
    if not path.exists():
        raise SystemExit(f"spikessm eval: no checkpoint at {path}")
    device = pick_device(args.device)
    model, settings = load_checkpoint_model(path, device)
    data = load_task(get_task(settings["task"]), args.data_dir or settings["data_dir"],
                     args.source or settings["source"])
    print(f"{settings['task']} / {settings['model']}: {path}")
    report_test_split(model, data, batch_size=args.batch_size or settings["batch_size"], device=device,
                amp=not args.no_amp)
    return 0


def add_generate_parser(commands) -> None:
    p = commands.add_parser("generate", help="write a data set to disk in the LRA format")
    kinds = p.add_subparsers(dest="kind", required=True)
    lo = kinds.add_parser("listops", help="ListOps by the official specification (defaults: the LRA sizes)")
    lo.add_argument("--out", required=True, help="folder for basic_{train,val,test}.tsv")
    for name, default in (("n-train", 96000), ("n-val", 2000), ("n-test", 2000), ("max-depth", 10),
                          ("max-args", 10), ("min-length", 500), ("max-length", 2000), ("seed", 0)):
        lo.add_argument(f"--{name}", type=int, default=default)
    pf = kinds.add_parser("pathfinder", help="Pathfinder / Path-X images with their metadata files")
    pf.add_argument("--out", required=True, help="folder that will hold pathfinder<resolution>/")
    pf.add_argument("--n-images", type=int, default=1000)
    pf.add_argument("--resolution", type=int, default=32, choices=(32, 128), help="32: Pathfinder, 128: Path-X")
    pf.add_argument("--contour-length", type=int, default=14, choices=(6, 9, 14))
    pf.add_argument("--images-per-batch", type=int, default=1000)
    pf.add_argument("--seed", type=int, default=0)


def run_generate(args) -> int:
    if args.kind == "listops":
        from .data.listops import write_listops

        paths = write_listops(args.out, args.n_train, args.n_val, args.n_test, max_depth=args.max_depth,
                              max_args=args.max_args, min_length=args.min_length, max_length=args.max_length,
                              seed=args.seed)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    else:
        from .data.pathfinder_generator import write_pathfinder

        folder = write_pathfinder(args.out, args.n_images, resolution=args.resolution,
                                  contour_length=args.contour_length, images_per_batch=args.images_per_batch,
                                  seed=args.seed)
        print(f"wrote {args.n_images} images to {folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spikessm", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    add_train_parser(commands)
    ev = commands.add_parser("eval", help="evaluate a checkpoint on its task's test split")
    ev.add_argument("checkpoint", help="a run directory (uses its best.pt) or a checkpoint file")
    ev.add_argument("--data-dir")
    ev.add_argument("--source")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--batch-size", type=int)
    ev.add_argument("--no-amp", action="store_true")
    add_generate_parser(commands)
    commands.add_parser("check", help="verify the ops on this machine against float64 references and time them")
    args = parser.parse_args(argv)
    if args.command == "train":
        return run_train(args)
    if args.command == "eval":
        return run_eval(args)
    if args.command == "generate":
        return run_generate(args)
    if args.command == "check":
        from .selfcheck import run_check

        return 0 if run_check() else 1
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
