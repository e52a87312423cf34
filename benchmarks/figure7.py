"""The NCAtorch review's Figure 7a for our translation models: LPIPS to the ground truth over the rollout on held-out
pairs, one curve per model, with the three stages and the recovery after damage in a table.

    python benchmarks/figure7.py --train --iters 3000 --out runs/figure7              # the six rows, then measured
    python benchmarks/figure7.py --train --rows conv3-mse,conv5-mse --iters 500 --out runs/figure7-500
    python benchmarks/figure7.py runs/e2e-a/model.safetensors runs/e2e-b/model.safetensors --out DIR

The rows are the review's Edges-to-Handbags comparison on edges2emoji (the `translate` preset's 512 Twemoji and
their edges, 48×48): its perceptions at Table 1's sizes (the modules of the `table1-conv3`, `table1-conv5` and
`table1-combined` presets: full convolutions to 80 features, an 80-wide update), each trained with MSE and with
L1 beside a WGAN-GP critic (`--loss l1+wgan-gp`, L1 weighted 100 as the `translate-wgan` preset weighs it).
The review's finding, which the curves test: wider perception wins. With `--train`, each row is trained into
OUT/ROW (resumed where a run stopped). Each model is measured by `nca evaluate MODEL --metric lpips,mse,ssim
--every E --trials N --json` (held-out pairs, a circle cut at step 150). LPIPS needs AlexNet's weights
(torchvision's cache or $NCA_ALEXNET_WEIGHTS); `--metric mse` measures without them. Writes figure7.png,
growth.png (each model's pictures after 200 steps, from the preview its run drew on held-out pairs), table.md and
table.json into --out and prints the Markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from perception_table import chosen_rows, nca, percent, row_options, write_table

PERCEPTIONS = {"conv3": "table1-conv3", "conv5": "table1-conv5", "combined": "table1-combined"}  # the module's preset
LOSSES = {"mse": ("mse", None), "critic": ("l1+wgan-gp", "l1=100,wgan-gp=1")}
ROWS = [f"{p}-{loss}" for p in PERCEPTIONS for loss in LOSSES]
LABELS = {"conv3": "Conv 3x3", "conv5": "Conv 5x5", "combined": "Combined 3x3+5x5D"}


def toml_value(value) -> str:
    """A TOML inline value (the perception tables of the presets: strings, numbers, booleans, lists, tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"


def row_config(row: str) -> str:
    """The row's config over the translate preset: the perception of Table 1's preset and its 80-wide update."""
    from ncacli.config import load_preset

    perception = load_preset(PERCEPTIONS[row.rsplit("-", 1)[0]])[0]["model"]["perception"]
    return f"[model]\nhidden = 80\nperception = {toml_value(perception)}\n"


def train(row: str, run: Path, opts: argparse.Namespace) -> Path:
    """The row's model, trained into ``run`` (or resumed there) unless it is already there."""
    model = run / "model.safetensors"
    if model.exists() and not (run / "resume.safetensors").exists():
        return model
    if (run / "resume.safetensors").exists():
        args = ["train", "--resume", str(run), "--iters", str(opts.iters), "--quiet"]
    else:
        run.parent.mkdir(parents=True, exist_ok=True)
        config = run.parent / f"{row}.toml"
        config.write_text(row_config(row), encoding="utf-8")
        loss, weights = LOSSES[row.rsplit("-", 1)[1]]
        args = ["train", "--preset", "translate", "--config", str(config), "--loss", loss]
        args += ["--loss-weights", weights] if weights else []
        args += ["--iters", str(opts.iters), "--seed", str(opts.seed), "--device", opts.device, "--quiet"]
        args += ["--out", str(run), *[word for item in opts.set for word in ("--set", item)]]
    proc = nca(*args)
    if proc.returncode != 0:
        raise SystemExit(f"{row}: training failed: {proc.stderr.strip().splitlines()[-1]}")
    return model


def measured(model: str, opts: argparse.Namespace) -> dict:
    metrics = ",".join(dict.fromkeys([opts.metric, "mse", "ssim"]))
    args = ["evaluate", model, "--metric", metrics, "--trials", str(opts.trials), "--seed", str(opts.seed)]
    proc = nca(*args, "--every", str(opts.every), "--device", opts.device, "--json")
    if proc.returncode != 0:
        raise SystemExit(f"{model}: nca evaluate failed: {proc.stderr.strip().splitlines()[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def describe(model: str) -> dict:
    """What the model is: its perception (Table 1's module it was trained with, else its name), loss, size, budget."""
    from ncacli.config import load_preset

    info = json.loads(nca("info", model, "--json").stdout)
    provenance, config = info.get("provenance", {}), info["config"]
    name = config["perception"]
    for key, preset in PERCEPTIONS.items():
        module = dict(load_preset(preset)[0]["model"]["perception"])
        if module.pop("name") == config["perception"] and module == config.get("perception_options"):
            name = LABELS[key]
    return {"model": model, "perception": name, "loss": provenance.get("loss"), "parameters": info["parameters"],
            "iterations": provenance.get("iterations")}  # fmt: skip


def row(model: str, opts: argparse.Namespace) -> dict:
    out = describe(model)
    doc = measured(model, opts)
    out["curve"] = {name: {"steps": c["steps"], "mean": c["mean"]} for name, c in doc["curve"].items()}
    out["stages"] = {
        name: {"stages": [m[s]["mean"] for s in ("stage1", "stage2", "stage3")], "recovery": m.get("recovery")}
        for name, m in doc["metrics"].items()
    }  # fmt: skip
    return out


def plot(rows: list[dict], metric: str, path: Path) -> None:
    """Figure 7a: the metric over the rollout, one curve per model (MSE solid, with a critic dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for r in rows:
        c = r["curve"][metric]
        style = "--" if "wgan-gp" in (r["loss"] or "") else "-"
        ax.plot(c["steps"], c["mean"], style, label=f"{r['perception']}, {r['loss']} ({r['parameters']:,})")
    ax.axvline(150, color="0.6", lw=0.8)
    ax.set_xlabel("step (a circle cut at 150)")
    ax.set_ylabel(f"{metric.upper()} to the ground truth (held-out pairs)")
    ax.set_title("edges2emoji: the NCAtorch review's Figure 7a protocol")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(rows: list[dict], opts: argparse.Namespace) -> str:
    m = opts.metric
    lines = [
        f"{m.upper()} to the ground truth on held-out edges2emoji pairs at stages 1 (64–96) / 2 (149) / 3 (449), "
        f"recovery % after a circle cut at step 150, SSIM at stage 2; {opts.trials} trials each.",
        "",
        f"| perception | loss | {m.upper()} 1 / 2 / 3 | recovery % | SSIM (149) | parameters | iterations |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["stages"][m]
        lines.append(
            f"| {r['perception']} | {r['loss']} | {' / '.join(f'{v:.3f}' for v in s['stages'])} "
            f"| {percent(s['recovery'])} | {r['stages']['ssim']['stages'][1]:.3f} | {r['parameters']:,} "
            f"| {r['iterations'] or 0:,} |"
        )
    return "\n".join(lines) + "\n"


def growth(rows: list[dict], path: Path) -> bool:
    """The pictures beside the curves: the held-out pairs each model's run drew at its end (``preview.png`` beside
    the model: the inputs, the pictures after 96 and 200 steps, the targets, a band each), laid as the inputs, each
    model's pictures after 200 steps, the targets. Nothing is written (False) where a model has no preview beside
    it or the previews show other pairs."""
    import io

    from PIL import Image, ImageDraw

    from ncacli.io.files import atomic_write_bytes

    previews = []
    for r in rows:
        preview = Path(r["model"]).parent / "preview.png"
        if not preview.is_file():
            return False
        previews.append(Image.open(preview).convert("RGB"))
    w, h = previews[0].size
    band = h // 4

    def strip(image, i):
        return image.crop((0, i * band, w, (i + 1) * band))

    if any(im.size != (w, h) or strip(im, 0).tobytes() != strip(previews[0], 0).tobytes() for im in previews):
        return False
    strips = [("input", strip(previews[0], 0))]
    strips += [(f"{r['perception']}, {r['loss']}", strip(im, 2)) for r, im in zip(rows, previews, strict=True)]
    strips.append(("target", strip(previews[0], 3)))
    margin = 200
    out = Image.new("RGB", (margin + w, band * len(strips)), "white")
    draw = ImageDraw.Draw(out)
    for i, (label, picture) in enumerate(strips):
        out.paste(picture, (margin, i * band))
        draw.text((6, i * band + band // 2 - 6), label, fill="black")
    data = io.BytesIO()
    out.save(data, format="PNG")
    atomic_write_bytes(path, data.getvalue())
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="translation model files to measure")
    row_options(parser, ROWS, 3000, "runs/figure7")
    parser.add_argument("--trials", type=int, default=16, help="trials, each a held-out pair")
    parser.add_argument("--every", type=int, default=5, help="a point of the curve every this many steps")
    parser.add_argument("--metric", choices=("lpips", "mse"), default="lpips", help="mse: without AlexNet's weights")
    opts = parser.parse_args(argv)
    models = list(opts.models)
    if opts.train:
        models += [str(train(r, opts.out / r, opts)) for r in chosen_rows(parser, opts, ROWS)]
    if not models:
        parser.error("name models to measure, or --train")
    rows = []
    for model in models:
        rows.append(row(model, opts))
        print(f"{model}: measured", file=sys.stderr, flush=True)
    opts.out.mkdir(parents=True, exist_ok=True)
    plot(rows, opts.metric, opts.out / "figure7.png")
    if not growth(rows, opts.out / "growth.png"):
        why = "a model without its run's preview.png, or previews of other pairs"
        print(f"growth.png: not drawn ({why})", file=sys.stderr)
    document = {"metric": opts.metric, "trials": opts.trials, "every": opts.every, "rows": rows}
    write_table(opts.out, markdown(rows, opts), document)


if __name__ == "__main__":
    main()
