"""Experiment tracking: ``nca train --log tensorboard`` and ``--log wandb``, through the libraries themselves.

Each tracker receives every logged iteration (loss, each term, learning rate, steps, seconds), the preview at
every checkpoint and at the end (the target beside the pattern grown for 96 and 200 steps: a growth strip),
the resolved config as hyperparameters, and the final ``nca evaluate`` figures when the run ends with
``--evaluate``. Both libraries are optional extras, imported only when asked for.

- TensorBoard writes event files under ``RUN/tensorboard`` (``tensorboard --logdir runs``). A resumed run
  writes into the same directory and purges what was logged after its resume point, so the curves continue.
- W&B writes under ``RUN/wandb``; the run's id is kept in ``RUN/wandb-id`` and a resumed run continues that
  run. Without a network (or with ``WANDB_MODE=offline``) it runs offline; ``wandb sync RUN/wandb/offline-run-*``
  uploads it later.
"""

from __future__ import annotations

import io
import os
import secrets
import socket
from pathlib import Path
from typing import Any

from ncacli.errors import UsageError

LOGGERS = ("tensorboard", "wandb")
EXTRAS = {"tensorboard": "tensorboard", "wandb": "wandb"}
WANDB_HOST = ("api.wandb.ai", 443)


def check_loggers(names: list[str]) -> list[str]:
    """``--log`` names checked (each once, in order); a missing library is one line naming its extra."""
    from ncacli.errors import did_you_mean

    out: list[str] = []
    for name in names:
        if name not in LOGGERS:
            raise UsageError(f"--log {name!r}: choose {' or '.join(LOGGERS)}{did_you_mean(name, list(LOGGERS))}")
        if name not in out:
            out.append(name)
    for name in out:
        try:
            __import__(EXTRAS[name])
        except ImportError:
            raise UsageError(
                f'--log {name} needs the {name} package: pip install -e ".[{name}]" (or pip install {name})'
            ) from None
    return out


def flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"a.b": value}`` of scalars (lists as text): what hyperparameter tables take."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, name + "."))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        else:
            out[name] = str(value)
    return out


def _picture(png: bytes):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


class TensorBoard:
    def __init__(self, run_dir: Path, config: Any, start: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.path = Path(run_dir) / "tensorboard"
        # a resumed run: events past the resume point (written before an interruption) are dropped
        self.writer = SummaryWriter(str(self.path), purge_step=start + 1 if start else None)
        self.hparams = flat(config.to_dict())
        if not start:
            self.writer.add_text("config", "```toml\n" + config.to_toml() + "\n```", 0)

    def record(self, record: Any) -> None:
        w, step = self.writer, record.iteration
        w.add_scalar("loss", record.loss, step)
        w.add_scalar("lr", record.lr, step)
        w.add_scalar("steps", record.steps, step)
        w.add_scalar("seconds", record.seconds, step)
        for name, value in record.terms.items():
            w.add_scalar(f"terms/{name}", value, step)

    def picture(self, iteration: int, png: bytes) -> None:
        self.writer.add_image("preview", _picture(png), iteration, dataformats="HWC")
        self.writer.flush()

    def finish(self, figures: dict[str, float]) -> None:
        if figures:
            for name, value in figures.items():
                self.writer.add_scalar(f"evaluate/{name}", value, 0)
        self.writer.add_hparams(self.hparams, {f"hparam/{k}": v for k, v in figures.items()} or {"hparam/none": 0.0},
                                run_name=".")  # fmt: skip
        self.writer.close()


def _online() -> bool:
    try:
        with socket.create_connection(WANDB_HOST, timeout=2.0):
            return True
    except OSError:
        return False


class WandB:
    def __init__(self, run_dir: Path, config: Any, start: int) -> None:
        import wandb

        self.wandb = wandb
        run_dir = Path(run_dir)
        id_file = run_dir / "wandb-id"
        run_id = id_file.read_text(encoding="utf-8").strip() if id_file.exists() else secrets.token_hex(4)
        online = os.environ.get("WANDB_API_KEY") and _online()
        mode = os.environ.get("WANDB_MODE") or ("online" if online else "offline")
        (run_dir / "wandb").mkdir(exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "nca"), dir=str(run_dir), id=run_id, resume="allow",
            config=flat(config.to_dict()), mode=mode, name=run_dir.name, settings=wandb.Settings(silent=True),
        )  # fmt: skip
        from ncacli.io.files import atomic_write_bytes

        atomic_write_bytes(id_file, run_id.encode())
        self.mode = mode

    def record(self, record: Any) -> None:
        row = {"loss": record.loss, "lr": record.lr, "steps": record.steps, "seconds": record.seconds}
        row.update({f"terms/{k}": v for k, v in record.terms.items()})
        self.run.log(row, step=record.iteration)

    def picture(self, iteration: int, png: bytes) -> None:
        self.run.log({"preview": self.wandb.Image(_picture(png))}, step=iteration)

    def finish(self, figures: dict[str, float]) -> None:
        self.run.summary.update({f"evaluate/{k}": v for k, v in figures.items()})
        self.run.finish()


class Trackers:
    """The trackers of one run; every call goes to each (none: nothing happens)."""

    def __init__(self, names: list[str], run_dir: Path, config: Any, start: int = 0) -> None:
        made = {"tensorboard": TensorBoard, "wandb": WandB}
        self.all = [made[name](run_dir, config, start) for name in names]

    def record(self, record: Any) -> None:
        for t in self.all:
            t.record(record)

    def picture(self, iteration: int, png_path: Path) -> None:
        if self.all and Path(png_path).is_file():
            png = Path(png_path).read_bytes()
            for t in self.all:
                t.picture(iteration, png)

    def finish(self, figures: dict[str, float] | None = None) -> None:
        for t in self.all:
            t.finish(figures or {})


def headline(document: dict[str, Any]) -> dict[str, float]:
    """The figures of an ``nca evaluate`` document worth a tracker: each metric's stages and recovery (a growing
    model), or the accuracies (a classifier, a video model's per-metric means)."""
    out: dict[str, float] = {}
    for name, m in (document.get("metrics") or {}).items():
        if not isinstance(m, dict):
            continue
        for stage in ("stage1", "stage2", "perturbed", "stage3"):
            value = m.get(stage)
            if isinstance(value, dict) and value.get("mean") is not None:
                out[f"{name}/{stage}"] = float(value["mean"])
            elif isinstance(value, int | float):
                out[f"{name}/{stage}"] = float(value)
        for key in ("recovery", "mean", "baseline"):
            if isinstance(m.get(key), int | float):
                out[f"{name}/{key}"] = float(m[key])
    return out
