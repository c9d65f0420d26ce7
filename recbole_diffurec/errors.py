"""The package's errors. Each message says what is wrong and how to fix it; the runner prints it
as one line and exits with code 2."""


class UsageError(Exception):
    """A mistake in what the user asked for (a name, a key, a value, a file)."""


class NaNLossError(UsageError):
    """Training diverged; the message names the epoch and what to change."""


class ResumeError(UsageError):
    """A training state that cannot continue this run; the message says why and what to do."""
