"""Stage 1 of a latent run: the autoencoder, trained on the target images in the run directory.

Each batch mixes complete targets, damaged copies (one to three circles erased, as training damage) and partly
grown ones (the target inside a disc around the seed, of random radius), with the empty image now and then: the
NCA's states pass through all of these, and the NCAtorch review trains its VQ-VAE on perturbed and complete images
so that damaged latents decode sensibly. Large pictures are learnt from random windows of ``crop`` pixels (the
network is convolutional: 16× less work per iteration at 512×512 with 128-pixel windows). The loss is the
reconstruction's MSE plus the VQ term.

Files, in the run directory: ``autoencoder.safetensors`` when stage 1 is done (what ``--autoencoder`` reuses),
``autoencoder-resume.safetensors`` every ``CHECKPOINT_EVERY`` iterations and on Ctrl-C (``nca train --resume
DIR`` takes stage 1 up again there), ``autoencoder-metrics.jsonl`` one line per iteration.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ncacli.engine.autoencoder import Autoencoder, AutoencoderConfig
from ncacli.engine.damage import damage_mask, random_circles
from ncacli.errors import NcaError
from ncacli.io.files import append_line, atomic_write_bytes, pack, read_input, unpack

FINAL = "autoencoder.safetensors"
RESUME = "autoencoder-resume.safetensors"
METRICS = "autoencoder-metrics.jsonl"
CHECKPOINT_EVERY = 100
PREFIX = "task.autoencoder."


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) during stage 1; its state is saved at ``iteration``; ``exit_code`` 130 (143)."""

    def __init__(self, iteration: int, path: Path, exit_code: int = 130) -> None:
        super().__init__(f"interrupted at autoencoder iteration {iteration}: saved {path}")
        self.iteration = iteration
        self.path = path
        self.exit_code = exit_code


def augmented(
    targets: torch.Tensor, n: int, generator: torch.Generator, seed_positions: list[list[float]], perturb: bool = True
) -> torch.Tensor:
    """``n`` training pictures ``(n, 4, H, W)`` from ``targets`` ``(K, 4, H, W)``: complete, damaged, partly grown
    (inside a disc around a seed of radius 5–100% of the width) or empty, in proportions 3 : 3 : 3 : 1; complete
    ones alone when not ``perturb``."""
    k, _, h, w = targets.shape
    device = targets.device
    pick = torch.randint(k, (n,), generator=generator, device=device)
    x = targets[pick].clone()
    if not perturb:
        return x
    kind = torch.randint(10, (n,), generator=generator, device=device)
    damaged = (kind >= 3) & (kind < 6)
    if damaged.any():
        holes = torch.zeros(n, 1, h, w, dtype=torch.bool, device=device)
        for _ in range(3):
            more = torch.rand(n, generator=generator, device=device) < 0.5
            holes |= random_circles(n, h, w, generator, device) & more.view(n, 1, 1, 1)
        first = random_circles(n, h, w, generator, device)
        x = torch.where(damaged.view(n, 1, 1, 1), x * ~(holes | first), x)
    grown = (kind >= 6) & (kind < 9)
    if grown.any():
        centre = torch.tensor(seed_positions[0], dtype=torch.float32, device=device).expand(n, 2)
        radius = torch.rand(n, generator=generator, device=device) * 0.95 + 0.05
        disc = damage_mask(h, w, "circle", centre, radius, device=device)
        x = torch.where(grown.view(n, 1, 1, 1), x * disc, x)
    return torch.where((kind == 9).view(n, 1, 1, 1), torch.zeros_like(x), x)


