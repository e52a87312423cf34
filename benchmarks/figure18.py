"""The NCAtorch review's Figure 18 for our grow-digits models: four objectives at one budget, how recognisable and
how diverse their digits are, with nine samples a class and their spread for each.

    python benchmarks/figure18.py --train --iters 2000 --out runs/figure18      # the four rows, then measured
    python benchmarks/figure18.py --out DIR mse=runs/a/model.safetensors "l1+critic+cfg=runs/b/model.safetensors"

The rows are the review's Appendix A.5 comparison on the `grow-digits` preset (scikit-learn's 8×8 digits at 24×24
cells): `mse`, `l1`, `critic` (L1 beside a WGAN-GP critic that sees the class, L1 weighed 100 as `translate-wgan`
weighs it) and `cfg` (the critic's, with `task.class_drop=0.1`), the last measured without guidance and at each
`--scales` value. With `--train`, each row is trained into OUT/ROW (resumed where a run stopped). Each is measured
by `nca evaluate MODEL --trials N --json --plot` (an independent classifier trained on the training split, the
spread beside the data's own, healing after a cut). Writes figure18.png (the panels side by side), table.md and
table.json into --out and prints the Markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from perception_table import chosen_rows, nca, percent, row_options, write_table

CRITIC = ["--loss", "l1+wgan-gp", "--loss-weights", "l1=100,wgan-gp=1"]
ROWS = {"mse": [], "l1": ["--loss", "l1"], "critic": CRITIC, "cfg": [*CRITIC, "--set", "task.class_drop=0.1"]}
LABELS = {"mse": "MSE", "l1": "L1", "critic": "L1 + critic", "cfg": "L1 + critic + CFG"}


def train(row: str, run: Path, opts: argparse.Namespace) -> Path:
    """The row's model, trained into ``run`` (or resumed there) unless it is already there."""
    model = run / "model.safetensors"
    if model.exists() and not (run / "resume.safetensors").exists():
        return model
    if (run / "resume.safetensors").exists():
        args = ["train", "--resume", str(run), "--iters", str(opts.iters), "--quiet"]
    else:
        args = ["train", "--preset", "grow-digits", *ROWS[row], "--iters", str(opts.iters), "--seed", str(opts.seed)]
        args += ["--device", opts.device, "--quiet", "--out", str(run)]
        args += [word for item in opts.set for word in ("--set", item)]
    proc = nca(*args)
    if proc.returncode != 0:
        raise SystemExit(f"{row}: training failed: {proc.stderr.strip().splitlines()[-1]}")
    return model


def measured(label: str, model: str, guidance: float | None, opts: argparse.Namespace) -> dict:
    """One row: ``nca evaluate`` of ``model`` (with ``guidance``), its Figure 18 panel into --out."""
    name = label.replace(" ", "").replace("+", "-").replace("=", "").lower()
    panel = opts.out / f"{name}.png"
    args = ["evaluate", model, "--trials", str(opts.trials), "--seed", str(opts.seed), "--device", opts.device]
    args += ["--json", "--plot", str(panel)] + (["--guidance", str(guidance)] if guidance is not None else [])
    proc = nca(*args)
    if proc.returncode != 0:
        raise SystemExit(f"{model}: nca evaluate failed: {proc.stderr.strip().splitlines()[-1]}")
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    info = json.loads(nca("info", model, "--json").stdout)
    keys = ("recognised", "variance", "pairwise_l1", "data_variance", "data_pairwise_l1", "recognised_after_damage",
            "recovery", "guidance")  # fmt: skip
    return {"label": label, "model": model, "panel": str(panel), "iterations": info["provenance"].get("iterations"),
            "classifier": doc["classifier"]["test_accuracy"], **{k: doc[k] for k in keys}}  # fmt: skip


def rows_of(named: list[tuple[str, str, bool]], opts: argparse.Namespace) -> list[dict]:
    """``(label, model, guided)`` → the measured rows: a guided model once without guidance, then at each scale."""
    out = []
    for label, model, guided in named:
        out.append(measured(label, model, None, opts))
        for w in opts.scales if guided else ():
            out.append(measured(f"{label}, w={w:g}", model, w, opts))
        print(f"{model}: measured", file=sys.stderr, flush=True)
    return out


def figure(rows: list[dict], path: Path) -> None:
    """The rows' panels side by side, each titled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, axes = plt.subplots(1, len(rows), figsize=(2.6 * len(rows), 3.4), dpi=150, squeeze=False)
    for ax, r in zip(axes[0], rows, strict=True):
        with Image.open(r["panel"]) as im:
            ax.imshow(im.convert("RGB"), interpolation="nearest")
        ax.set_title(f"{r['label']}\n{r['recognised']:.0%} recognised", fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(rows: list[dict], opts: argparse.Namespace) -> str:
    lines = [
        f"{opts.trials} samples a class; recognised by a CNN trained on the training split "
        f"({rows[0]['classifier']:.1%} on the held-out images); variance and pairwise L1 of the samples' brightness, "
        f"the held-out digits' own: {rows[0]['data_variance']:.4f} and {rows[0]['data_pairwise_l1']:.4f}.",
        "",
        "| objective | recognised | variance | pairwise L1 | recognised after a cut | recovery % | iterations |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['recognised']:.1%} | {r['variance']:.4f} | {r['pairwise_l1']:.4f} "
            f"| {r['recognised_after_damage']:.1%} | {percent(r['recovery'])} | {r['iterations'] or 0:,} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="LABEL=MODEL (a label containing 'cfg' is also measured guided)")
    row_options(parser, list(ROWS), 2000, "runs/figure18")
    parser.add_argument("--scales", default="1.5,2", help="guidance scales the guided model is measured at")
    parser.add_argument("--trials", type=int, default=16, help="samples a class")
    opts = parser.parse_args(argv)
    opts.scales = [float(s) for s in opts.scales.split(",") if s.strip()]
    named = []
    for item in opts.models:
        label, sep, model = item.partition("=")
        if not sep:
            parser.error(f"{item}: give LABEL=MODEL")
        named.append((label, model, "cfg" in label.lower()))
    if opts.train:
        for r in chosen_rows(parser, opts, list(ROWS)):
            named.append((LABELS[r], str(train(r, opts.out / r, opts)), r == "cfg"))
    if not named:
        parser.error("name models to measure, or --train")
    opts.out.mkdir(parents=True, exist_ok=True)
    rows = rows_of(named, opts)
    figure(rows, opts.out / "figure18.png")
    write_table(opts.out, markdown(rows, opts), {"trials": opts.trials, "rows": rows})


if __name__ == "__main__":
    main()
