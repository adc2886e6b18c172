"""Command line: `spikessm <command>` or `python -m spikessm <command>`.

    spikessm train                          the embedded default: tiny ListOps, gsu-s4d, a few minutes on a CPU
    spikessm train --task listops --model gsu-s4d --data-dir D [--set d_model=256 ...] [--resume --run-dir R]
    spikessm eval RUN_DIR_OR_CHECKPOINT     test accuracy, firing rates and the energy estimate
    spikessm generate listops --out D       the official ListOps generator (LRA sizes by default)
    spikessm generate pathfinder --out D    Pathfinder images in the LRA layout (--resolution 128: Path-X)
    spikessm export RUN_DIR OUT             the run's model as OUT/config.json + OUT/model.safetensors
    spikessm export-nir RUN_DIR [--out D]   what NIR can express of the run's model, D/*.nir + D/nir_report.json
    spikessm check                          the ops against float64 references on this machine, with timings
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
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


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: the problem and where help is, no usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


DEBUG_ENV = "SPIKESSM_DEBUG"
INTERNAL_ERROR = 70  # EX_SOFTWARE (sysexits.h): an internal software error


def add_debug(parser, default=False) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help=f"show the traceback of an error (also: {DEBUG_ENV}=1)")


# Options that define a run: None means "not given" (the task preset's value, or the stored run's on --resume).
RUN_OPTIONS = (("epochs", int), ("batch-size", int), ("lr", float), ("ssm-lr", float), ("weight-decay", float),
               ("warmup-steps", int), ("grad-clip", float), ("seed", int), ("log-every", int),
               ("limit-train", int))
RUN_HELP = {"grad-clip": "max gradient norm, 0: off (default 1)", "seed": "default 0",
            "log-every": "steps between metric records (default 20)",
            "limit-train": "train on a seeded random subset of N training examples"}


def add_train_parser(commands) -> None:
    from .data.conventions import CONVENTIONS
    from .losses import WEIGHTINGS
    from .models import PRESETS
    from .training import TASKS

    p = commands.add_parser("train", help="train a model on a task (no arguments: the embedded tiny ListOps)",
                            description="Train a model on a task. With --resume, the run directory supplies every "
                                        "setting: options that define the run may be left out, and any that "
                                        "contradict it are refused.")
    p.add_argument("--task", choices=sorted(TASKS), help="default: tiny-listops")
    p.add_argument("--model", choices=sorted(PRESETS), help="default: gsu-s4d")
    p.add_argument("--data-dir", help="folder of the task's files: generated ones, or the original release (LRA, "
                                      "IDX, CIFAR-10 batches, aclImdb, SHD, N-MNIST); stored absolute in the run")
    p.add_argument("--source", help="Hub dataset id or save_to_disk folder (Text, Image, sMNIST, psMNIST, sCIFAR)")
    p.add_argument("--data-conventions", choices=CONVENTIONS,
                   help="whose rules turn the files into inputs: s4 (state-spaces/s4's dataloaders, the papers' "
                        "numbers; the default) or spikessm-0.1 (docs/data.md); recorded in the run")
    p.add_argument("--run-dir", help="where checkpoints and metrics go (default runs/<task>-<model>-<time>)")
    for name, kind in RUN_OPTIONS:
        p.add_argument(f"--{name}", type=kind, metavar="N" if kind is int else "X",
                       help=RUN_HELP.get(name, "default: the task preset's"))
    p.add_argument("--no-amp", dest="amp", action="store_const", const=False, help="no bfloat16 autocast on CUDA")
    p.add_argument("--per-step-loss", type=float, metavar="W",
                   help="weight in [0, 1] of a loss on the answer after every step, so that early answers improve "
                        "(causal models; default 0: off)")
    p.add_argument("--per-step-weighting", choices=WEIGHTINGS,
                   help="how the per-step loss weighs the steps (default linear)")
    p.add_argument("--skip-nonfinite", action="store_const", const=True,
                   help="skip a step whose loss or gradient is not finite (default: stop the run with an error)")
    p.add_argument("--set", dest="settings", type=parse_setting, action="append", default=[], metavar="KEY=VALUE",
                   help="override a model setting (a ModelConfig field), e.g. --set d_model=256")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else cpu), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for the math, recorded in the run (float sums depend on the count). Default: a "
                        "resumed run's own count, else PyTorch's default (the physical cores), whatever the load. "
                        "On a busy machine pass --threads 1: threads waiting for busy cores make each step slower")
    p.add_argument("--checkpoint-every", type=int, metavar="STEPS", help="also write last.pt every STEPS steps")
    p.add_argument("--checkpoint-minutes", type=float, default=10.0, metavar="M",
                   help="write last.pt at least every M minutes of training (default 10); every epoch end and "
                        "SIGINT/SIGTERM write one too")
    p.add_argument("--max-steps", type=int, metavar="N",
                   help="stop after step N (counted over the whole run) with a checkpoint, then evaluate; the "
                        "schedule still spans --epochs, so --resume continues the run")
    p.add_argument("--time-budget", type=float, metavar="MINUTES",
                   help="stop after MINUTES of this invocation with a checkpoint, then evaluate")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log losses, accuracy, learning rate, firing rates and energy to RUN_DIR/tensorboard/ "
                        '(pip install "spikessm[tensorboard]")')
    add_debug(p, default=argparse.SUPPRESS)


def run_train(args, callbacks=()) -> int:
    from .training import RunConfig, train
    from .training.errors import SettingError

    # Run options: only those given (on --resume the others come from the run); the rest is this invocation's.
    given = {name.replace("-", "_"): getattr(args, name.replace("-", "_")) for name, _ in RUN_OPTIONS}
    given.update(task=args.task, model=args.model, data_dir=args.data_dir, source=args.source,
                 data_conventions=args.data_conventions, amp=args.amp,
                 skip_nonfinite=args.skip_nonfinite, per_step_loss=args.per_step_loss,
                 per_step_weighting=args.per_step_weighting, threads=args.threads)
    given = {k: v for k, v in given.items() if v is not None}
    if args.settings:
        given["model_overrides"] = dict(args.settings)
    invocation = dict(device=args.device, checkpoint_every=args.checkpoint_every,
                      checkpoint_minutes=args.checkpoint_minutes, max_steps=args.max_steps,
                      time_budget=args.time_budget, tensorboard=args.tensorboard)
    if args.resume:
        if not args.run_dir:
            raise SettingError("--resume needs --run-dir, the run to continue")
        config = RunConfig.resume(args.run_dir, run_options=given, invocation=invocation)
    else:
        config = RunConfig(run_dir=args.run_dir, **given, **invocation)
    train(config, resume=args.resume, callbacks=callbacks)
    return 0


def checkpoint_path(given: str) -> Path:
    """A run directory's best.pt (else its last.pt), or the checkpoint file given."""
    path = Path(given)
    if path.is_dir():
        return path / "best.pt" if (path / "best.pt").exists() or not (path / "last.pt").exists() else path / "last.pt"
    return path


