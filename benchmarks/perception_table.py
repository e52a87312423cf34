"""The NCAtorch review's Table 1 for every perception: the same target, preset and budget for each, through `nca`.

    python benchmarks/perception_table.py --iters 300 --size 24 --padding 8 --out runs/perceptions

Each perception is trained with `nca train --preset regenerating --set perception=NAME` and measured
with `nca evaluate` (LPIPS when its weights are present, else MSE): the metric at stages 1–3, recovery
% after a circular cut at step 150, parameters, and training seconds per iteration. With several
``--emoji`` each perception trains a conditional model (``--preset conditional``) and the table adds
the recovery % after a switch of class at step 150 (``nca evaluate --perturb mutation``). A run
directory that already holds a model is evaluated again, not retrained. Prints a Markdown table on
stdout and writes it, with the JSON rows, into --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

PERCEPTIONS = [
    "sobel",
    "sobel_laplacian",
    "sobel5",
    "sobel_diagonal",
    "conv",
    "conv_scaled",
    "combined",
    "attention",
    "deformable",
    "residual",
]


def nca(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ncacli", *args], capture_output=True, text=True)


def train(name: str, run: Path, opts: argparse.Namespace) -> None:
    if (run / "model.safetensors").exists():
        return
    preset = "conditional" if len(opts.emoji) > 1 else "regenerating"
    args = [
        "train",
        *(a for e in opts.emoji for a in ("--emoji", e)),
        "--preset",
        preset,
        "--set",
        f"perception={name}",
    ]
    args += ["--iters", str(opts.iters), "--size", str(opts.size), "--padding", str(opts.padding)]
    args += ["--batch", str(opts.batch), "--seed", str(opts.seed), "--device", opts.device, "--quiet"]
    args += ["--set", f"steps_min={opts.steps[0]}", "--set", f"steps_max={opts.steps[1]}"]
    args += ["--set", f"checkpoint_every={opts.iters}", "--out", str(run)]
    proc = nca(*args)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: training failed: {proc.stderr.strip().splitlines()[-1]}")


def evaluate(run: Path, metric: str, opts: argparse.Namespace, perturb: str = "damage") -> dict | None:
    args = ["evaluate", str(run), "--metric", metric, "--trials", str(opts.trials), "--json", "--device", opts.device]
    args += ["--perturb", perturb]
    proc = nca(*args)
    if proc.returncode != 0:
        if metric == "lpips":
            return None
        raise SystemExit(f"{run}: evaluation failed: {proc.stderr.strip().splitlines()[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def row(name: str, run: Path, opts: argparse.Namespace) -> dict:
    doc = evaluate(run, "lpips", opts) or evaluate(run, "mse", opts)
    metric = next(iter(doc["metrics"]))
    values = doc["metrics"][metric]
    info = json.loads(nca("info", str(run / "model.safetensors"), "--json").stdout)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    mutation = None
    if len(opts.emoji) > 1:
        mutated = evaluate(run, metric, opts, "mutation")
        mutation = mutated["metrics"][metric]["recovery"] if mutated else None
    return {
        "perception": name,
        "metric": metric,
        "stage1": values["stage1"]["mean"],
        "stage2": values["stage2"]["mean"],
        "stage3": values["stage3"]["mean"],
        "recovery": values["recovery"],
        "conditional": len(opts.emoji) > 1,
        "mutation_recovery": mutation,
        "parameters": info["parameters"],
        "receptive_field": (info["perception"] or {}).get("receptive_field"),
        "seconds_per_iteration": records[-1]["seconds"] / len(records),
        "final_loss": records[-1]["loss"],
    }


def row_options(parser: argparse.ArgumentParser, rows: list[str], iters: int, out: str) -> None:
    """The options of a script that trains named rows (``--train --rows --iters --set``) or measures the models
    given, into ``--out``: ``--seed``, ``--device`` and ``--out`` too."""
    parser.add_argument("--train", action="store_true", help="train the rows into --out first")
    parser.add_argument("--rows", default=",".join(rows), help=f"with --train: which of {', '.join(rows)}")
    parser.add_argument("--iters", type=int, default=iters, help=f"with --train: iterations (default {iters:,})")
    parser.add_argument("--set", action="append", default=[], help="with --train: a preset key for nca train (repeat)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path(out))


def chosen_rows(parser: argparse.ArgumentParser, opts: argparse.Namespace, rows: list[str]) -> list[str]:
    """The rows ``--rows`` names, each one of ``rows`` (else the parser's error, exit 2)."""
    chosen = opts.rows.split(",")
    unknown = [r for r in chosen if r not in rows]
    if unknown:
        parser.error(f"--rows: {', '.join(unknown)} not among {', '.join(rows)}")
    return chosen


def write_table(out: Path, table: str, document: dict) -> None:
    """``table.md`` and ``table.json`` into ``out``, and the table on stdout."""
    from ncacli.io.files import atomic_write_bytes

    atomic_write_bytes(out / "table.md", table.encode("utf-8"))
    atomic_write_bytes(out / "table.json", json.dumps(document, indent=2).encode())
    sys.stdout.write(table)


def percent(value: float | None) -> str:
    """none: the perturbation did not make the metric worse; below −100: worse at the end than right after it."""
    return "—" if value is None else "< −100" if value < -100 else f"{value:.1f}"


def markdown(rows: list[dict]) -> str:
    metric = rows[0]["metric"].upper() if rows else ""
    mutation = any(r.get("conditional") for r in rows)
    lines = [
        f"| perception | {metric} stage 1 | stage 2 | stage 3 | damage recovery % "
        + ("| mutation recovery % " if mutation else "")
        + "| parameters | receptive field | s/iteration |",
        "|---|---|---|---|---|" + ("---|" if mutation else "") + "---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['perception']}` | {r['stage1']:.4f} | {r['stage2']:.4f} | {r['stage3']:.4f} "
            f"| {percent(r['recovery'])} "
            + (f"| {percent(r.get('mutation_recovery'))} " if mutation else "")
            + f"| {r['parameters']:,} | {r['receptive_field']} | {r['seconds_per_iteration']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--perceptions", default=",".join(PERCEPTIONS), help="comma-separated names")
    parser.add_argument("--emoji", action="append", help="target emoji (default 🦎); repeat for conditional models")
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--size", type=int, default=24)
    parser.add_argument("--padding", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=lambda s: tuple(int(v) for v in s.split(",")), default=(48, 64))
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("runs/perceptions"))
    opts = parser.parse_args(argv)
    opts.emoji = opts.emoji or ["🦎"]
    rows = []
    for name in opts.perceptions.split(","):
        run = opts.out / name
        train(name, run, opts)
        rows.append(row(name, run, opts))
        print(f"{name}: done", file=sys.stderr, flush=True)
    from ncacli.io.files import atomic_write_bytes

    table = markdown(rows)
    atomic_write_bytes(opts.out / "table.md", table.encode("utf-8"))
    atomic_write_bytes(opts.out / "table.json", json.dumps(rows, indent=2).encode("utf-8"))
    sys.stdout.write(table)


if __name__ == "__main__":
    main()
