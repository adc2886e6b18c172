"""The errors a training run reports to its user; each message names the setting, file or step at fault.

The command line prints these as one line (spikessm/__main__.py); any other exception is a bug and keeps its
traceback. Checkpoint files have their own, spikessm.training.checkpoint.CheckpointError.
"""
from __future__ import annotations


NO_VALUE = object()


class SettingError(ValueError):
    """A setting cannot be used. `name` is the RunConfig field at fault (None when the message names several or
    none), `problem` what is wrong with it and `value` the value given (NO_VALUE where it does not matter);
    `in_file(path)` says the same of a value read from a run's config.json instead of the command line."""

    def __init__(self, message: str, *, name: str | None = None, problem: str | None = None, value=NO_VALUE):
        super().__init__(message)
        self.name, self.problem, self.value = name, problem, value

    def in_file(self, path) -> "SettingError":
        if self.name is None:
            return SettingError(f"{path}: {self}")
        got = "" if self.value is NO_VALUE else f", got {self.value!r}"
        return SettingError(f"{path}: {self.name} {self.problem}{got}", name=self.name, problem=self.problem,
                            value=self.value)


class RunError(Exception):
    """A run cannot go on or could not keep its results (a non-finite loss, a run directory in use, a final
    checkpoint that could not be written); the message says why and what to do."""


class Interrupted(Exception):
    """The run stopped on SIGINT or SIGTERM after writing its checkpoint; signum says which signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
