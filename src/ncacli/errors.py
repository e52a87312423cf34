"""Errors a user can cause: each carries one line that names the problem."""

import difflib
import os

# Untrained ("random") VGG16 or LPIPS backbones are a device of the test suite, which sets this to 1.
RANDOM_WEIGHTS_VARIABLE = "NCA_ALLOW_RANDOM_WEIGHTS"


class NcaError(Exception):
    """A problem with the user's input or environment; shown as one line, exit code 1."""

    exit_code = 1


class UsageError(NcaError):
    """A bad option value or config key; exit code 2."""

    exit_code = 2


class WriteError(NcaError):
    """A file could not be written (a full disk, no permission, a writer that failed); the old file, if any,
    is left as it was and no partial file remains."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, or a batch system at its time limit): every verb stops as on Ctrl-C, leaving no partial
    file, and exits 143; ``nca train`` saves its run first, as on Ctrl-C."""

    exit_code = 143


class NonFiniteLoss(Exception):
    """A training loss became NaN or infinite at ``iteration`` (1-based; 0 where the raiser does not know it, the
    trainer fills it in). ``what``: which loss (the NCA's, or an objective's own, like a critic's)."""

    def __init__(self, iteration: int, value: float, what: str = "loss") -> None:
        super().__init__(f"{what} became {value} at iteration {iteration}")
        self.iteration = iteration
        self.value = value
        self.what = what


def did_you_mean(name: str, known) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known``, or ``""``: the one spelling-hint of the toolkit."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_random_weights(option: str, network: str) -> None:
    """Refuse ``option random`` (an untrained ``network``) unless ``NCA_ALLOW_RANDOM_WEIGHTS=1``: a loss or a
    metric through random weights runs, and measures nothing."""
    if os.environ.get(RANDOM_WEIGHTS_VARIABLE) != "1":
        raise UsageError(
            f"{option} random: an untrained {network} measures nothing, it is for the test suite only; "
            f"pass a weights file (or none, for torchvision's cache), "
            f"or set {RANDOM_WEIGHTS_VARIABLE}=1 to test a pipeline"
        )
