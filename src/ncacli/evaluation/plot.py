"""The metric over time with the perturbation marked (the NCAtorch review, Figure 17 style; a texture's style
distance as in its Figure 11) → PNG bytes."""

from __future__ import annotations

import io
from typing import Any

from ncacli.evaluation.metrics import declared, hook, label_of
from ncacli.evaluation.protocol import Protocol

# a curve whose positive values span more than this factor is drawn on a log axis (a texture's style distance
# falls from the empty grid's by orders of magnitude)
LOG_SPAN = 30.0


def plot_png(result: dict[str, Any], protocol: Protocol, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    names = list(result["curve"])
    fig = Figure(figsize=(7.0, 2.4 * len(names)), dpi=120, layout="constrained")
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    what = f"{protocol.perturb}" + (f" ({protocol.shape})" if protocol.perturb == "damage" else "")
    for ax, name in zip(axes, names, strict=True):
        curve = result["curve"][name]
        steps, mean, std = curve["steps"], curve["mean"], curve["std"]
        ax.axvspan(*protocol.stage1, color="0.9", label=f"stage 1 ({protocol.stage1[0]}–{protocol.stage1[1]})")
        ax.plot(steps, mean, color="tab:blue", lw=1.5, label=f"mean of {protocol.trials} trials")
        ax.fill_between(
            steps, [m - s for m, s in zip(mean, std, strict=True)], [m + s for m, s in zip(mean, std, strict=True)],
            color="tab:blue", alpha=0.2, lw=0,
        )  # fmt: skip
        if protocol.perturb != "none":
            ax.axvline(
                protocol.perturb_at, color="tab:red", ls="--", lw=1, label=f"{what} at step {protocol.perturb_at}"
            )
        stats = result["metrics"][name]
        rec = stats["recovery"]
        ax.set_ylabel(label_of(name, stats["higher_is_better"]))
        if min(mean) > 0 and max(mean) > LOG_SPAN * min(mean):
            ax.set_yscale("log")
        if rec is not None:
            ax.set_title(f"recovery {rec:.1f}%", loc="right", fontsize=9)
        note = hook(declared(name), "caption")(result.get("protocol", {}))
        if note:
            ax.text(0.01, 0.03, note, transform=ax.transAxes, fontsize=8, color="tab:red", va="bottom")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    axes[0].set_title(_plain(title), loc="left", fontsize=9)
    axes[-1].set_xlabel("step")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _plain(text: str) -> str:
    """Emoji are missing from matplotlib's default font: write them as code points."""
    return "".join(c if ord(c) < 0x2000 else f"U+{ord(c):04X}" for c in text)
