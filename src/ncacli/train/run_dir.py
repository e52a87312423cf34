"""A run directory: ``config.toml``, ``metrics.jsonl``, ``checkpoints/``, ``model.safetensors``,
``preview.png`` and ``resume.safetensors`` (everything ``--resume`` needs)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ncacli.config import Config
from ncacli.errors import NcaError
from ncacli.io.files import append_line, atomic_write_bytes, pack, read_input, unpack, write_error
from ncacli.io.model_file import save_model
from ncacli.losses.objective import describe_objectives
from ncacli.train.loop import Record, Trainer

if TYPE_CHECKING:
    from ncacli.train.distributed import World

RESUME = "resume.safetensors"
PREVIEW_STEPS = (96, 200)


def default_run_dir(config: Config, target_desc: str, root: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    words = describe_objectives(config)  # style+clip: "style grass.png, prompt 'a cat'"
    if words:
        name = "-".join("".join(c if c.isalnum() else " " for c in words.lower()).split())[:40] or "run"
    elif config.classes():
        stems = [
            Path(v).stem if kind == "target" else "-".join(f"{ord(c):x}" for c in v) for kind, v in config.classes()
        ]
        name = "+".join(stems)[:60]
    elif config.target:
        name = Path(target_desc).stem
    else:
        name = "emoji-" + "-".join(f"{ord(c):x}" for c in config.emoji)
    path = root / f"{stamp}-{config.preset or config.mode}-{name}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{stamp}-{config.preset or config.mode}-{name}-{n}"
    return path


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def model_path(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def preview_path(self) -> Path:
        return self.path / "preview.png"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def create(self, config: Config) -> None:
        if self.path.exists() and any(self.path.iterdir()):
            raise NcaError(f"{self.path}: run directory exists and is not empty (use --resume to continue it)")
        checkpoints = self.path / "checkpoints"
        try:
            checkpoints.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(checkpoints, exc) from None
        atomic_write_bytes(self.path / "config.toml", config.to_toml().encode())

    def append_metrics(self, record: Record) -> None:
        append_line(self.metrics_path, json.dumps(record.to_dict()))

    def truncate_metrics(self, iteration: int) -> None:
        """Drop metric lines past ``iteration`` (written after the last resume point)."""
        if not self.metrics_path.exists():
            return
        lines = self.metrics_path.read_text(encoding="utf-8").splitlines()
        kept = [ln for ln in lines if ln.strip() and json.loads(ln)["iteration"] <= iteration]
        atomic_write_bytes(self.metrics_path, "".join(ln + "\n" for ln in kept).encode())

    def save_resume(self, trainer: Trainer) -> None:
        tensors, meta = trainer.state_tensors()
        atomic_write_bytes(self.path / RESUME, pack(tensors, meta))

    def load_resume(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        name = str(self.path / RESUME)
        if not Path(name).exists():
            raise NcaError(f"{self.path}: no {RESUME} to resume from (is this a run directory?)")
        return unpack(read_input(name), name)

    def save_checkpoint(self, trainer: Trainer, provenance: dict[str, Any]) -> Path:
        path = self.path / "checkpoints" / f"step-{trainer.iteration:06d}.safetensors"
        self._save_model(trainer, path, provenance)
        atomic_write_bytes(path.with_suffix(".png"), trainer.preview())
        self.save_resume(trainer)
        return path

    def save_final(self, trainer: Trainer, provenance: dict[str, Any]) -> None:
        self._save_model(trainer, self.model_path, provenance)
        atomic_write_bytes(self.preview_path, trainer.preview())
        self.save_resume(trainer)

    @staticmethod
    def _save_model(trainer: Trainer, path: Path, provenance: dict[str, Any]) -> None:
        history = {**provenance, "iterations": trainer.iteration}
        save_model(trainer.model, trainer.spec, path, history, trainer.task.saved_tensors())

    def checkpoints(self) -> list[Path]:
        return sorted((self.path / "checkpoints").glob("step-*.safetensors"))


class DistributedRunDir(RunDir):
    """The run directory of a torchrun run, on every rank: rank 0 writes, the others only join the gathers
    a save needs (of the pool and the generators) and write nothing."""

    def __init__(self, path: Path, world: World) -> None:
        super().__init__(path)
        self.world = world

    def create(self, config: Config) -> None:
        """Rank 0 creates the directory; when it cannot, every rank stops with its error."""
        failure: NcaError | None = None
        if self.world.is_main:
            try:
                super().create(config)
            except NcaError as exc:
                failure = exc
        if self.world.any(failure is not None):
            raise failure or NcaError(f"{self.path}: rank 0 could not create the run directory")

    def append_metrics(self, record: Record) -> None:
        if self.world.is_main:
            super().append_metrics(record)

    def truncate_metrics(self, iteration: int) -> None:
        if self.world.is_main:
            super().truncate_metrics(iteration)

    def save_resume(self, trainer: Trainer) -> None:
        tensors, meta = trainer.state_tensors()  # on every rank: it gathers
        if self.world.is_main:
            atomic_write_bytes(self.path / RESUME, pack(tensors, meta))
        self.world.barrier()  # no rank leaves (and exits) before the file is written

    def save_checkpoint(self, trainer: Trainer, provenance: dict[str, Any]) -> Path:
        if self.world.is_main:
            return super().save_checkpoint(trainer, provenance)
        self.save_resume(trainer)
        return self.path / "checkpoints" / f"step-{trainer.iteration:06d}.safetensors"

    def save_final(self, trainer: Trainer, provenance: dict[str, Any]) -> None:
        if self.world.is_main:
            super().save_final(trainer, provenance)
        else:
            self.save_resume(trainer)
