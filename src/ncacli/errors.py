"""Errors a user can cause: each carries one line that names the problem."""


class NcaError(Exception):
    """A problem with the user's input or environment; shown as one line, exit code 1."""

    exit_code = 1


class UsageError(NcaError):
    """A bad option value or config key; exit code 2."""

    exit_code = 2
