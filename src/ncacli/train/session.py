"""A training run as a function (``ncacli.api.train``): the task, its trainer, the run directory, the loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def train_run(config: Any, out: Path, quiet: bool = True, engine: str = "auto") -> dict[str, Any]:
    """Train ``config`` into the new run directory ``out``: checkpoints, ``model.safetensors``, preview.

    Without a progress bar (``nca train`` adds one, Ctrl-C handling, resume and torchrun). Returns the summary
    ``nca train`` prints."""
    from ncacli.cli.common import device, use_engine
    from ncacli.registry import TASKS
    from ncacli.train.loop import run
    from ncacli.train.run_dir import RunDir

    dev = device(config.device)
    task = TASKS.get(config.task_name(), "task").from_config(config, dev)
    if config.task_name() == "pixels":
        from ncacli.errors import UsageError

        raise UsageError("the pixels task writes a picture, not a model: run it with `nca train --task pixels`")
    trainer = task.trainer(config, dev)
    engine_run = use_engine(trainer.model, engine)
    run_dir = RunDir(out)
    run_dir.create(config)
    provenance = {"preset": config.preset, "seed": config.seed, "device": str(dev), **task.provenance()}
    losses: list[float] = []

    def on_record(record) -> None:
        run_dir.append_metrics(record)
        losses.append(record.loss)

    run(trainer, on_record, lambda tr: run_dir.save_checkpoint(tr, provenance))
    run_dir.save_final(trainer, provenance)
    return {
        "run_dir": str(run_dir.path),
        "model": str(run_dir.model_path),
        "preview": str(run_dir.preview_path),
        "iterations": trainer.iteration,
        "loss": losses[-1] if losses else None,
        "device": str(dev),
        "engine": engine_run,
    }
