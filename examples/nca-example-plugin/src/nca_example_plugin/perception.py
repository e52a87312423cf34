"""The `moore` perception: identity + the mean of the 8 Moore neighbours (2 features per channel)."""

from ncacli.engine.perception import FixedKernelPerception

IDENTITY = [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
MOORE_MEAN = [[1 / 8, 1 / 8, 1 / 8], [1 / 8, 0.0, 1 / 8], [1 / 8, 1 / 8, 1 / 8]]


class MoorePerception(FixedKernelPerception):
    """Identity + the mean of the 8 neighbours."""

    kernels = [IDENTITY, MOORE_MEAN]
