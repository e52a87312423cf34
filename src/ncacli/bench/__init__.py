"""``nca benchmark``'s machinery: a plain reference NCA, timing and memory probes, and the suites.

Nothing here prints; the verb in :mod:`ncacli.cli.benchmark` shows what :func:`run_benchmark` returns.
"""

from ncacli.bench.reference import NoReference, ReferenceNCA, reference_for
from ncacli.bench.suites import (
    DEFAULT_SIZES,
    SUITES,
    Case,
    Settings,
    cases_for,
    custom_case,
    run_benchmark,
    trained_like,
)

__all__ = [
    "DEFAULT_SIZES",
    "SUITES",
    "Case",
    "NoReference",
    "ReferenceNCA",
    "Settings",
    "cases_for",
    "custom_case",
    "reference_for",
    "run_benchmark",
    "trained_like",
]
