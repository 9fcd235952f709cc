"""Exception hierarchy.

`UserError` and its subclasses mean bad input: the CLI prints their message as one line on stderr and exits
with code 2. Anything else is a bug and keeps its traceback. `RunFailed` subclasses stop one run; the runner
records them in the run's record and goes on with the others.
"""

from __future__ import annotations


class UqbenchError(Exception):
    """Base class of every error uqbench raises on purpose."""


class UserError(UqbenchError):
    """Bad input from the user (exit code 2)."""


class UnknownName(UserError):
    """A method, task, suite or metric name that is not registered."""


class BadConfig(UserError):
    """A hyperparameter or option with a wrong type or value."""


class Unsupported(UserError):
    """A method asked to handle a task kind it does not support."""


class DataError(UserError):
    """Data that is missing, unreadable or fails its checksum."""


class PluginError(UserError):
    """A third-party plugin that failed to load or failed its checks."""


class RunFailed(UqbenchError):
    """A single run could not finish; it is recorded as failed and the others go on."""


class NonFiniteLoss(RunFailed):
    """The training loss became NaN or infinite."""
