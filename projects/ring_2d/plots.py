"""The ring experiment's pictures: samples against the modes, gradient norms and coverage."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gan_jax.run import pictures


def samples(real: np.ndarray, samples: dict[str, np.ndarray], means: np.ndarray, std: float,
              results: dict, path: str) -> None:
  """Scatter plots: data, then each G loss's final samples, with the 3-std circles."""
  plt = pictures.pyplot()

  panels = [("data", real, None)] + [(k, v, results[k]) for k, v in samples.items()]
  cols = min(len(panels), 6)
  rows = -(-len(panels) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.7 * rows), squeeze=False)
  for ax in axes.flat[len(panels):]:
    ax.axis("off")
  lim = 1.35 * float(np.abs(means).max())
  for ax, (name, pts, res) in zip(axes.flat[:len(panels)], panels, strict=True):
    ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.3, color="tab:blue" if res else "k")
    for m in means:
      ax.add_patch(plt.Circle(m, 3 * std, fill=False, color="tab:red", lw=0.8))
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    title = name if res is None else (
        f"{name}\n{res['modes_covered']}/{res['num_modes']} modes, "
        f"{100 * res['high_quality_share']:.0f}% in 3σ")
    ax.set_title(title, fontsize=9)
  pictures.save_figure(fig, path)


def curves(curves: dict[str, tuple[Sequence[dict], Sequence[float]]],
                     early_steps: int, path: str) -> None:
  """Per replica (name -> (metrics rows, G's gradient norm at each of the first steps)):
  that gradient norm, its mean per logged interval over the run, and modes covered."""
  plt = pictures.pyplot()

  fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.4))
  for name, (rows, early) in curves.items():
    ax1.semilogy(np.arange(1, len(early) + 1), early, label=name)
    logged = [(r["step"], r["g_grad_norm"]) for r in rows if "g_grad_norm" in r]
    if logged:
      ax2.semilogy(*zip(*logged, strict=True), marker="o", ms=2, label=name)
    pts = [(r["step"], r["modes_covered"]) for r in rows if "modes_covered" in r]
    if pts:
      ax3.plot(*zip(*pts, strict=True), marker="o", ms=2, label=name)
  ax1.set_title(f"G gradient norm, first {early_steps} steps", fontsize=10)
  ax2.set_title("G gradient norm, mean per logged interval", fontsize=10)
  ax3.set_title("modes covered", fontsize=10)
  for ax in (ax1, ax2, ax3):
    ax.set_xlabel("iteration")
    if len(curves) <= 8:
      ax.legend(fontsize=7)
  pictures.save_figure(fig, path)
