"""What a training run is: TrainConfig, its checks, and the settings a run directory stores.

A run is defined by its RUN_FIELDS (task, model, data location, optimiser, schedule, seed, model settings...),
stored in run_dir/config.json when the run starts and never rewritten. The other TrainConfig fields say how this
invocation runs (device, threads, checkpoint cadence, budgets); they may differ from one resume to the next.
Every setting is checked here, before anything is written, and a bad one raises SettingError naming the
command-line option.
"""
from __future__ import annotations

import difflib
import json
import math
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from .tasks import data_location, get_task

RUN_FORMAT = "spikessm-run"
RUN_VERSION = 1
# Settings that define what a run computes; a resume must not change them.
RUN_FIELDS = ("task", "model", "data_dir", "source", "epochs", "batch_size", "lr", "ssm_lr", "weight_decay",
              "warmup_steps", "grad_clip", "seed", "amp", "log_every", "limit_train", "skip_nonfinite",
              "per_step_loss", "per_step_weighting")
# Model settings that come from the task's data, never from the user.
TASK_SIZES = ("n_classes", "vocab_size", "d_input", "pair")


class SettingError(ValueError):
    """A setting the user gave cannot be used; the message names the option and the reason."""


@dataclass
class TrainConfig:
    """What `spikessm train` runs. None in the optimiser fields means the task preset's value.

    checkpoint_every (steps) and checkpoint_minutes (wall time) set how often last.pt is written within an
    epoch (whichever comes first; every epoch end writes one too). max_steps and time_budget (minutes) stop
    the run early at a checkpoint, then evaluate; limit_train trains on a seeded subset of that many examples.
    skip_nonfinite skips steps whose loss or gradient is not finite instead of stopping the run.
    per_step_loss > 0 trains on spikessm.anytime.streaming_loss with that weight (causal models), so that the
    answers before a sequence's end improve too; per_step_weighting weighs its steps (anytime.WEIGHTINGS).
    """

    task: str = "tiny-listops"
    model: str = "gsu-s4d"
    run_dir: str | None = None
    data_dir: str | None = None
    source: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    ssm_lr: float | None = None
    weight_decay: float | None = None
    warmup_steps: int | None = None
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    log_every: int = 20
    model_overrides: dict = field(default_factory=dict)
    threads: int | None = None
    checkpoint_every: int | None = None
    checkpoint_minutes: float = 10.0
    max_steps: int | None = None
    time_budget: float | None = None
    limit_train: int | None = None
    skip_nonfinite: bool = False
    per_step_loss: float = 0.0
    per_step_weighting: str = "linear"

    def resolved(self) -> dict:
        """The run's settings (RUN_FIELDS and model_settings) with the task preset filled in, after checking
        every field; SettingError naming the option otherwise. Folders are absolute."""
        check_invocation(self)
        task = get_task_setting(self.task)
        out = {"format": RUN_FORMAT, "version": RUN_VERSION}
        for name in RUN_FIELDS:
            out[name] = getattr(self, name)
        for name in ("epochs", "batch_size", "lr", "ssm_lr", "weight_decay", "warmup_steps"):
            if out[name] is None:
                out[name] = getattr(task, name)
        check_run_settings(out)
        try:
            out["data_dir"], out["source"] = data_location(task, self.data_dir, self.source)
        except ValueError as error:
            raise SettingError(str(error)) from None
        out["model_settings"] = {**task.model, **check_model_overrides(self.model, self.model_overrides)}
        out["model_config"] = model_config_without_sizes(self.model, out["model_settings"])
        return json.loads(json.dumps(out))  # as config.json will hold them (tuples become lists), for comparisons

    def run_directory(self) -> Path:
        """The run directory, absolute: run_dir, or runs/<task>-<model>-<time> in the working directory."""
        name = self.run_dir or f"runs/{self.task}-{self.model}-{time.strftime('%Y%m%d-%H%M%S')}"
        return Path(name).expanduser().resolve()


