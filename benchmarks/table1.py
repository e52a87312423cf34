"""The NCAtorch review's Table 1 beside ours: LPIPS at its three stages and the recovery %, after damage and after a
mutation (a switch of class), for conditional models at the review's sizes (the `table1*` presets).

    python benchmarks/table1.py runs/table1/model.safetensors runs/table1-combined/model.safetensors --out DIR
    python benchmarks/table1.py --train --iters 8000 --device cuda --out runs/table1   # train the rows, then measure
    python benchmarks/table1.py --train --iters 500 --set training.checkpoint_every=100 --out runs/table1-500
    python benchmarks/table1.py runs/table1-unet/model.safetensors runs/table1-pix2pix/model.safetensors --out DIR

The single-step rows are models trained with `nca train --preset table1 --model unet` (or `--model pix2pix`, the
GAN) and `--set architecture_options.width=3` (21,298 parameters; 4 and 5 give 37,500 and 58,256), with
`--set architecture_options.activation=leaky_relu` (at that width the ReLU network stays blank) and, for the GAN,
`--set objectives.gan.mode=lsgan` (the cross-entropy discriminator holds it blank): each is laid beside the
review's U-Net or GAN row of the nearest size, whose stage 1 is "—" (a single pass has no rollout).

Each model is measured with `nca evaluate MODEL --metric lpips,mse --trials N` (a circle of radius 0.2 cut at step
150) and with `--perturb mutation` (each trial switched to another class at step 150); its row of Table 1 is found
from the preset it was trained with (`nca info`), and a model of another preset is laid beside no row. With
`--train`, each row's preset is trained into OUT/PRESET first (resumed where a run stopped, measured again where a
model exists). LPIPS needs AlexNet's weights (torchvision's cache or $NCA_ALEXNET_WEIGHTS); `--metric mse` measures
without them, in a table that then does not compare with the review's. Writes table.md and table.json into --out
and prints the Markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from perception_table import chosen_rows, nca, percent, row_options, write_table

# Table 1 of the review (5 emoji, one conditional model each): LPIPS stages 1 / 2 / 3 and recovery %, after damage
# and after mutation; parameters. Keyed by the preset that builds the row at the review's size.
REVIEW = {
    "table1": ("Sobel", (0.152, 0.124, 0.144, 84.92), (0.151, 0.124, 0.138, 93.64), "8k"),
    "table1-conv3": ("Conv 3x3", (0.065, 0.060, 0.128, 58.74), (0.068, 0.060, 0.070, 95.75), "23k"),
    "table1-conv5": ("Conv 5x5", (0.032, 0.025, 0.042, 89.58), (0.032, 0.025, 0.029, 98.34), "51k"),
    "table1-combined": ("Comb. 3x3+5x5D", (0.003, 0.001, 0.005, 98.32), (0.003, 0.001, 0.003, 99.64), "71k"),
}
# Table 1's single-step rows (no stage 1), by their size: the U-Net (`--model unet`) and the GAN (`--model pix2pix`),
# each laid beside the review's row whose parameter count is the nearest
BASELINES = {
    "U-Net": {
        25_000: ((None, 0.070, 0.064, 100), (None, 0.061, 0.055, 99.26)),
        44_000: ((None, 0.028, 0.026, 100), (None, 0.029, 0.026, 100)),
        69_000: ((None, 0.024, 0.024, 100), (None, 0.022, 0.024, 100)),
    },
    "GAN": {
        25_000: ((None, 0.042, 0.037, 100), (None, 0.042, 0.039, 100)),
        44_000: ((None, 0.018, 0.017, 100), (None, 0.018, 0.018, 100)),
        69_000: ((None, 0.015, 0.015, 100), (None, 0.017, 0.017, 100)),
    },
}
# rows of Table 1 that no preset builds at the review's size here (our modules differ; see docs/evaluation.md)
UNMATCHED = {
    "Deformable 3x3": ((0.040, 0.035, 0.041, 96.17), (0.040, 0.035, 0.039, 98.33), "27k"),
    "Attention 3x3": ((0.009, 0.010, 0.026, 85.78), (0.009, 0.010, 0.012, 95.05), "80k"),
}


def train(preset: str, run: Path, opts: argparse.Namespace) -> Path:
    """The row's model, trained into ``run`` (or resumed there) unless it is already there."""
    model = run / "model.safetensors"
    if model.exists() and not (run / "resume.safetensors").exists():
        return model
    if (run / "resume.safetensors").exists():
        args = ["train", "--resume", str(run), "--quiet"]
    else:
        args = ["train", "--preset", preset, "--iters", str(opts.iters), "--seed", str(opts.seed), "--quiet"]
        args += ["--device", opts.device, "--out", str(run)]
        args += [word for item in opts.set for word in ("--set", item)]
    proc = nca(*args)
    if proc.returncode != 0:
        raise SystemExit(f"{preset}: training failed: {proc.stderr.strip().splitlines()[-1]}")
    return model


