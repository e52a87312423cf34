"""The Python API's tour runs as a user would run it, and does what it prints."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_the_api_tour_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, "examples/api_tour.py", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    grown, damaged, healed = (int(v) for v in lines["alive"].split()[2::2])
    assert damaged < grown and healed > damaged  # the cut erased cells and the pattern grew back
    assert (tmp_path / "healed.png").stat().st_size > 0 and (tmp_path / "run" / "model.safetensors").is_file()
    assert "reloaded task: image" in proc.stdout
