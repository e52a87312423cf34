"""Write the reference weights that pin the growing presets' training results (tests/test_reference.py).

Each growing preset, shrunk (tests/conftest.py's TINY) and trained 8 iterations on the CPU from seed 1 with the
disc target the tests draw, as ``nca train`` wrote it when the files were made. Run from the repository root:
``python tests/data/make_reference.py``; it also records the CPU that made them (:func:`cpu`).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from conftest import TINY  # noqa: E402

PRESETS = ["growing", "persistent", "regenerating", "conditional"]
ITERS = 8


def disc(path: Path) -> Path:
    yy, xx = np.mgrid[0:16, 0:16]
    r = np.hypot(yy - 7.5, xx - 7.5)
    img = np.zeros((16, 16, 4), np.uint8)
    img[r < 7] = (255, 140, 0, 255)
    img[r < 3] = (30, 60, 220, 255)
    Image.fromarray(img).save(path)
    return path


def train(preset: str, work: Path, target: Path) -> dict[str, torch.Tensor]:
    from ncacli.cli import main

    out = work / preset
    args = ["train", "--preset", preset, "--iters", str(ITERS), "--out", str(out), *TINY]
    if preset == "conditional":
        args += ["--target", str(target), "--target", str(target.with_name("flip.png"))]
    else:
        args += ["--target", str(target)]
    code = main(args)
    assert code == 0, preset
    return load_file(out / "model.safetensors")


def cpu() -> dict[str, str]:
    """What decides the arithmetic on this CPU: torch's dispatch level, and the processor's vendor, family, model
    and instruction-set flags (two CPUs of one dispatch level, AVX-512, were seen to round the same training
    differently by 3e-6: MKL and oneDNN pick kernels by more than the level)."""
    import platform

    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("vendor_id", "cpu family", "model", "flags") and key not in fields:
                fields[key] = " ".join(sorted(value.split())) if key == "flags" else value.strip()
    except OSError:  # not Linux: the machine's name for its processor
        fields["processor"] = platform.processor()
    return {"capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__, **fields}


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        target = disc(work / "disc.png")
        Image.open(target).transpose(Image.Transpose.FLIP_LEFT_RIGHT).rotate(90).save(work / "flip.png")
        for preset in PRESETS:
            save_file(train(preset, work, target), HERE / "reference" / f"{preset}.safetensors")
    info = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__, "iters": ITERS,
            "cpu": cpu()}  # fmt: skip
    (HERE / "reference" / "made-on.json").write_text(json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    main()
