"""The redesign changed no result: each growing preset, shrunk and trained 8 iterations from seed 1 on the CPU,
gives the weights the toolkit gave before tasks and model specs (tests/data/make_reference.py wrote them).

Bit for bit on the CPU that made them (tests/data/reference/made-on.json records its dispatch level, vendor,
family, model and flags, and torch's version); on another, float sums round differently (AVX2 against AVX-512,
and two AVX-512 CPUs seen 3e-6 apart), so within 1e-5 relative to each tensor's largest value. Files that record
only the dispatch level cannot tell two CPUs of one level apart, and are held to the tolerance.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

DATA = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(DATA))

import make_reference  # noqa: E402

MADE_ON = json.loads((DATA / "reference" / "made-on.json").read_text())


@pytest.mark.parametrize("preset", make_reference.PRESETS)
def test_training_gives_the_weights_it_gave_before(tmp_path, preset):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the reference files were made
    try:
        target = make_reference.disc(tmp_path / "disc.png")
        Image.open(target).transpose(Image.Transpose.FLIP_LEFT_RIGHT).rotate(90).save(tmp_path / "flip.png")
        got = make_reference.train(preset, tmp_path, target)
    finally:
        torch.set_num_threads(threads)
    ref = load_file(DATA / "reference" / f"{preset}.safetensors")
    assert set(got) == set(ref)
    same_cpu = MADE_ON.get("cpu") == make_reference.cpu()
    for name, want in ref.items():
        if same_cpu:
            assert torch.equal(got[name], want), name
        else:
            scale = want.abs().max().clamp_min(1e-12)
            assert ((got[name] - want).abs().max() / scale) <= 1e-5, name
    assert any(t.abs().sum() > 0 for k, t in ref.items() if "net.2" in k)  # the last layer moved: a real check