def measured(model: str, perturb: str, opts: argparse.Namespace) -> dict:
    args = ["evaluate", model, "--metric", opts.metric, "--trials", str(opts.trials), "--seed", str(opts.seed)]
    proc = nca(*args, "--perturb", perturb, "--device", opts.device, "--json")
    if proc.returncode != 0:
        raise SystemExit(f"{model}: nca evaluate failed: {proc.stderr.strip().splitlines()[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def row(model: str, opts: argparse.Namespace) -> dict:
    info = json.loads(nca("info", model, "--json").stdout)
    preset = info.get("provenance", {}).get("preset")
    out = {"model": model, "preset": preset, "parameters": info["parameters"]}
    out["architecture"] = info["config"].get("architecture", "nca")
    out["loss"] = info.get("provenance", {}).get("loss")
    out["iterations"] = info.get("provenance", {}).get("iterations")
    for perturb in ("damage", "mutation"):
        figures = measured(model, perturb, opts)["metrics"][opts.metric]
        stages = [figures[s]["mean"] for s in ("stage1", "stage2", "stage3")]
        out[perturb] = {"stages": stages, "recovery": figures["recovery"]}
    return out


def _stages(values) -> str:
    return " / ".join("—" if v is None else f"{v:.3f}" for v in values)


def review_row(r: dict) -> tuple[str, tuple | None, tuple | None, str | None]:
    """The review's row for a measured model: by its preset for an NCA; by its kind and nearest size for a
    single-step model (a U-Net, or one trained against a critic: the GAN)."""
    if r.get("architecture", "nca") == "nca":
        return REVIEW.get(r["preset"], (r["preset"] or "?", None, None, None))
    kind = "GAN" if "gan" in (r.get("loss") or "").split("+") else "U-Net"
    size = min(BASELINES[kind], key=lambda n: abs(n - r["parameters"]))
    return kind, *BASELINES[kind][size], f"{size // 1000}k"


def markdown(rows: list[dict], trials: int, metric: str = "lpips") -> str:
    measure = (
        "LPIPS (AlexNet)" if metric == "lpips" else f"{metric.upper()} (not the review's LPIPS: no AlexNet weights)"
    )
    lines = [
        f"{measure} at stages 1 (64–96) / 2 (149) / 3 (449) and recovery %, {trials} trials each; the review's LPIPS "
        "figures in the rows marked *review*.",
        "",
        f"| perception | damage: {metric.upper()} 1 / 2 / 3 | recovery % | mutation: {metric.upper()} 1 / 2 / 3 "
        "| recovery % | parameters | iterations |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name, damage, mutation, size = review_row(r)
        lines.append(
            f"| {name} (`{r['preset']}`) | {_stages(r['damage']['stages'])} | {percent(r['damage']['recovery'])} "
            f"| {_stages(r['mutation']['stages'])} | {percent(r['mutation']['recovery'])} | {r['parameters']:,} "
            f"| {r['iterations'] or 0:,} |"
        )
        if damage is not None:
            lines.append(
                f"| *review* {name} | {_stages(damage[:3])} | {damage[3]} | {_stages(mutation[:3])} | {mutation[3]} "
                f"| {size} | |"
            )
    for name, (damage, mutation, size) in UNMATCHED.items():
        lines.append(
            f"| *review* {name} | {_stages(damage[:3])} | {damage[3]} | {_stages(mutation[:3])} | {mutation[3]} "
            f"| {size} | |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model files (or zoo names) to measure")
    row_options(parser, list(REVIEW), 8000, "runs/table1")
    parser.add_argument("--trials", type=int, default=20, help="trials of each measure (4 of each of the 5 classes)")
    parser.add_argument("--metric", choices=("lpips", "mse"), default="lpips", help="mse: without AlexNet's weights")
    opts = parser.parse_args(argv)
    models = list(opts.models)
    if opts.train:
        models += [str(train(preset, opts.out / preset, opts)) for preset in chosen_rows(parser, opts, list(REVIEW))]
    if not models:
        parser.error("name models to measure, or --train")
    rows = []
    for model in models:
        rows.append(row(model, opts))
        print(f"{model}: measured", file=sys.stderr, flush=True)
    opts.out.mkdir(parents=True, exist_ok=True)
    document = {"metric": opts.metric, "trials": opts.trials, "rows": rows, "review": REVIEW, "baselines": BASELINES}
    write_table(opts.out, markdown(rows, opts.trials, opts.metric), document)


if __name__ == "__main__":
    main()
