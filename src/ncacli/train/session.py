"""A training run: its config (new, or read back from a run directory), its task, trainer and run directory,
and how it keeps its work. ``nca train`` and :func:`ncacli.api.train` both open one; the verb adds the
progress bar, Ctrl-C and the final JSON line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ncacli.errors import NcaError, UsageError


@dataclass
class Saver:
    """How a run keeps its work: at checkpoints, at the end, and which files it has kept so far."""

    checkpoint: Callable[[Any], Path]
    final: Callable[[Any], None]
    kept: Callable[[], list[Path]]
    done: str
    resume_hint: str
    outputs: dict[str, str] = field(default_factory=dict)  # what the run's summary names: its files


@dataclass
class Session:
    config: Any
    task: Any
    run_dir: Any
    trainer: Any
    saver: Saver
    engine: str | None
    notes: list[str] = field(default_factory=list)
    untrained: list[str] = field(default_factory=list)  # networks of the objective on random weights
    world: Any = None

    @property
    def writes(self) -> bool:
        """Whether this process writes and prints (rank 0 under torchrun, always without)."""
        return self.world is None or self.world.is_main

    def last_loss(self) -> float | None:
        path = self.run_dir.metrics_path
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        return json.loads(lines[-1])["loss"] if lines else None

    def summary(self) -> dict[str, Any]:
        """What ``nca train`` prints last, as JSON."""
        out: dict[str, Any] = {"run_dir": str(self.run_dir.path), **self.saver.outputs}
        out.update(iterations=self.trainer.iteration, loss=self.last_loss())
        if self.task.writes_model:
            out.update(device=str(self.trainer.device), engine=self.engine)
        if self.untrained:
            out["random_weights"] = self.untrained
        return out


def resumed_config(path: Path, overrides: dict[str, Any]):
    """The config of the run in ``path``, with ``overrides`` (``iters``, ``device``) applied."""
    from ncacli import config as cfgmod

    if not (path / "config.toml").exists():
        raise NcaError(f"{path}: not a run directory (no config.toml)")
    config = cfgmod.read_run_config(path)
    config = cfgmod.apply(config, {k: v for k, v in overrides.items() if v is not None}, "option")
    from ncacli.registry import TASKS

    if not TASKS.get(config.task_name(), "task").writes_model:
        raise NcaError(f"{path}: a {config.task_name()} run writes no model and cannot be resumed; start it again")
    return config


def random_weights(config: Any) -> list[str]:
    """The networks of the objectives that run on untrained weights (each objective's ``untrained``, which
    refuses them outside the test suite)."""
    from ncacli.config import loss_names
    from ncacli.registry import OBJECTIVES

    out: list[str] = []
    for name in loss_names(config.loss):
        untrained = getattr(OBJECTIVES.get(name, "loss"), "untrained", None)
        if untrained is not None:
            out += untrained(config.objective(name))
    return out


def open_session(
    config: Any,
    out: Path | None = None,
    resume: Path | None = None,
    engine: str = "auto",
    world: Any = None,
    notes: list[str] | None = None,
    quiet: bool = True,
) -> Session:
    """Build the task, the trainer and the run directory: a new one at ``out`` (default ``runs/<time>-…``),
    or ``resume``'s, with the trainer restored from its resume file."""
    from ncacli import config as cfgmod
    from ncacli.choices import device, use_engine
    from ncacli.registry import TASKS
    from ncacli.train import distributed
    from ncacli.train.loop import Trainer
    from ncacli.train.run_dir import RESUME, DistributedRunDir, RunDir, default_run_dir

    task_class = TASKS.get(config.task_name(), "task")
    first_stage = getattr(task_class, "first_stage", False)  # trains something before the NCA (before_training)
    # a run stopped in its first stage has no resume file yet: it starts its NCA afresh in the same directory
    in_first_stage = resume is not None and first_stage and not (Path(resume) / RESUME).exists()
    if resume is not None and not in_first_stage:
        run_dir = RunDir(resume)
        tensors, meta = run_dir.load_resume()
        distributed.check_resume(meta, world, str(resume))
        task = task_class.from_resume(config, tensors, "cpu")
    else:
        if in_first_stage and not (Path(resume) / "config.toml").exists():
            raise NcaError(f"{resume}: not a run directory (no config.toml)")
        task = task_class.from_config(config, "cpu")
        where = resume if in_first_stage else out if out is not None else default_run_dir(config, task.describe())
        run_dir, resume = RunDir(where), None
        if first_stage:
            if world is not None:
                raise UsageError(f"--task {config.task_name()} trains its first stage in one process (no torchrun)")
            if not in_first_stage:
                run_dir.create(config)
            task.before_training(run_dir.path, quiet)
    untrained = random_weights(config)  # refused here outside the tests
    notes = list(notes or [])
    notes += [f"{net}: random weights (a test of the pipeline; the model learns nothing real)" for net in untrained]
    if not task.writes_model:
        if world is not None:
            raise UsageError(f"--task {config.task_name()} trains in one process: run it without torchrun")
        trainer = task.trainer(config, device(config.device))
        run_dir.create(config)
        return Session(config, task, run_dir, trainer, task.saver(config, run_dir), None, notes, untrained)
    dev = device(config.device)
    if world is not None:  # torchrun: join the process group; rank 0 alone writes and prints
        dev = world.init(dev)
        run_dir = DistributedRunDir(run_dir.path, world)
    trainer = task.to(dev).trainer(config, dev, world) or Trainer(config, task, dev, world)
    chosen = use_engine(trainer.model, engine)
    if resume is not None:
        from ncacli.io.files import atomic_write_bytes

        trainer.load_state_tensors(tensors, meta)
        run_dir.truncate_metrics(trainer.iteration)
        cfgmod.validate(config)
        if world is None or world.is_main:
            atomic_write_bytes(run_dir.path / "config.toml", config.to_toml().encode())
    elif not first_stage:
        run_dir.create(config)
    provenance = {"preset": config.preset, "seed": config.seed, "device": str(trainer.device), **task.provenance()}
    saver = Saver(
        checkpoint=lambda tr: run_dir.save_checkpoint(tr, provenance),
        final=lambda tr: run_dir.save_final(tr, provenance),
        kept=run_dir.checkpoints,
        done=f"model: {run_dir.model_path}\npreview: {run_dir.preview_path}",
        resume_hint=f"continue with `{distributed.train_command(world)} --resume {run_dir.path}`",
        outputs={"model": str(run_dir.model_path), "preview": str(run_dir.preview_path)},
    )
    return Session(config, task, run_dir, trainer, saver, chosen, notes, untrained, world)


def train_run(config: Any, out: Path, quiet: bool = True, engine: str = "auto", log: tuple = ()) -> dict[str, Any]:
    """Train ``config`` into the new run directory ``out`` without a progress bar (``nca train`` adds one, and
    Ctrl-C handling, resume and torchrun), reporting to the trackers ``log`` names → the summary ``nca train``
    prints."""
    from ncacli.train.loop import run
    from ncacli.train.tracking import Trackers, check_loggers

    names = check_loggers(list(log))
    session = open_session(config, Path(out), engine=engine, quiet=quiet)
    trackers = Trackers(names, session.run_dir.path, config, session.trainer.iteration)

    def on_record(record) -> None:
        session.run_dir.append_metrics(record)
        trackers.record(record)

    def on_checkpoint(trainer) -> None:
        trackers.picture(trainer.iteration, session.saver.checkpoint(trainer).with_suffix(".png"))

    try:
        run(session.trainer, on_record, on_checkpoint)
        session.saver.final(session.trainer)
        trackers.picture(session.trainer.iteration, session.run_dir.preview_path)
    finally:
        trackers.finish()
    return session.summary()
