"""RunConfig: one training run, as one frozen and checked value.

    config = RunConfig(task="listops", model="lif-s4d", data_dir="lra_release", model_overrides={"d_model": 256})
    config.save()                              # run_dir/config.json
    config = RunConfig.load("runs/a")          # the run as it was started
    config = RunConfig.resume("runs/a", run_options={...}, invocation={"max_steps": 100})

A RunConfig is checked once, when it is made (by the constructor, `load` or `resume`): every field, the data
location and the device, so that nothing is written for a run that cannot start. What needs the data (a batch
larger than the training set, the model's own checks of its settings) is checked when the trainer reads them,
still before the run directory exists. A bad value raises SettingError naming the command-line option, or, for
a value read from a run's config.json, the file and the field.

Fields are of two kinds:
- RUN_FIELDS define what a run computes (task, model, data, optimiser, schedule, seed, threads, ...). They go to
  run_dir/config.json when the run starts and never change; a resume that contradicts them is refused.
- INVOCATION_FIELDS say how one invocation runs (where, on which device, checkpoint cadence, budgets); they may
  differ from one resume to the next, and threads may be changed on resume too.
None in epochs, batch_size, lr, ssm_lr, weight_decay and warmup_steps takes the task preset's value; None in
threads takes `default_threads()`, in run_dir runs/<task>-<model>-<time>.

The model: `model_fields()` is every ModelConfig field except the task's sizes (which come from the data):
ModelConfig's defaults, then the model preset's, then the task preset's model settings, then `model_overrides`
(the command line's --set). config.json stores it whole as "model_config", and `load` reads it back as the
overrides, so a resumed run builds exactly the model it started with whatever the presets of a later spikessm.
"""
from __future__ import annotations

import difflib
import json
import math
import os
import time
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path

import torch

from .. import atomic
from ..documents import read_document
from .errors import SettingError
from ..data.conventions import LEGACY_CONVENTIONS
from .tasks import TASKS, data_location, resolve_conventions

RUN_FORMAT = "spikessm-run"
RUN_VERSION = 2
CONFIG_NAME = "config.json"
# Settings that define what a run computes; a resume must not change them (threads excepted, see resume).
RUN_FIELDS = ("task", "model", "data_dir", "source", "data_conventions", "epochs", "batch_size", "lr", "ssm_lr",
              "weight_decay", "warmup_steps", "grad_clip", "seed", "amp", "log_every", "limit_train", "skip_nonfinite",
              "per_step_loss", "per_step_weighting", "threads")
INVOCATION_FIELDS = ("run_dir", "device", "checkpoint_every", "checkpoint_minutes", "max_steps", "time_budget",
                     "tensorboard")
# The run settings a resume may change: how the math is threaded is the user's call on each machine.
RESUMABLE_CHANGES = ("threads",)
# Model settings that come from the task's data, never from the user.
TASK_SIZES = ("n_classes", "vocab_size", "d_input", "pair")
PRESET_FIELDS = ("epochs", "batch_size", "lr", "ssm_lr", "weight_decay", "warmup_steps")


def option(name: str) -> str:
    """The command-line option of a RunConfig field."""
    return "--" + name.replace("_", "-")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bad(name: str, problem: str, value) -> SettingError:
    return SettingError(f"{option(name)} {problem}, got {value!r}", name=name, problem=problem, value=value)


