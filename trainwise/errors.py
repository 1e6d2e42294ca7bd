"""The one exception type that reaches the user as a clean message.

Every entry point raises `TrainwiseError` (or a subclass) for bad input; `trainwise.cli.main`
prints its message on one line and exits with `exit_code`, without a traceback.
"""


class TrainwiseError(Exception):
    """A user-facing error: the message names the field/file/value and what was expected."""

    exit_code = 2


class ConfigError(TrainwiseError):
    """A config file, field or override is wrong."""


class DataError(TrainwiseError):
    """A data file or data source is missing or unusable."""


class DeviceError(TrainwiseError):
    """The device cannot run what was asked (a dtype, a backend)."""