def option(name: str) -> str:
    """The command-line option of a TrainConfig field."""
    return "--" + name.replace("_", "-")


def get_task_setting(name: str):
    try:
        return get_task(name)
    except ValueError as error:
        raise SettingError(f"--task: {error}") from None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require_int(name: str, value, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not _is_int(value) or value < minimum:
        raise SettingError(f"{option(name)} must be an integer >= {minimum}, got {value!r}")


def _require_number(name: str, value, *, positive: bool, optional: bool = False) -> None:
    if value is None and optional:
        return
    bound = "> 0" if positive else ">= 0"
    if not _is_number(value) or not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise SettingError(f"{option(name)} must be a finite number {bound}, got {value!r}")


def _require_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise SettingError(f"{name} must be true or false, got {value!r}")


def check_invocation(config: TrainConfig) -> None:
    """The settings of this invocation only (device is checked by pick_device)."""
    _require_int("threads", config.threads, 1, optional=True)
    _require_int("checkpoint_every", config.checkpoint_every, 1, optional=True)
    _require_number("checkpoint_minutes", config.checkpoint_minutes, positive=True)
    _require_int("max_steps", config.max_steps, 1, optional=True)
    _require_number("time_budget", config.time_budget, positive=True, optional=True)
    if not isinstance(config.device, str):
        raise SettingError(f"--device must be a device name such as cpu or cuda:0, got {config.device!r}")


def check_run_settings(settings: dict) -> None:
    """The optimiser, schedule and data settings of a run (task preset values filled in)."""
    from ..models import PRESETS

    get_task_setting(settings["task"])
    if settings["model"] not in PRESETS:
        raise SettingError(f"--model: unknown model preset {settings['model']!r}; the presets are "
                           f"{', '.join(sorted(PRESETS))}")
    _require_int("epochs", settings["epochs"], 1)
    _require_int("batch_size", settings["batch_size"], 1)
    _require_int("warmup_steps", settings["warmup_steps"], 0)
    _require_int("log_every", settings["log_every"], 1)
    _require_int("limit_train", settings["limit_train"], 1, optional=True)
    _require_int("seed", settings["seed"], 0)
    if settings["seed"] >= 2**63:
        raise SettingError(f"--seed must be below 2**63, got {settings['seed']}")
    for name in ("lr", "ssm_lr"):
        _require_number(name, settings[name], positive=True)
    for name in ("weight_decay", "grad_clip"):
        _require_number(name, settings[name], positive=False)
    _require_bool("amp", settings["amp"])
    weight = settings["per_step_loss"]
    if not _is_number(weight) or not 0 <= weight <= 1:
        raise SettingError(f"--per-step-loss must be a number in [0, 1], got {weight!r}")
    from ..anytime import WEIGHTINGS

    if settings["per_step_weighting"] not in WEIGHTINGS:
        raise SettingError(f"--per-step-weighting must be one of {', '.join(WEIGHTINGS)}, got "
                           f"{settings['per_step_weighting']!r}")
    _require_bool("skip_nonfinite", settings["skip_nonfinite"])
    for name in ("data_dir", "source"):
        if settings[name] is not None and not isinstance(settings[name], (str, os.PathLike)):
            raise SettingError(f"{option(name)} must be a path, got {settings[name]!r}")


def _model_fields() -> dict:
    from ..models import ModelConfig

    return {f.name: f for f in fields(ModelConfig)}


def _field_type_error(name: str, annotation: str, value) -> str | None:
    """Why value does not fit the ModelConfig field's annotation (a string such as "float | None"), or None."""
    kinds = {part.strip() for part in str(annotation).split("|")}
    if value is None:
        return None if "None" in kinds else "takes a value, not null"
    if "bool" in kinds:
        return None if isinstance(value, bool) else "takes true or false"
    if "int" in kinds and _is_int(value):
        return None
    if "float" in kinds and _is_number(value):
        return None if math.isfinite(value) else "takes a finite number"
    if "str" in kinds and isinstance(value, str):
        return None
    wanted = [w for k, w in (("int", "an integer"), ("float", "a number"), ("str", "a name")) if k in kinds]
    if not wanted:
        return None  # a type this check does not know: ModelConfig checks it
    return "takes " + " or ".join(wanted)


def check_model_overrides(model: str, overrides: dict) -> dict:
    """The --set overrides, checked against ModelConfig's fields and their types; floats given as integers
    become floats. SettingError naming the setting otherwise."""
    if not isinstance(overrides, dict):
        raise SettingError(f"model settings must be a dict, got {type(overrides).__name__}")
    known = _model_fields()
    out = {}
    for name, value in overrides.items():
        if name in TASK_SIZES:
            raise SettingError(f"--set {name}: {name} comes from the task's data and cannot be set")
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            settable = sorted(set(known) - set(TASK_SIZES))
            hint = f"; did you mean {close[0]!r}?" if close else f"; the settings are {', '.join(settable)}"
            raise SettingError(f"--set {name}: unknown model setting{hint}")
        problem = _field_type_error(name, known[name].type, value)
        if problem:
            raise SettingError(f"--set {name}={json.dumps(value)}: {name} {problem}")
        kinds = {part.strip() for part in str(known[name].type).split("|")}
        out[name] = float(value) if _is_int(value) and "float" in kinds and "int" not in kinds else value
    return out


def model_config_without_sizes(model: str, settings: dict) -> dict:
    """Every ModelConfig field of preset `model` with settings applied, less the task sizes; SettingError from
    ModelConfig's own checks. Stand-in task sizes let the checks run before the data are read."""
    from ..models.presets import preset_config

    try:
        config = preset_config(model, n_classes=2, vocab_size=2, **settings).to_dict()
    except (ValueError, TypeError) as error:
        raise SettingError(f"--set: {error}") from None
    return {k: v for k, v in config.items() if k not in TASK_SIZES}


def read_run_settings(run_dir: Path) -> dict:
    """run_dir/config.json, checked to be a spikessm run's; SettingError naming the file otherwise."""
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise SettingError(f"--resume: there is no run directory {run_dir}")
    if not path.is_file():
        raise SettingError(f"--resume: {run_dir} holds no config.json, so it is not a spikessm run directory")
    try:
        settings = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SettingError(f"{path} cannot be read as JSON ({error})") from None
    if not isinstance(settings, dict) or settings.get("format") != RUN_FORMAT:
        raise SettingError(f"{path} is not a spikessm run's config.json (no \"format\": \"{RUN_FORMAT}\")")
    if settings.get("version", 0) > RUN_VERSION:
        raise SettingError(f"{path} was written by a newer spikessm (run format {settings['version']})")
    missing = [name for name in (*RUN_FIELDS, "model_settings", "model_config") if name not in settings]
    if missing:
        raise SettingError(f"{path} lacks the settings {', '.join(missing)}")
    return settings


def config_from_run(settings: dict, **invocation) -> TrainConfig:
    """The TrainConfig that reproduces a stored run, with this invocation's settings (device, threads, ...)."""
    run = {name: settings[name] for name in RUN_FIELDS}
    return TrainConfig(**run, model_overrides=dict(settings["model_settings"]), **invocation)


def contradictions(stored: dict, given: dict) -> list[str]:
    """The settings in `given` (resolved run settings) that differ from a stored run's, as "--option value
    (run: value)" phrases."""
    out = []
    for name in RUN_FIELDS:
        if given[name] != stored[name]:
            out.append(f"{option(name)} {given[name]} (run: {stored[name]})")
    for name, value in given["model_config"].items():
        if stored["model_config"].get(name) != value:
            out.append(f"--set {name}={json.dumps(value)} (run: {json.dumps(stored['model_config'].get(name))})")
    return out


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

