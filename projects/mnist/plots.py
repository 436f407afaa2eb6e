"""The MNIST experiment's evaluation curves."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gan_jax.run import pictures


def eval_curves(rows: Sequence[dict], path: str) -> None:
  """The evaluation metrics in metrics.jsonl rows against the step, as one PNG."""
  plt = pictures.pyplot()

  panels = [(keys, title) for keys, title in [
      (("parzen_ll",), "Parzen log-likelihood (nats)"),
      (("frechet_distance",), "Fréchet distance (classifier features)"),
      (("precision", "recall"), "precision / recall"),
      (("classifier_score",), "classifier score (max 10)"),
  ] if any(keys[0] in r for r in rows)]
  if not panels:
    return
  fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False)
  for ax, (keys, title) in zip(axes[0], panels, strict=True):
    for prefix, style in (("", "-"), ("ema_", "--")):  # the raw G, and its EMA when kept
      for key in keys:
        pts = [(r["step"], r[prefix + key]) for r in rows if prefix + key in r]
        if not pts:
          continue
        ax.plot(*zip(*pts, strict=True), style, marker="o", ms=3,
                label=f"{key}, EMA of G" if prefix else key)
        if key == "parzen_ll":
          pts = [(r["step"], r[prefix + key], r[prefix + "parzen_ll_stderr"]) for r in rows
                 if prefix + key in r]
          s, m, e = (np.array(v) for v in zip(*pts, strict=True))
          ax.fill_between(s, m - e, m + e, alpha=0.3)
    for prefix, colour in (("", "grey"), ("ema_", "black")):  # what selection reads
      val = [(r["step"], r[prefix + "val_" + keys[0]]) for r in rows
             if prefix + "val_" + keys[0] in r]
      if val:
        ax.plot(*zip(*val, strict=True), ":", color=colour, lw=1,
                label=f"validation{', EMA' if prefix else ''} (selection)")
    chosen = [r["selected_step"] for r in rows if "selected_step" in r]
    if chosen and keys[0] in ("parzen_ll", "frechet_distance"):
      ax.axvline(chosen[-1], color="tab:green", lw=0.8, label="selected")
    if len(keys) > 1:
      ax.set_ylim(0, 1)
    if len(keys) > 1 or any("ema_" + keys[0] in r or "val_" + keys[0] in r for r in rows):
      ax.legend(fontsize=7)
    ax.set_xlabel("iteration")
    ax.set_title(title, fontsize=10)
  pictures.save_figure(fig, path)