def crops(x: torch.Tensor, side: int, factor: int, generator: torch.Generator) -> torch.Tensor:
    """A random ``side × side`` window of each picture, at a multiple of ``factor`` (the whole picture when it is
    no larger): the autoencoder is convolutional, so it learns from windows what it does on the whole."""
    n, _, h, w = x.shape
    if side <= 0 or (h <= side and w <= side):
        return x
    sh, sw = min(side, h), min(side, w)
    out = []
    for i in range(n):
        top = int(torch.randint((h - sh) // factor + 1, (1,), generator=generator, device=x.device)) * factor
        left = int(torch.randint((w - sw) // factor + 1, (1,), generator=generator, device=x.device)) * factor
        out.append(x[i, :, top : top + sh, left : left + sw])
    return torch.stack(out)


def train_autoencoder(
    targets: torch.Tensor,
    config: AutoencoderConfig,
    run_dir: Path,
    iters: int,
    batch: int,
    lr: float,
    seed: int,
    device: torch.device,
    seed_positions: list[list[float]],
    quiet: bool = True,
    crop: int = 0,
    perturb: bool = True,
) -> Autoencoder:
    """Train (or take up, or load when done) the run's autoencoder → the trained model, frozen."""
    run_dir = Path(run_dir)
    final = run_dir / FINAL
    if final.exists():
        return load_trained(final, config)
    torch.manual_seed(seed)
    model = Autoencoder(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator(device=device).manual_seed(seed + 7)
    start, seconds = 0, 0.0
    resume = run_dir / RESUME
    if resume.exists():
        tensors, meta = unpack(read_input(str(resume)), str(resume))
        model.load_state_dict({k[len(PREFIX) :]: v for k, v in tensors.items() if k.startswith(PREFIX)})
        optimizer.load_state_dict(json_state(meta, tensors, optimizer))
        generator.set_state(tensors["rng"])
        start, seconds = int(meta["iteration"]), float(meta["seconds"])
        _truncate(run_dir / METRICS, start)
    targets = targets.to(device)
    model.train()
    last = time.perf_counter()
    iteration = start
    try:
        for iteration in range(start + 1, iters + 1):
            began = time.perf_counter()
            x = crops(augmented(targets, batch, generator, seed_positions, perturb), crop, config.factor, generator)
            out, vq = model(x)
            reconstruction = F.mse_loss(out, x)
            loss = reconstruction + vq
            value = loss.item()
            if not math.isfinite(value):
                raise NcaError(f"autoencoder loss became {value} at iteration {iteration}; stage 1 stopped")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seconds += time.perf_counter() - began
            line = {"iteration": iteration, "loss": value, "reconstruction": reconstruction.item(),
                    "vq": vq.item(), "seconds": round(seconds, 4)}  # fmt: skip
            append_line(run_dir / METRICS, json.dumps(line))
            if iteration % CHECKPOINT_EVERY == 0 and iteration < iters:
                _save_resume(resume, model, optimizer, generator, iteration, seconds)
            if not quiet and (time.perf_counter() - last > 10 or iteration == iters):
                from ncacli.console import console

                last = time.perf_counter()
                console.print(
                    f"stage 1, autoencoder: iteration {iteration}/{iters}, reconstruction {reconstruction.item():.5f}",
                    highlight=False,
                )
    except KeyboardInterrupt as exc:
        done = iteration - 1
        _save_resume(resume, model, optimizer, generator, done, seconds)
        raise Interrupted(done, resume, getattr(exc, "exit_code", 130)) from None
    model.eval()
    meta = {"autoencoder": json.dumps(config.to_dict()), "iterations": str(iters), "seconds": repr(seconds)}
    atomic_write_bytes(final, pack(model.tensors(PREFIX), meta))
    _save_resume(resume, model, optimizer, generator, iters, seconds)
    return model.requires_grad_(False)


def load_trained(path: Path, config: AutoencoderConfig) -> Autoencoder:
    found, model = read_autoencoder(str(path))
    if found != config:
        raise NcaError(f"{path}: trained with other settings ({found.to_dict()}) than this run's ({config.to_dict()})")
    return model


def json_state(meta: dict[str, str], tensors: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> dict:
    """Adam's state dict back from the resume file: its layout as JSON, its tensors by name."""
    layout = json.loads(meta["optimizer"])
    state = {int(i): {k: tensors[f"optim.{i}.{k}"] for k in keys} for i, keys in layout["state"].items()}
    return {"state": state, "param_groups": layout["param_groups"]}


def _save_resume(path: Path, model, optimizer, generator, iteration: int, seconds: float) -> None:
    tensors = dict(model.tensors(PREFIX))
    sd = optimizer.state_dict()
    layout = {"state": {}, "param_groups": sd["param_groups"]}
    for i, st in sd["state"].items():
        layout["state"][str(i)] = list(st)
        for k, v in st.items():
            tensors[f"optim.{i}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    tensors["rng"] = generator.get_state()
    meta = {"iteration": str(iteration), "seconds": repr(seconds), "optimizer": json.dumps(layout)}
    atomic_write_bytes(path, pack(tensors, meta))


def _truncate(path: Path, iteration: int) -> None:
    if not path.exists():
        return
    kept = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    kept = [ln for ln in kept if json.loads(ln)["iteration"] <= iteration]
    atomic_write_bytes(path, "".join(ln + "\n" for ln in kept).encode())


def read_autoencoder(path: str) -> tuple[AutoencoderConfig, Autoencoder]:
    """A trained autoencoder from ``autoencoder.safetensors`` (stage 1's file) or a latent model file."""
    if not Path(path).is_file():
        raise NcaError(f"{path}: autoencoder file not found (task.autoencoder / --autoencoder)")
    tensors, meta = unpack(read_input(path), path)
    text = meta.get("autoencoder")
    if text is None and "spec" in meta:
        text = json.dumps(json.loads(meta["spec"]).get("task", {}).get("options", {}).get("autoencoder"))
    try:
        config = AutoencoderConfig.from_dict(json.loads(text)) if text and text != "null" else None
    except (ValueError, TypeError) as exc:
        raise NcaError(f"{path}: its autoencoder settings do not read ({exc})") from None
    if config is None:
        raise NcaError(f"{path}: not an autoencoder file (no autoencoder settings; train one with --task latent)")
    try:
        return config, Autoencoder.from_tensors(config, tensors, PREFIX)
    except ValueError as exc:
        raise NcaError(f"{path}: {exc}") from None
