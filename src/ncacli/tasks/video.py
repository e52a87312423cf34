"""Video transition (the NCAtorch review §3.4, Figures 15–16): predict the next frame of a MovingMNIST video.

The state holds ``k`` consecutive grey frames in its first ``k`` channels (the review's ``C_v = k``; it does not
give ``k``, here 4 by default), the hidden channels start at zero, and every cell lives (no alive masking). The
NCA runs ``steps_min``–``steps_max`` steps and its ``k`` visible channels should then hold the next ``k``
frames (the window shifted by one); the loss is their MSE. Batches come from a pool whose states carry on
from earlier iterations: the model's own predictions, hidden channels and all, are the next starts, their
targets the window shifted once more, so the model learns transitions it can chain (autoregressive
prediction, which ``nca evaluate --frames N`` measures). Each sample's label is its (sequence, first frame).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from ncacli.engine import SamplePool
from ncacli.errors import UsageError
from ncacli.spec import ModelSpec, TaskSpec
from ncacli.tasks.base import FLAGS, Asked, Batch, DatasetTask


@dataclass(frozen=True)
class Options:
    data: str = "moving-digits"  # moving-digits (generated), moving-mnist (torchvision), or a folder of .npy videos
    data_root: str = ""  # where torchvision keeps MovingMNIST ("" = $NCA_DATA or ~/.cache/torch/datasets)
    k: int = 4  # frames the state holds in its first channels: the input window, and shifted by one the target
    videos: int = 1000  # moving-digits: sequences generated (training and held-out together)
    length: int = 30  # moving-digits: frames per sequence
    digits: int = 2  # moving-digits: digits per sequence
    digit_size: int = 0  # moving-digits: a digit's side in cells (0: 7/16 of the frame, MovingMNIST's 28 of 64)
    digit_source: str = "digits"  # moving-digits: scikit-learn's 8×8 digits (bundled) or mnist (torchvision's)
    test_fraction: float = 0.1  # the share of sequences held out for nca evaluate
    split_seed: int = 0  # the sequences generated and the split
    fresh: int = 2  # samples per batch started from the true frames of a random training window


class VideoPool(SamplePool):
    """The pool of a video model: ``labels`` ``(N, 2)`` are each state's (sequence, first frame it holds). A state
    written back is the prediction of the window one frame on."""

    def commit(self, idx: torch.Tensor, states: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        assert labels is not None
        super().commit(idx, states, labels + torch.tensor([0, 1], device=labels.device))


class VideoTask(DatasetTask):
    name = "video"
    summary = "predict the next frames of a video (MovingMNIST transition)"
    perturbations = ("none",)
    Options = Options
    on_device = ("videos",)

    @classmethod
    def reads_data(cls, data: str) -> bool:
        """moving-digits or moving-mnist (a folder of .npy videos: with --task video)."""
        from ncacli.io.video_data import SOURCES

        return data in SOURCES

    def __init__(self, spec: ModelSpec, tensors: dict[str, torch.Tensor] | None = None, device: Any = "cpu") -> None:
        super().__init__(spec, tensors, device)
        self.options = Options(**spec.task.options.get("settings", {}))
        self.k = len(spec.task.channels.get("frames", [])) or self.options.k
        self.grid = tuple(spec.task.grid)  # self.data: Videos

    @staticmethod
    def check_config(config: Any) -> None:
        from ncacli.io.video_data import DIGIT_SOURCES

        o = Options(**config.task_options)
        if not 1 <= o.k < config.channels:
            raise UsageError(f"task.k ({o.k}) must be at least 1 and below channels ({config.channels})")
        DatasetTask.check_split_and_pool(config, o.test_fraction)
        if not 0 <= o.fresh <= config.batch:
            raise UsageError(f"task.fresh ({o.fresh}) must be between 0 and batch ({config.batch})")
        if config.condition_channels:
            raise UsageError("a video model reads no condition: drop condition_channels")
        if o.data == "moving-digits":
            side = o.digit_size or round(config.size * 7 / 16)
            if not 0 < side < config.size:
                raise UsageError(f"task.digit_size ({side}) must be below size ({config.size}): digits move")
            if o.length < o.k + 2 or o.digits < 1 or o.videos < 2:
                raise UsageError(
                    f"moving-digits needs length ≥ k + 2 ({o.k + 2}), digits ≥ 1 and videos ≥ 2, not length "
                    f"{o.length}, digits {o.digits}, videos {o.videos}"
                )
            if o.digit_source not in DIGIT_SOURCES:
                raise UsageError(f"task.digit_source must be one of {', '.join(DIGIT_SOURCES)}")

    # -- data ----------------------------------------------------------------------------------------------

    @classmethod
    def read(cls, options: Options, settings: dict[str, Any]):
        from ncacli.io.video_data import load_videos

        o = options
        return load_videos(o.data, settings["size"], o.test_fraction, o.split_seed, o.data_root, o.videos, o.length,
                           o.digits, o.digit_size, o.digit_source)  # fmt: skip

    @classmethod
    def from_config(cls, config: Any, device: Any) -> VideoTask:
        from ncacli.errors import NcaError

        o = Options(**config.task_options)
        data = cls.read(o, {"size": config.size, "padding": config.padding})
        if data.length < o.k + 2:
            raise NcaError(f"{data.source}: sequences of {data.length} frames; k = {o.k} needs at least {o.k + 2}")
        model = replace(config.model_config(), alive_masking=False)  # every cell lives
        spec = ModelSpec(
            model,
            TaskSpec(
                name=cls.name,
                grid=list(data.grid),
                seed_kind="zeros",
                seed_positions=[],
                background="black",
                classes=[],
                channels={"frames": list(range(o.k)), "hidden": list(range(o.k, config.channels))},
                options={
                    "settings": {**config.task_options},
                    "size": config.size,
                    "steps": [config.steps_min, config.steps_max],
                    "source": data.source,
                    "length": data.length,
                    "train": len(data.train),
                    "test": len(data.test),
                },
            ),
        )
        return cls.with_data(spec, data, device)

    def describe(self) -> str:
        return f"{self.options.data} ({self.k} frames)"

    def provenance(self) -> dict[str, Any]:
        d = self.load_data()
        return {"target": self.describe(), "data": d.source, "train_sequences": len(d.train),
                "test_sequences": len(d.test), "frames": d.length}  # fmt: skip

    def transition_steps(self) -> int:
        """Steps per predicted frame outside training: the middle of the trained ``steps_min``–``steps_max``."""
        low, high = self.spec.task.options.get("steps", [64, 96])
        return (int(low) + int(high) + 1) // 2

    # -- states --------------------------------------------------------------------------------------------

    def states(self, video: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """States ``(B, C, H, W)`` holding frames ``start … start + k − 1`` of sequences ``video``, hidden zero."""
        frames = self.load_data().window(video, start, self.k)
        hidden = frames.new_zeros(len(video), self.spec.model.channels - self.k, *frames.shape[2:])
        return torch.cat([frames, hidden], 1).contiguous(memory_format=torch.channels_last)

    def random_windows(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` windows of random training sequences whose next window exists → ``(states, labels (n, 2))``."""
        d = self.load_data()
        train = d.train.to(self.device)
        video = train[torch.randint(len(train), (n,), generator=generator, device=self.device)]
        start = torch.randint(d.length - self.k, (n,), generator=generator, device=self.device)
        return self.states(video, start), torch.stack([video, start], 1)

    def seeds(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.random_windows(n, generator)[0]

    def start(self, n: int, grid: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        """The first ``k`` frames of the first ``n`` held-out sequences (cycled; resized to ``grid`` if another)."""
        test = self.test_index()
        video = test[torch.arange(n, device=self.device) % len(test)]
        x = self.states(video, torch.zeros_like(video))
        if tuple(grid) != tuple(x.shape[2:]):
            x = F.interpolate(x, size=tuple(grid), mode="bilinear", align_corners=False)
        return x

    # -- training ------------------------------------------------------------------------------------------

    def make_pool(self, trainer: Any) -> VideoPool:
        states, labels = self.random_windows(trainer.shard.pool_size, trainer.generator)
        return VideoPool(states, len(states), labels)

    def batch(self, trainer: Any) -> Batch:
        """Pooled states (predictions carried on), ``fresh`` of them and those whose next target would run past
        their sequence's end replaced by true windows of random training sequences."""
        g, n, pool = trainer.generator, trainer.shard.batch, trainer.pool
        idx, x = pool.sample(n, g)
        labels = pool.labels[idx].clone()
        redo = labels[:, 1] + self.k >= self.load_data().length
        redo[: min(self.options.fresh, n)] = True
        if redo.any():
            states, new = self.random_windows(int(redo.sum()), g)
            x[redo], labels[redo] = states, new
        return Batch(idx, x, labels)

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """MSE of the ``k`` visible channels to the window one frame on → ``(B,)``."""
        assert labels is not None
        target = self.load_data().window(labels[:, 0], labels[:, 1] + 1, self.k)
        return ((x[:, : self.k] - target) ** 2).mean((1, 2, 3))

    def predict(self, nca: Any, states: torch.Tensor, count: int, generator: Any, steps: int | None = None):
        """Autoregressive prediction: ``count`` transitions of ``steps`` steps each from ``states``, each started
        from the state the last one reached (as the pool trains it) → ``(frames (B, count, H, W) in [0, 1],
        the last state)``. A transition's predicted frame is the newest the state holds, channel ``k − 1``."""
        steps = steps or self.transition_steps()
        out, x = [], states
        with torch.no_grad():
            for _ in range(count):
                x = nca.rollout(x, steps, generator)
                out.append(x[:, self.k - 1].clamp(0.0, 1.0))
        return torch.stack(out, 1), x

    def preview(self, trainer: Any) -> bytes:
        """Four held-out sequences: the true frames after the input window (top of each pair), then the
        model's autoregressive predictions of them (below)."""
        from ncacli.io.images import png_bytes

        d, test = self.load_data(), self.test_index()[:4]
        count = min(8, d.length - self.k)
        g = torch.Generator(device=self.device).manual_seed(0)
        predicted, _ = self.predict(trainer.model, self.states(test, torch.zeros_like(test)), count, g)
        truth = d.window(test, torch.full_like(test, self.k), count)
        rows = torch.stack([truth, predicted], 1).flatten(0, 1)  # (2·4, count, H, W)
        grid = torch.cat([torch.cat(list(r), dim=1) for r in rows], dim=0)  # (8H, count·W)
        return png_bytes(_grey(grid, 3))

    # -- showing -------------------------------------------------------------------------------------------

    def picture(self, states: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """The newest frame a state holds (channel ``k − 1``), white on black: RGB ``(B, 3, H, W)``."""
        return states[:, self.k - 1 : self.k].clamp(0.0, 1.0).expand(-1, 3, -1, -1)

    def frame(self, states: torch.Tensor, condition: torch.Tensor | None, scale: int):
        """The first sample's newest frame, ``scale`` pixels per cell: ``(H·scale, W·scale, 3)`` uint8."""
        return _grey(states[0, self.k - 1], scale)

    def sequence_of(self, text: str) -> int:
        """A held-out sequence named by the user, ``#N`` or ``N`` → its place N in the test split."""
        count = len(self.test_index())
        digits = text[1:] if text.startswith("#") else text
        if not digits.isdigit() or int(digits) >= count:
            raise UsageError(f"--input {text}: a video model's inputs are its held-out sequences #0 … #{count - 1}")
        return int(digits)

    def comparison_frames(self, model: Any, sequence: int, count: int | None, scale: int, seed: int = 0) -> list:
        """A video of held-out sequence ``sequence`` (its place in the test split): each frame the truth beside
        the prediction, from the last input frame through ``count`` predicted ones (default up to 20), with a
        caption → ``count + 1`` frames ``(H', W', 3)`` uint8 (``nca render --frames``)."""
        d, test = self.load_data(), self.test_index()
        most = d.length - self.k
        count = min(20, most) if count is None else count
        if not 1 <= count <= most:
            raise UsageError(
                f"--frames {count}: the held-out sequences have {d.length} frames; after the {self.k} the state "
                f"starts from, 1 to {most} can be predicted"
            )
        video = test[sequence : sequence + 1]
        g = torch.Generator(device=self.device).manual_seed(seed)
        predicted, _ = self.predict(model.nca, self.states(video, torch.zeros_like(video)), count, g)
        truth = d.window(video, torch.zeros_like(video), self.k + count)[0, self.k - 1 :]  # (count + 1, H, W)
        predicted = torch.cat([truth[:1], predicted[0]])
        return [_side_by_side(truth[i], predicted[i], scale, i) for i in range(count + 1)]

    def about(self, sequence: int) -> dict[str, Any]:
        """A held-out sequence for a summary: its place in the test split and in the data set."""
        return {"test": sequence, "index": int(self.test_index()[sequence])}

    not_grown = (
        "a video model predicts frames from a sequence; show it with `nca render MODEL out.gif --frames N`, "
        "measure it with `nca evaluate MODEL --frames N`"
    )

    def video(self, model: Any, asked: Asked, scale: int, seed: int) -> tuple[list, dict[str, Any]]:
        """A held-out sequence (``--input #N``, default the first), its true frames beside the model's
        autoregressive prediction, from the last input frame on (the NCAtorch review, Figure 16b)."""
        given = [*asked.growth, *asked.given(*(n for n in FLAGS if n not in ("input", "frames")))]
        if given:
            raise UsageError(f"{given[0]} is for growing models; a video model's video takes --frames and --input #N")
        index = self.sequence_of(asked.input or "#0")
        shown = self.comparison_frames(model, index, asked.frames, scale, seed)
        return shown, {"frames": len(shown), "predicted": len(shown) - 1, "sequence": self.about(index)}

    # -- evaluating ----------------------------------------------------------------------------------------

    def evaluate(self, model: Any, **options: Any) -> Any:
        from ncacli.tasks.video_evaluation import evaluate_video

        return evaluate_video(model, **options)


def _grey(frame: torch.Tensor, scale: int):
    """A frame ``(H, W)`` in [0, 1] → ``(H·scale, W·scale, 3)`` uint8."""
    import numpy as np

    a = (frame.detach().float().clamp(0, 1) * 255.0 + 0.5).byte().cpu().numpy()
    a = np.repeat(np.repeat(a, scale, axis=0), scale, axis=1)
    return np.stack([a] * 3, axis=-1)


def _side_by_side(truth: torch.Tensor, predicted: torch.Tensor, scale: int, step: int):
    """Truth | prediction with a 2-pixel grey gap, over a caption: ``input`` for the last input frame, then
    ``t+N``."""
    import numpy as np
    from PIL import Image, ImageDraw

    left, right = _grey(truth, scale), _grey(predicted, scale)
    gap = np.full((left.shape[0], 2, 3), 128, dtype=np.uint8)
    top = np.concatenate([left, gap, right], axis=1)
    strip = Image.new("RGB", (top.shape[1], 14), "black")
    draw = ImageDraw.Draw(strip)
    draw.text((2, 1), "truth" if step else "input", fill="white")
    draw.text((left.shape[1] + 4, 1), f"NCA t+{step}" if step else "input", fill="white")
    return np.concatenate([top, np.asarray(strip)], axis=0)