def run_eval(args, callbacks=()) -> int:
    if args.integer is not None:
        from .quant.cli import run_integer_eval

        return run_integer_eval(args)
    from . import atomic
    from .data.conventions import LEGACY_CONVENTIONS
    from .plots import plot_anytime
    from .training.checkpoint import load_model
    from .training.config import pick_device
    from .training.evaluation import majority_baseline, report_test_split
    from .training.tasks import data_location, get_task, load_task

    path = checkpoint_path(args.checkpoint)
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be an integer >= 1, got {args.batch_size}")
    fractions = None
    if args.per_step is not None:
        from .anytime import DEFAULT_FRACTIONS, check_fractions

        try:
            fractions = check_fractions([float(f) for f in args.per_step.split(",")] if args.per_step else
                                        DEFAULT_FRACTIONS)
        except ValueError as error:
            raise ValueError(f"--per-step: {error}") from None
    device = pick_device(args.device)
    model, checkpoint = load_model(path, device)
    settings, step = checkpoint["config"], checkpoint.get("position", {}).get("step")
    if fractions is not None:
        from .anytime import check_streamable

        check_streamable(model, f"--per-step ({path})")
    task = get_task(settings["task"])
    if args.data_dir is not None or args.source is not None:
        data_dir, source = data_location(task, args.data_dir, args.source)
    else:
        data_dir, source = settings["data_dir"], settings["source"]
    # A checkpoint of a run from before runs recorded their input conventions was trained on spikessm 0.1's.
    conventions = settings.get("data_conventions", LEGACY_CONVENTIONS if task.conventions else None)
    data = load_task(task, data_dir, source, conventions)
    print(f"{settings['task']} / {settings['model']}: {path} (step {step})")
    report = report_test_split(model, data, batch_size=args.batch_size or settings["batch_size"], device=device,
                               amp=not args.no_amp, fractions=fractions)
    print(report.table)
    print(report.summary() + f" ({path.name}, step {step})")
    if report.anytime is not None:
        print(report.anytime.table())
        # The plot first: if it cannot be written, the anytime.json of an earlier evaluation still matches its plot.
        written = [path.parent / "anytime.png", path.parent / "anytime.json"]
        plot_anytime(report.anytime, written[0], majority_accuracy=majority_baseline(data)[1],
                     title=f"{settings['task']} / {settings['model']}, test split ({path.name}, step {step})")
        atomic.write_json(written[1], {**report.anytime.to_dict(), "checkpoint": path.name, "checkpoint_step": step})
        print("wrote " + ", ".join(str(p) for p in written))
    return 0


