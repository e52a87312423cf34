"""A video model's evaluation (the NCAtorch review §3.4, Figure 16): autoregressive prediction of held-out
sequences, measured frame by frame.

Each trial is one held-out sequence (the first ``trials`` of the split the model file records). The state
starts from its first ``k`` true frames, hidden channels zero; the NCA runs the steps of one transition (the
middle of the trained ``steps_min``–``steps_max``) and the newest frame the state then holds is the
prediction of frame ``k + 1``; the state it reached, hidden channels and all, starts the next transition
(as the pool trains it), and so on for ``frames`` frames: no true frame is seen after the first ``k``. Each
predicted frame is compared with the true one (MSE, PSNR, SSIM on grey frames, averaged over the trials),
beside the copy-last-frame baseline, which predicts every later frame to be the last input frame ``k``.
"""

from __future__ import annotations

import io
from typing import Any

import torch

from ncacli.errors import UsageError
from ncacli.evaluation.metrics import declared
from ncacli.evaluation.protocol import _stats
from ncacli.evaluation.report import Report, Table, stats_text, text_of

DEFAULT = ("mse", "ssim")  # what a predicted frame is compared by unless --metric says


def frame_metrics() -> list[str]:
    """The metrics that compare two plain pictures (``Metric.between``): the ones a grey frame can be measured by
    (MSE, PSNR, SSIM)."""
    from ncacli.registry import METRICS

    return [name for name in METRICS if getattr(METRICS[name], "between", None) is not None]