def _int(name: str, value, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not _is_int(value) or value < minimum:
        raise _bad(name, f"must be an integer >= {minimum}", value)


def _number(name: str, value, *, positive: bool, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not _is_number(value) or not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise _bad(name, f"must be a finite number {'> 0' if positive else '>= 0'}", value)


def _bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise _bad(name, "must be true or false", value)


# --- the model's settings ---------------------------------------------------------------------------------------


def model_field_kinds() -> dict[str, tuple[type, ...]]:
    """ModelConfig's fields and the types each accepts (from its annotations), task sizes included."""
    from ..models import ModelConfig

    hints = typing.get_type_hints(ModelConfig)
    out = {}
    for f in fields(ModelConfig):
        hint = hints[f.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        out[f.name] = typing.get_args(hint) if union else (hint,)
    return out


def _kind_problem(value, kinds: tuple[type, ...]) -> str | None:
    """Why `value` (as JSON gives it) does not fit a field of these types, or None."""
    if value is None:
        return None if type(None) in kinds else "takes a value, not null"
    if bool in kinds:
        return None if isinstance(value, bool) else "takes true or false"
    if int in kinds and _is_int(value):
        return None
    if float in kinds and _is_number(value):
        return None if math.isfinite(value) else "takes a finite number"
    if str in kinds and isinstance(value, str):
        return None
    wanted = [w for k, w in ((int, "an integer"), (float, "a number"), (str, "a name")) if k in kinds]
    return "takes " + " or ".join(wanted)


def check_model_overrides(overrides) -> dict:
    """The --set overrides, checked by name and type against ModelConfig's fields; integers given for float fields
    become floats. Their values are ModelConfig's to check, when the model is built."""
    if not isinstance(overrides, Mapping):
        raise SettingError(f"model settings must be a mapping of ModelConfig fields, got {type(overrides).__name__}")
    kinds = model_field_kinds()
    out = {}
    for name, value in overrides.items():
        if name in TASK_SIZES:
            raise SettingError(f"--set {name}: {name} comes from the task's data and cannot be set",
                               name=f"model_config.{name}", problem="comes from the task's data and cannot be set")
        if name not in kinds:
            close = difflib.get_close_matches(name, list(kinds), n=1)
            settable = sorted(set(kinds) - set(TASK_SIZES))
            hint = f"; did you mean {close[0]!r}?" if close else f"; the settings are {', '.join(settable)}"
            raise SettingError(f"--set {name}: unknown model setting{hint}", name=f"model_config.{name}",
                               problem=f"is not a model setting{hint}")
        problem = _kind_problem(value, kinds[name])
        if problem:
            raise SettingError(f"--set {name}={json.dumps(value)}: {name} {problem}", name=f"model_config.{name}",
                               problem=problem, value=value)
        widen = _is_int(value) and float in kinds[name] and int not in kinds[name]
        out[name] = float(value) if widen else value
    return out


# --- threads and devices ----------------------------------------------------------------------------------------

# PyTorch's own choice (the physical cores, or OMP_NUM_THREADS), before any run changes it in this process.
PYTORCH_THREADS = torch.get_num_threads()


def default_threads() -> int:
    """The CPU thread count of a new run: PyTorch's default (the physical cores, or OMP_NUM_THREADS). Float sums
    depend on the count, so it must not depend on how busy the machine happens to be: the same command gives the
    same numbers on the same machine, and the run records its count for its resumes (on a machine with another
    core count, --threads N reproduces a run). Under contention, pass --threads 1: threads that wait for busy
    cores make every step several times slower."""
    return PYTORCH_THREADS


def available_devices() -> list[str]:
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def pick_device(name: str) -> torch.device:
    """The torch.device for a --device value ("auto": CUDA where present, else the CPU); SettingError naming
    the devices this machine has when it has no such device."""
    if not isinstance(name, str):
        raise _bad("device", "must be a device name such as cpu or cuda:0", name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    here = ", ".join(available_devices())
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise SettingError(f"--device: unknown device {name!r}; the devices here are: {here}") from None
    if device.type == "cpu" and device.index in (None, 0):
        return device
    if device.type == "cuda" and torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count():
        return device
    if device.type == "mps" and "mps" in here:
        return device
    raise SettingError(f"--device: no device {name!r} on this machine; the devices here are: {here}")


# --- the run ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    """What `spikessm train` runs (see the module docstring).

    task, model: a task preset (spikessm.training.TASKS) and a model preset (spikessm.models.PRESETS).
    model_overrides: ModelConfig fields set over the presets' (--set).
    data_dir, source: where the task's data are (folders stored absolute; source is a Hub id or folder).
    data_conventions: whose rules turn the files into inputs (spikessm.data.conventions: "s4", the default for
        the tasks s4 loads, or "spikessm-0.1"); None for tasks without a choice (event streams).
    epochs, batch_size, lr, ssm_lr, weight_decay, warmup_steps, grad_clip: the optimiser and its schedule (AdamW,
        warm-up then cosine over `epochs`; SSM parameters at ssm_lr without weight decay; grad_clip 0: off).
    seed: every random choice of the run (initialisation, batches, dropout). amp: bfloat16 autocast on CUDA.
    log_every: steps between step records (and spike counts) in metrics.jsonl.
    limit_train: train on a seeded subset of that many examples. skip_nonfinite: skip a step whose loss or
        gradient is not finite instead of stopping the run.
    per_step_loss: > 0 trains on spikessm.losses.streaming_loss with that weight (causal models), so that the
        answers before a sequence's end improve too; per_step_weighting weighs its steps (losses.WEIGHTINGS).
    threads: CPU threads for the math (float sums depend on the count, so a run keeps its own).
    run_dir: the run directory (absolute). device: "auto", "cpu", "cuda", "cuda:N", "mps".
    checkpoint_every (steps) and checkpoint_minutes (wall time): how often last.pt is written within an epoch
        (whichever comes first; every epoch end writes one too). max_steps and time_budget (minutes) stop the
        run early at a checkpoint, then evaluate. tensorboard: also log to run_dir/tensorboard/.
    """

    task: str = "tiny-listops"
    model: str = "gsu-s4d"
    model_overrides: Mapping = field(default_factory=dict)
    data_dir: str | None = None
    source: str | None = None
    data_conventions: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    ssm_lr: float | None = None
    weight_decay: float | None = None
    warmup_steps: int | None = None
    grad_clip: float = 1.0
    seed: int = 0
    amp: bool = True
    log_every: int = 20
    limit_train: int | None = None
    skip_nonfinite: bool = False
    per_step_loss: float = 0.0
    per_step_weighting: str = "linear"
    threads: int | None = None
    run_dir: str | None = None
    device: str = "auto"
    checkpoint_every: int | None = None
    checkpoint_minutes: float = 10.0
    max_steps: int | None = None
    time_budget: float | None = None
    tensorboard: bool = False

    def __post_init__(self):
        from ..losses import WEIGHTINGS
        from ..models import PRESETS

        def resolve(name, value):
            object.__setattr__(self, name, value)

        if self.task not in TASKS:
            raise SettingError(f"--task: unknown task {self.task!r}; the tasks are {', '.join(sorted(TASKS))}",
                               name="task", problem=f"is not a task ({', '.join(sorted(TASKS))})",
                               value=self.task)
        if self.model not in PRESETS:
            raise SettingError(f"--model: unknown model preset {self.model!r}; the presets are "
                               f"{', '.join(sorted(PRESETS))}", name="model",
                               problem=f"is not a model preset ({', '.join(sorted(PRESETS))})", value=self.model)
        task = TASKS[self.task]
        for name in PRESET_FIELDS:
            if getattr(self, name) is None:
                resolve(name, getattr(task, name))
        resolve("model_overrides", types.MappingProxyType(check_model_overrides(self.model_overrides)))
        for name in ("epochs", "batch_size", "log_every"):
            _int(name, getattr(self, name), 1)
        _int("warmup_steps", self.warmup_steps, 0)
        _int("limit_train", self.limit_train, 1, optional=True)
        _int("seed", self.seed, 0)
        if self.seed >= 2**63:
            raise _bad("seed", "must be below 2**63", self.seed)
        for name in ("lr", "ssm_lr"):
            _number(name, getattr(self, name), positive=True)
        for name in ("weight_decay", "grad_clip"):
            _number(name, getattr(self, name), positive=False)
        _bool("amp", self.amp)
        _bool("skip_nonfinite", self.skip_nonfinite)
        if not _is_number(self.per_step_loss) or not 0 <= self.per_step_loss <= 1:
            raise _bad("per_step_loss", "must be a number in [0, 1]", self.per_step_loss)
        if self.per_step_weighting not in WEIGHTINGS:
            raise _bad("per_step_weighting", f"must be one of {', '.join(WEIGHTINGS)}", self.per_step_weighting)
        if self.per_step_loss > 0 and self.model_fields()["bidirectional"]:
            raise SettingError("--per-step-loss: per-step answers need a causal model, but this one is "
                               "bidirectional (its answer at step t depends on later inputs); train a causal one, "
                               "e.g. --model lif-s4d or --set bidirectional=False")
        if self.threads is None:
            resolve("threads", default_threads())
        _int("threads", self.threads, 1)
        _int("checkpoint_every", self.checkpoint_every, 1, optional=True)
        _number("checkpoint_minutes", self.checkpoint_minutes, positive=True)
        _int("max_steps", self.max_steps, 1, optional=True)
        _number("time_budget", self.time_budget, positive=True, optional=True)
        _bool("tensorboard", self.tensorboard)
        if self.tensorboard:
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                raise ImportError("--tensorboard needs the tensorboard package: pip install "
                                  '"spikessm[tensorboard]"') from None
        for name in ("data_dir", "source", "run_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise _bad(name, "must be a path", value)
        try:
            data_dir, source = data_location(task, self.data_dir, self.source)
        except ValueError as error:
            raise SettingError(str(error)) from None
        resolve("data_dir", data_dir)
        resolve("source", source)
        try:
            resolve("data_conventions", resolve_conventions(task, self.data_conventions))
        except ValueError as error:
            raise SettingError(f"--data-conventions: {error}", name="data_conventions",
                               problem=f"is not one the task reads ({', '.join(task.conventions) or 'none'})",
                               value=self.data_conventions) from None
        run_dir = self.run_dir or f"runs/{self.task}-{self.model}-{time.strftime('%Y%m%d-%H%M%S')}"
        resolve("run_dir", str(Path(run_dir).expanduser().resolve()))
        device = pick_device(self.device)
        backend = self.model_fields()["backend"]
        if backend == "triton" and device.type != "cuda" and os.environ.get("TRITON_INTERPRET", "0") != "1":
            raise SettingError(f"--set backend=\"triton\": the Triton kernels run on CUDA devices, and this run's "
                               f"device is {device}; use backend=auto (Triton on CUDA, PyTorch elsewhere) or torch")

    # --- what the run is ----------------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The run directory."""
        return Path(self.run_dir)

    def torch_device(self) -> torch.device:
        return pick_device(self.device)

    def model_fields(self) -> dict:
        """Every ModelConfig field of the run's model except the task sizes (see the module docstring)."""
        from ..models import PRESETS, ModelConfig

        defaults = {f.name: f.default for f in fields(ModelConfig) if f.default is not MISSING}
        merged = {**defaults, **PRESETS[self.model], **TASKS[self.task].model, **self.model_overrides}
        return {name: value for name, value in merged.items() if name not in TASK_SIZES}

    def to_dict(self) -> dict:
        """The run's settings as config.json holds them: RUN_FIELDS and the whole model ("model_config")."""
        out = {"format": RUN_FORMAT, "version": RUN_VERSION}
        out.update({name: getattr(self, name) for name in RUN_FIELDS})
        out["model_config"] = self.model_fields()
        return json.loads(json.dumps(out))  # as the file holds them: tuples become lists

    def save(self) -> Path:
        """Writes run_dir/config.json (atomically); returns its path."""
        path = self.path / CONFIG_NAME
        atomic.write_json(path, self.to_dict())
        return path

    # --- reading a run back -------------------------------------------------------------------------------------

    @classmethod
    def load(cls, run_dir: str | os.PathLike, **invocation) -> "RunConfig":
        """The run stored in run_dir/config.json, with this invocation's settings (INVOCATION_FIELDS; run_dir is
        the folder given). SettingError naming the file (and the field) when it is not a readable spikessm run."""
        run_dir = Path(run_dir).expanduser().resolve()
        path = run_dir / CONFIG_NAME
        if not run_dir.is_dir():
            raise SettingError(f"--resume: there is no run directory {run_dir}")
        if not path.is_file():
            raise SettingError(f"--resume: {run_dir} holds no {CONFIG_NAME}, so it is not a spikessm run directory")
        stored = read_document(path, kind_key="format", kind=RUN_FORMAT, version_key="version", version=RUN_VERSION,
                               what=f"a spikessm run's {CONFIG_NAME}", error=SettingError)
        version = stored["version"]
        # Format 1 kept the thread count in last.pt only (such a run takes this machine's default) and read its
        # data by spikessm 0.1's rules.
        added_in_2 = ("threads", "data_conventions")
        required = [name for name in (*RUN_FIELDS, "model_config") if name not in added_in_2 or version >= 2]
        missing = [name for name in required if name not in stored]
        if missing:
            raise SettingError(f"{path} lacks the settings {', '.join(missing)}")
        settings = {name: stored.get(name) for name in RUN_FIELDS}
        if version < 2 and TASKS.get(settings["task"]) is not None and TASKS[settings["task"]].conventions:
            settings["data_conventions"] = LEGACY_CONVENTIONS
        if not isinstance(stored["model_config"], dict):
            raise SettingError(f"{path}: model_config must be a mapping of model settings, got "
                               f"{stored['model_config']!r}")
        unknown = [name for name in invocation if name not in INVOCATION_FIELDS]
        if unknown:
            raise TypeError(f"RunConfig.load: unknown invocation settings {unknown}")
        try:
            return cls(**settings, model_overrides=stored["model_config"],
                       **{**invocation, "run_dir": str(run_dir)})
        except SettingError as error:
            if error.name is None or error.name in INVOCATION_FIELDS:
                raise
            raise error.in_file(path) from None

    @classmethod
    def resume(cls, run_dir: str | os.PathLike, *, run_options: Mapping | None = None,
               invocation: Mapping | None = None) -> "RunConfig":
        """The run in run_dir continued by this invocation: `run_options` are RUN_FIELDS (and model_overrides)
        that the command line gave explicitly, and must agree with the run's, except that threads may change and
        more epochs extend the run (`extends`); `invocation` the INVOCATION_FIELDS of this call. SettingError
        listing every contradiction."""
        run_options = dict(run_options or {})
        changes = {name: run_options.pop(name) for name in RESUMABLE_CHANGES if name in run_options}
        stored = cls.load(run_dir, **dict(invocation or {}))
        epochs = run_options.get("epochs")
        if _is_int(epochs) and epochs > stored.epochs:  # more epochs extend the run (see extends)
            changes["epochs"] = run_options.pop("epochs")
        differences = stored.contradictions(run_options)
        if epochs is not None and "epochs" in run_options and epochs != stored.epochs:
            differences = [d + "; a run can be extended to more epochs, not shortened" if d.startswith("--epochs ")
                           else d for d in differences]
        if differences:
            raise SettingError(f"--resume: the command line contradicts the run in {stored.path / CONFIG_NAME}: "
                               + "; ".join(differences) + "; leave these options out to resume the run as it is")
        return replace(stored, **changes) if changes else stored

    def extends(self, stored: Mapping) -> bool:
        """Whether this config continues the run stored as `stored` (config.json's or a checkpoint's settings)
        with more epochs. The learning rate then follows the warm-up + cosine schedule of the new epoch count
        from the current step on, as if the run had been started with it: the steps already taken keep the rates
        they had, and a finished run, whose rate had decayed to 0, goes on at the new curve's rate for its step."""
        return _is_int(stored.get("epochs")) and self.epochs > stored["epochs"]

    def contradictions(self, given: Mapping) -> list[str]:
        """The settings in `given` (command-line values of RUN_FIELDS and model_overrides) that differ from this
        run's, as "--option value (run: value)" phrases."""
        given = dict(given)
        overrides = check_model_overrides(given.pop("model_overrides", {}))
        unknown = sorted(set(given) - set(RUN_FIELDS))
        if unknown:
            raise TypeError(f"RunConfig.contradictions: unknown run settings {unknown}")
        task = TASKS[given["task"]] if given.get("task") in TASKS else TASKS[self.task]
        if "data_dir" in given or "source" in given:
            try:
                given["data_dir"], given["source"] = data_location(task, given.get("data_dir", self.data_dir),
                                                                   given.get("source", self.source))
            except ValueError as error:
                raise SettingError(str(error)) from None
        out = [f"{option(name)} {given[name]} (run: {getattr(self, name)})" for name in RUN_FIELDS
               if name in given and given[name] != getattr(self, name)]
        model = given.get("model", self.model)
        if model != self.model:  # the given preset's fields, with this run's task and the given --set values
            from ..models import PRESETS, ModelConfig

            defaults = {f.name: f.default for f in fields(ModelConfig) if f.default is not MISSING}
            wanted = {**defaults, **PRESETS[model], **task.model, **overrides}
        else:
            wanted = overrides
        ours = self.model_fields()
        for name, value in wanted.items():
            if name not in TASK_SIZES and ours.get(name) != value:
                out.append(f"--set {name}={json.dumps(value)} (run: {json.dumps(ours.get(name))})")
        return out