def run_export(args) -> int:
    """A run's best checkpoint (else last.pt) as a Hugging Face style model folder, written whole or not at all."""
    from . import atomic
    from .training.checkpoint import load_model

    path = checkpoint_path(args.run)
    out = Path(args.out).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"export: {out} already exists; choose a new folder")
    model, checkpoint = load_model(path, "cpu")
    settings, step = checkpoint["config"], checkpoint.get("position", {}).get("step")
    results = path.parent / "results.json"
    scored = json.loads(results.read_text()) if results.is_file() else {}
    if (scored.get("checkpoint"), scored.get("checkpoint_step")) != (path.name, step):
        scored = {}  # results of other weights say nothing about these
    with atomic.new_folder(out) as tmp:
        model.save_pretrained(tmp)
        accuracy = (f"test accuracy {scored['test_accuracy']:.4f} on {scored['test_examples']} examples (majority "
                    f"class {scored['majority_accuracy']:.4f})" if scored else "not evaluated at this step")
        card = (f"# spikessm {settings['model']} for {settings['task']}\n\n"
                f"A `{settings['model']}` SequenceClassifier trained with spikessm on the task `{settings['task']}` "
                f"({path.name}, step {step}); {accuracy}.\n\n```python\nfrom spikessm.models import "
                f"SequenceClassifier\nmodel = SequenceClassifier.from_pretrained(\"{out.name}\")\n```\n")
        (tmp / "README.md").write_text(card)
    print(f"wrote {out / 'config.json'}, {out / 'model.safetensors'}, {out / 'README.md'} ({path}, step {step})")
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


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def wants_traceback(args) -> bool:
    return args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def run_export_nir(args) -> int:
    """What NIR can express of a run's best checkpoint (else last.pt): one folder, written whole or not at all."""
    from . import atomic
    from .nir import REPORT_NAME, import_nir, write_nir
    from .training.checkpoint import load_model

    import_nir()  # a missing or too old nir package is the first thing to say
    path = checkpoint_path(args.run)
    out = Path(args.out).expanduser().resolve() if args.out else (path.parent / "nir").resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"export-nir: {out} already exists; choose a new folder")
    model, checkpoint = load_model(path, "cpu")
    step = checkpoint.get("position", {}).get("step")
    with atomic.new_folder(out) as tmp:
        export = write_nir(model, tmp, args.dt)
    layers = export.report["layers"]
    refused = [layer["name"] for layer in layers if "not_written" in layer]
    files = ", ".join(str(out / g["file"]) for g in export.report["graphs"].values())
    print(f"wrote {files + ', ' if files else ''}{out / REPORT_NAME} ({path}, step {step}); "
          f"{len(layers) - len(refused)} of {len(layers)} layers written; not written (why: {REPORT_NAME}): "
          f"{', '.join(refused) or 'none'}")
    return 0


