"""Image-to-image translation in an autoencoder's latent space (the NCAtorch review §3.1.4, Figure 9b: Edges-to-
Handbags at 256×256): the translate task's pairs, learnt on the latent grid of the latent task's autoencoder.

Stage 1 trains the autoencoder on the training pairs' targets and on their inputs drawn as pictures (an edge map:
dark lines on white), with the latent task's damaged and partly grown copies (:mod:`ncacli.tasks.autoencoder`),
so one latent space holds both. Stage 2 freezes it: each pair's input is encoded once, and its latent grid sits in
the condition channels, which the update reads and never writes (as the pixel task's input does, 8× smaller each
way); the state is the latent task's (RGBA at the grid's resolution, latent offsets from the empty picture, hidden
channels), grown from one seed cell; the decoded picture is judged against the pair's target by the config's
``loss`` (``mse``, ``l1``, ``wgan-gp``, sums of them; the critic sees the input beside the picture, in pixels), with
the latent task's guide and overflow terms on the state. Damage, the pool and ``nca evaluate`` work as in pixel
space on the decoded picture; the model file carries the autoencoder, so every verb decodes from it alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ncacli.spec import ModelSpec
from ncacli.tasks.latent_space import (
    AutoencoderOptions,
    LatentSpace,
    autoencoder_for,
    check_options,
    latent_channels,
    latent_grid,
)
from ncacli.tasks.translate import Options as PairOptions
from ncacli.tasks.translate import TranslateTask

ENCODE_BATCH = 64  # pairs encoded at once


@dataclass(frozen=True)
class Options(PairOptions, AutoencoderOptions):
    pass


class LatentTranslateTask(LatentSpace, TranslateTask):
    name = "latent-translate"
    summary = "grow the picture an input image stands for, in an autoencoder's latent space (latent translation)"
    capabilities = frozenset()  # the page has no decoder: it refuses, naming .gif / .mp4
    Options = Options
    first_stage = True  # trains its autoencoder before the NCA (open_session calls before_training)
    train_options = ("autoencoder",)

    def __init__(self, spec: ModelSpec, tensors: dict[str, torch.Tensor] | None = None, device: Any = "cpu") -> None:
        super().__init__(spec, tensors, device)
        self.bind_autoencoder(spec)
        self._inputs: torch.Tensor | None = None  # every pair's input, encoded

    @classmethod
    def reads_data(cls, data: str) -> bool:
        return False  # --data edges2emoji and pair folders mean the pixel task; this one is named by --task

    @classmethod
    def check_config(cls, config: Any) -> None:
        super().check_config(config)
        check_options(Options(**config.task_options), config.channels)

    @classmethod
    def from_config(cls, config: Any, device: Any) -> LatentTranslateTask:
        o, ae_config, reused = autoencoder_for(Options(**config.task_options), config.channels)
        data = cls.read(o, {"size": config.size, "padding": config.padding})
        h, w = int(data.inputs.shape[-2]), int(data.inputs.shape[-1])
        grid = latent_grid(h, w, ae_config.factor, "each pair", config.size, config.padding)
        model = replace(config.model_config(), condition_channels=ae_config.latent)
        channels = {**latent_channels(ae_config.latent, model.channels), "input": list(range(ae_config.latent))}
        options = {"settings": asdict(o), "autoencoder": ae_config.to_dict(), "image": [h, w]}
        spec = cls.pairs_spec(config, data, model, grid, channels, options)
        task = cls.with_data(spec, data, device)
        task.config = config
        if reused is not None:
            task.use_autoencoder(reused)
        return task

    def before_training(self, run_dir: Path, quiet: bool) -> None:
        """Stage 1: the autoencoder, on the training pairs' targets and inputs (drawn as pictures)."""
        d = self.load_data()
        train = d.train.to(d.inputs.device)
        pictures = torch.cat([d.targets[train], self.input_rgba(d.inputs[train])])
        self.train_autoencoder(pictures, run_dir, quiet, self.config.seed)

    def describe(self) -> str:
        return f"{self.options.data} (latent image-to-image)"

    def provenance(self) -> dict[str, Any]:
        out = super().provenance()
        out["autoencoder"] = self.options.autoencoder or "trained in the run directory (stage 1)"
        return out

    # -- the input, encoded --------------------------------------------------------------------------------

    def condition(self, labels: torch.Tensor | None) -> torch.Tensor:
        """The latent grid of each pair's input ``(B, latent, h, w)``: every pair encoded once, on first use."""
        assert labels is not None
        if self._inputs is None:
            d = self.load_data()
            with torch.no_grad():
                parts = [
                    self.autoencoder.encode(self.input_rgba(d.inputs[i : i + ENCODE_BATCH].to(self.device)))
                    for i in range(0, len(d.inputs), ENCODE_BATCH)
                ]  # fmt: skip
            self._inputs = torch.cat(parts)
        return self._inputs[labels.to(self._inputs.device)]

    def moved(self) -> None:
        super().moved()
        if getattr(self, "_inputs", None) is not None:
            self._inputs = self._inputs.to(self.device)

    def input_picture(self, condition: torch.Tensor) -> torch.Tensor:
        """The input a condition encodes, as the autoencoder draws it ``(B, 4, H, W)``."""
        return self.autoencoder.decode(condition)

    # -- training ------------------------------------------------------------------------------------------

    def prepare(self, config: Any, generator: torch.Generator) -> None:
        """The objective on the decoded picture (without the regularisers, which read the state itself here)."""
        super().prepare(replace(config, tv_weight=0.0, overflow_weight=0.0), generator)

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Per sample: the objective on the decoded picture against the pair's target, and the state's own terms
        (:meth:`LatentSpace.state_terms`)."""
        from ncacli.losses import Samples

        assert labels is not None
        d = self.load_data()
        target = d.targets[labels]
        judged = self.objectives[0](self.rgba(x), Samples(real=target, condition=d.inputs[labels]))
        self.last = dict(self.objectives[0].last)
        return judged + self.state_terms(x, F.avg_pool2d(target, self.scale))

    def terms(self) -> dict[str, float]:
        return dict(getattr(self, "last", {}))