def frame_metric(name: str, predicted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Metric ``name`` between grey frames ``(B, 1, H, W)`` in [0, 1] → ``(B,)``, as the image metrics measure
    two pictures (:attr:`ncacli.evaluation.metrics.Metric.between`)."""
    from ncacli.registry import METRICS

    return METRICS[name].between(predicted, truth)


def evaluate_video(
    model: Any,
    frames: int | None = None,
    trials: int | None = None,
    seed: int = 0,
    perturb: str | None = None,
    metrics: list[str] | None = None,
    **_: Any,
) -> Report:
    """``frames`` predicted frames (default up to 20) of ``trials`` held-out sequences (default up to 64), fire
    masks from ``seed`` → the document ``nca evaluate --json`` prints. The growing protocol's options (stages,
    damage, targets) do not apply and are ignored."""
    from ncacli.evaluation.protocol import check_perturbation

    check_perturbation(model, perturb, "none", None)
    task, dev = model.task, model.device
    data, test = task.load_data(), task.test_index()
    k, (h, w) = task.k, data.grid
    most = data.length - k
    count = min(20, most) if frames is None else frames
    if not 1 <= count <= most:
        raise UsageError(
            f"--frames {count}: the held-out sequences have {data.length} frames; after the {k} the state starts "
            f"from, 1 to {most} can be predicted"
        )
    names, skipped = _names(metrics, (h, w))
    n = min(trials or 64, len(test))
    video = test[:n]
    steps = task.transition_steps()
    g = torch.Generator(device=dev).manual_seed(seed)
    predicted, _ = task.predict(model.nca, task.states(video, torch.zeros_like(video)), count, g, steps)
    truth = data.window(video, torch.full_like(video, k), count)  # frames k+1 … k+count (1-based)
    last = data.window(video, torch.full_like(video, k - 1), 1)  # the last input frame: the baseline's guess
    rows: list[dict[str, Any]] = []
    for i in range(count):
        row: dict[str, Any] = {"frame": k + 1 + i, "ahead": i + 1}
        for name in names:
            row[name] = _stats(frame_metric(name, predicted[:, i : i + 1], truth[:, i : i + 1]).tolist())
            row[f"baseline_{name}"] = _stats(frame_metric(name, last, truth[:, i : i + 1]).tolist())
        rows.append(row)
    every = truth.flatten(0, 1)[:, None]  # (n · count, 1, H, W)
    summary = {
        name: {
            "higher_is_better": declared(name).higher_is_better,
            "nca": _mean_of(rows, name),
            "baseline": _mean_of(rows, f"baseline_{name}"),
            "first": rows[0][name]["mean"],
            "baseline_first": rows[0][f"baseline_{name}"]["mean"],
            # a reference beside the baselines: an all-black frame (what a prediction that fades out tends to)
            "black_frame": float(frame_metric(name, torch.zeros_like(every), every).mean()),
        }
        for name in names
    }
    source = model.spec.task.options.get("source", "?")
    document = {
        "model": model.path,
        "task": task.name,
        "config": model.nca.config.to_dict(),
        "provenance": model.provenance,
        "target": f"{source} held-out split: {n} of {len(test)} sequences, frames {k + 1}–{k + count} predicted "
        f"from frames 1–{k}",
        "grid": [h, w],
        "device": str(dev),
        "engine": model.engine,
        "protocol": {
            "kind": "autoregressive",
            "k": k,
            "frames": count,
            "steps_per_frame": steps,
            "trials": n,
            "seed": seed,
            "feedback": "state",  # each transition starts from the state the last one reached
            "baseline": "copy the last input frame",
            "metrics": names,
            "not_measured": skipped,
        },
        "metrics": summary,
        "per_frame": rows,
        "trials": [{"trial": i, "sequence": int(video[i])} for i in range(n)],
    }
    return Report(document, frames_table(document), lambda title: plot_frames_png(document, title))


def _names(metrics: list[str] | None, grid: tuple[int, int]) -> tuple[list[str], dict[str, str]]:
    """The metrics asked for (default MSE and SSIM) → ``(names, {left out: why})``; a metric that needs larger
    frames (SSIM: 11×11 cells) is left out of the default on smaller ones, refused when named."""
    known = frame_metrics()
    if metrics is None:
        small = {m: declared(m).min_side for m in DEFAULT if declared(m).min_side > min(grid)}
        skipped = {m: f"needs frames of at least {side}×{side} cells" for m, side in small.items()}
        return [m for m in DEFAULT if m not in small], skipped
    if not metrics:
        raise UsageError("--metric: name at least one of " + ", ".join(known))
    for name in metrics:
        if name not in known:
            raise UsageError(f"--metric {name}: a video model's frames are compared by {', '.join(known)}")
        side = declared(name).min_side
        if side > min(grid):
            raise UsageError(f"--metric {name} needs frames of at least {side}×{side} cells, not {grid[0]}×{grid[1]}")
    return list(dict.fromkeys(metrics)), {}


def _mean_of(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key]["mean"] for r in rows if r[key]["mean"] is not None]
    return sum(values) / len(values) if values else None


# -- showing -----------------------------------------------------------------------------------------------


def frames_table(doc: dict[str, Any]) -> Table:
    """The per-frame table ``nca evaluate`` prints for a video model."""
    p = doc["protocol"]
    title = f"{doc['model']}\n{doc['target']} · {p['steps_per_frame']} steps a frame · {p['trials']} trials"
    columns = [("frame", "right")]
    for name in p["metrics"]:
        arrow = declared(name).label or name
        columns += [(f"NCA {arrow}", "right"), (f"copy-last {arrow}", "right")]
    table = Table(title, columns)
    for row in doc["per_frame"]:
        cells = [f"{row['frame']} (+{row['ahead']})"]
        for name in p["metrics"]:
            digits = declared(name).decimals
            cells += [stats_text(row[name], digits), stats_text(row[f"baseline_{name}"], digits)]
        table.rows.append(cells)
    mean = ["mean"]
    for name in p["metrics"]:
        digits = declared(name).decimals
        m = doc["metrics"][name]
        mean += [text_of(m["nca"], digits), text_of(m["baseline"], digits)]
    table.bold_rows.add(len(table.rows))
    table.rows.append(mean)
    captions = ["copy-last: every later frame predicted to be the last input frame"]
    black = [f"{name} {text_of(doc['metrics'][name]['black_frame'], declared(name).decimals)}" for name in p["metrics"]]
    if black:
        captions.append("an all-black frame scores " + ", ".join(black))
    captions += [f"{name}: not measured ({why})" for name, why in p["not_measured"].items()]
    table.caption = "\n".join(captions)
    return table


def plot_frames_png(doc: dict[str, Any], title: str) -> bytes:
    """Each metric per predicted frame (mean ± std over the trials), the copy-last-frame baseline beside it
    (the NCAtorch review, Figure 16a's kind) → PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from ncacli.evaluation.plot import _plain

    names, rows = doc["protocol"]["metrics"], doc["per_frame"]
    frames = [r["frame"] for r in rows]
    fig = Figure(figsize=(7.0, 2.4 * len(names)), dpi=120, layout="constrained")
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, names, strict=True):
        for key, label, colour in ((name, "NCA", "tab:blue"), (f"baseline_{name}", "copy last frame", "0.4")):
            mean = [r[key]["mean"] for r in rows]
            std = [r[key]["std"] for r in rows]
            low = [m - s for m, s in zip(mean, std, strict=True)]
            high = [m + s for m, s in zip(mean, std, strict=True)]
            ax.plot(frames, mean, color=colour, lw=1.5, marker="o", ms=3, label=label)
            ax.fill_between(frames, low, high, color=colour, alpha=0.15, lw=0)
        ax.set_ylabel(declared(name).label or name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    axes[0].set_title(_plain(title), loc="left", fontsize=9)
    axes[-1].set_xlabel(f"frame (predicted from frames 1–{doc['protocol']['k']}, {doc['protocol']['trials']} trials)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