def main(argv: list[str] | None = None, *, callbacks=()) -> int:
    """Runs one command; returns its exit code (errors raise SystemExit). callbacks: extra training callbacks
    (spikessm.training.Callback) for `train`, for programs that embed the command line and for tests."""
    parser = Parser(prog="spikessm", description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                    formatter_class=argparse.RawTextHelpFormatter)
    add_debug(parser)
    commands = parser.add_subparsers(dest="command")
    add_train_parser(commands)
    ev = commands.add_parser("eval", help="evaluate a checkpoint on its task's test split (from any directory)")
    ev.add_argument("checkpoint", help="a run directory (its best.pt, else last.pt) or a checkpoint file")
    ev.add_argument("--data-dir", help="default: the run's (stored absolute)")
    ev.add_argument("--source", help="default: the run's")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--batch-size", type=int)
    ev.add_argument("--no-amp", action="store_true")
    ev.add_argument("--per-step", nargs="?", const="", metavar="FRACTIONS",
                    help="also the accuracy as more of each sequence is seen (causal models), at these fractions of "
                         "its length (comma-separated; default 0.1,0.2,...,1) and at every step: anytime.json and "
                         "anytime.png beside the checkpoint")
    ev.add_argument("--integer", nargs="?", const="", metavar="DIR",
                    help="score the test split through the integer simulator of `spikessm quantize`'s output "
                         "(default RUN/quantized)")
    add_debug(ev, default=argparse.SUPPRESS)
    qz = commands.add_parser("quantize", help="PTQ (and optionally QAT) of a run's best model: accuracies, the "
                                              "integer export and report.json")
    qz.add_argument("run", help="a run directory (its best.pt, else last.pt) or a checkpoint file")
    qz.add_argument("--weight-bits", type=int, default=8)
    qz.add_argument("--state-bits", type=int, default=24, help="the S4D state and the LIF membrane")
    qz.add_argument("--coef-bits", type=int, default=16, help="A_bar, B_bar, C and the LIF decay")
    qz.add_argument("--qat-epochs", type=int, default=0)
    qz.add_argument("--qat-lr", type=float, default=1e-3)
    qz.add_argument("--calib-batches", type=int, default=8)
    qz.add_argument("--out", help="default RUN/quantized, with --sweep RUN/quant_sweep (it must not exist)")
    qz.add_argument("--sweep", action="store_true",
                    help="PTQ test accuracy against weight bits and against state bits: quant_sweep.png and "
                         "sweep.json, no export (around --weight-bits, --state-bits, --coef-bits)")
    qz.add_argument("--sweep-weight-bits", metavar="BITS", help="the weight widths of --sweep (default 2,3,4,5,6,8)")
    qz.add_argument("--sweep-state-bits", metavar="BITS", help="the state widths of --sweep (default 8,12,16,20,24)")
    qz.add_argument("--limit-test", type=int, metavar="N",
                    help="--sweep scores a seeded random subset of N test examples (default: all)")
    add_debug(qz, default=argparse.SUPPRESS)
    add_generate_parser(commands)
    ex = commands.add_parser("export", help="save a run's best model as config.json + model.safetensors (the "
                                            "Hugging Face layout, for SequenceClassifier.from_pretrained)")
    ex.add_argument("run", help="a run directory (its best.pt, else last.pt) or a checkpoint file")
    ex.add_argument("out", help="the folder to create (it must not exist, or be empty)")
    nx = commands.add_parser("export-nir", help="write what NIR can express of a run's best model as .nir graphs, "
                                                "with nir_report.json saying per layer what was written and why the "
                                                "rest is not (needs: pip install spikessm[nir])")
    nx.add_argument("run", help="a run directory (its best.pt, else last.pt) or a checkpoint file")
    nx.add_argument("--out", help="the folder to create (default RUN/nir; it must not exist, or be empty)")
    nx.add_argument("--dt", type=float, default=1e-4,
                    help="the NIR time of one sequence step, which the neurons' time constants are written for "
                         "(default 1e-4, the step snntorch's and spikingjelly's NIR import simulate at)")
    add_debug(nx, default=argparse.SUPPRESS)
    commands.add_parser("check", help="verify the ops on this machine against float64 references and time them")
    args = parser.parse_args(argv)
    run = {"train": run_train, "eval": run_eval, "generate": run_generate, "export": run_export,
           "check": run_check, "quantize": run_quantize, "export-nir": run_export_nir}.get(args.command)
    if run is None:
        parser.print_help()
        return 0
    from .training.errors import Interrupted, RunError

    try:
        return run(args, callbacks) if args.command == "train" else run(args)
    except Interrupted as stop:
        print(f"spikessm {args.command}: {stop}", file=sys.stderr)
        raise SystemExit(128 + stop.signum) from None
    except KeyboardInterrupt:  # a second Ctrl-C during training, or one outside it
        if wants_traceback(args):
            raise
        print(f"spikessm {args.command}: interrupted (Ctrl-C)", file=sys.stderr)
        raise SystemExit(128 + 2) from None
    except (ValueError, OSError, ImportError, RunError) as error:  # what a user's input or machine can cause
        if wants_traceback(args):
            raise
        raise SystemExit(f"spikessm {args.command}: error: {one_line(error)}") from None
    except Exception as error:  # anything else is a bug: its traceback is what a report needs
        traceback.print_exc()
        print(f"spikessm {args.command}: internal error ({type(error).__name__}: {one_line(error)}). This is a bug "
              "in spikessm or in a library it calls, not a problem with your input or settings; please report it "
              "with the command you ran and the traceback above.", file=sys.stderr)
        raise SystemExit(INTERNAL_ERROR) from None


def run_quantize(args) -> int:
    if args.sweep or any(v is not None for v in (args.sweep_weight_bits, args.sweep_state_bits, args.limit_test)):
        from .quant.sweep import run_sweep  # refuses sweep grids without --sweep

        return run_sweep(args)
    from .quant.cli import run_quantize

    return run_quantize(args)


def run_check(args) -> int:
    from .selfcheck import run_check

    return 0 if run_check() else 1


if __name__ == "__main__":
    sys.exit(main())
