"""The raw-pixel baseline of nca-clip as a task: the picture's pixels optimised directly under the objective.

No NCA and no model file: the run writes ``pixels.png`` (see :mod:`ncacli.train.pixels`).
"""

from __future__ import annotations

from typing import Any

from ncacli.tasks.image import ImageTask


class PixelsTask(ImageTask):
    name = "pixels"
    spelled_model = ("pixels",)  # 0.1.0's run directories said model = "pixels"
    summary = "optimise the picture's pixels directly (nca-clip's baseline; no NCA, writes pixels.png)"
    perturbations = ()
    capabilities = frozenset()
    writes_model = False
    real_samples = False  # its trainer keeps no resume file a critic could live in

    def trainer(self, config: Any, device: Any, world: Any = None) -> Any:
        from ncacli.errors import NcaError
        from ncacli.train.pixels import PixelTrainer

        if world is not None:
            raise NcaError("--task pixels trains in one process: run it without torchrun")
        return PixelTrainer(config, self.target, device)

    def saver(self, config: Any, run_dir: Any) -> Any:
        from ncacli.train.pixels import pixel_saver

        return pixel_saver(config, run_dir)
