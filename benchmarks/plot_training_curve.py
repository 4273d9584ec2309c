"""Plot a training run's curve from its ``metrics.jsonl``: train loss and held-out PSNR vs the baseline.

    python benchmarks/plot_training_curve.py runs/wfvae-tiny/metrics.jsonl --out docs/wfvae-tiny-training.png \
        --extra benchmarks/results/wfvae-tiny-checkpoints.json

``--extra`` (repeatable): a JSON ``{"step": [...], "model": [...], "pool": [...], "worst_margin": [...]}`` of
another held-out evaluation of the checkpoints (``benchmarks/tiny_validation.py --curve``, optionally with
``--real``), each drawn as a panel of its own (titled by its ``"title"``).
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("metrics")
    ap.add_argument("--out", required=True)
    ap.add_argument("--extra", action="append", default=[])
    ap.add_argument("--title", default="wfvae-tiny stage II (recipes/wfvae-tiny.toml)")
    args = ap.parse_args()
    with open(args.metrics) as fh:
        rows = [json.loads(line) for line in fh]
    # a resumed run appends: keep the last row of each (kind, step)
    last: dict[tuple[str, int], dict] = {}
    for r in rows:
        last[(r["kind"], r["step"])] = r
    train = sorted((r for (k, _), r in last.items() if k == "train"), key=lambda r: r["step"])
    evals = sorted((r for (k, _), r in last.items() if k == "eval"), key=lambda r: r["step"])
    base = [r for (k, _), r in last.items() if k == "baseline"]
    panels = 2 + len(args.extra)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6))
    ax = axes[0]
    ax.plot([r["step"] for r in train], [r["rec"] for r in train], lw=1)
    ax.set(xlabel="step", ylabel="L1 reconstruction loss (sum/frame)", title="training loss")
    ax.grid(alpha=0.3)
    ax = axes[1]
    key = "ema/psnr" if evals and "ema/psnr" in evals[0] else "psnr"
    ax.plot([r["step"] for r in evals], [r[key] for r in evals], "o-", label=f"model ({key})")
    if base:
        ax.axhline(base[0]["psnr"], color="grey", ls="--", label="pool 4x8x8 trilinear")
    ax.set(xlabel="step", ylabel="PSNR (dB)", title="in-run held-out clips (17 frames, 64²)")
    ax.legend()
    ax.grid(alpha=0.3)
    for panel, path in enumerate(args.extra, start=2):
        with open(path) as fh:
            extra = json.load(fh)
        ax = axes[panel]
        ax.plot(extra["step"], [m - extra["pool"] for m in extra["model"]], "o-", label="mean margin")
        ax.plot(extra["step"], extra["worst_margin"], "s-", label="worst-clip margin")
        ax.axhline(3.0, color="C0", ls=":", label="bar: mean +3 dB")
        ax.axhline(1.0, color="C1", ls=":", label="bar: every clip +1 dB")
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set(xlabel="step", ylabel="PSNR margin over pooling (dB)",
               title=extra.get("title", "held-out validation set (tiny_validation.py)"))
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
