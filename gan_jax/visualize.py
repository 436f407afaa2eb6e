"""Pictures of a run: sample grids and training curves (PNG)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np


def image_grid(images: np.ndarray, image_shape: Sequence[int], *, rows: int, cols: int,
               pad: int = 2, pad_value: float = 0.5) -> np.ndarray:
  """Tile ``rows * cols`` flat images ([N, prod(image_shape)], values in [0, 1]) into uint8.

  Returns [rows*(h+pad)+pad, cols*(w+pad)+pad, c] with a grey border between tiles.
  """
  h, w, c = image_shape
  imgs = np.clip(np.asarray(images[: rows * cols], np.float32), 0.0, 1.0).reshape(-1, h, w, c)
  grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), pad_value, np.float32)
  for i, img in enumerate(imgs):
    r, q = divmod(i, cols)
    y, x = pad + r * (h + pad), pad + q * (w + pad)
    grid[y:y + h, x:x + w] = img
  return np.round(grid * 255).astype(np.uint8)


def save_png(path: str, image: np.ndarray) -> None:
  """Write a uint8 [H, W, 1|3] array as PNG, atomically (temp file, then rename)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  arr = image[..., 0] if image.shape[-1] == 1 else image
  tmp = f"{path}.tmp"
  Image.fromarray(arr).save(tmp, format="PNG")
  os.replace(tmp, path)


def plot_curves(rows: Sequence[dict], path: str) -> None:
  """Losses, V and D's outputs against the step, from metrics.jsonl rows, as one PNG."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  steps = [r["step"] for r in rows]
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
  for key, label in [("d_loss", "D loss"), ("g_loss", "G loss"), ("value", "V(D, G)")]:
    ax1.plot(steps, [r[key] for r in rows], label=label)
  ax1.axhline(-np.log(4), color="grey", ls=":", lw=1, label="-log 4 (optimum)")
  ax1.set_xlabel("iteration")
  ax1.set_ylabel("nats")
  ax1.legend()
  ax1.set_title("losses")
  ax2.plot(steps, [r["d_real"] for r in rows], label="D(x), data")
  ax2.plot(steps, [r["d_fake"] for r in rows], label="D(G(z)), samples")
  ax2.axhline(0.5, color="grey", ls=":", lw=1, label="1/2 (p_g = p_data)")
  ax2.set_ylim(0, 1)
  ax2.set_xlabel("iteration")
  ax2.legend()
  ax2.set_title("discriminator outputs")
  _save(fig, path)


def plot_eval(rows: Sequence[dict], path: str) -> None:
  """The evaluation metrics in metrics.jsonl rows against the step, as one PNG."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

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
  _save(fig, path)


def _save(fig, path: str) -> None:
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig.tight_layout()
  tmp = f"{path}.tmp.png"
  fig.savefig(tmp, dpi=90)
  plt.close(fig)
  os.replace(tmp, path)


def plot_1d_stages(x: np.ndarray, p_data: np.ndarray, snapshots: Sequence[dict],
                   path: str) -> None:
  """The paper's Figure 1 for a 1-D run: p_data (black dots), p_g (green) and D (blue
  dashes) at each snapshot (dicts with step, p_g, d, jsd)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  n = len(snapshots)
  fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.2), sharey=True, squeeze=False)
  top = 1.05 * max(p_data.max(), max(s["p_g"].max() for s in snapshots), 1.0)
  for ax, s in zip(axes[0], snapshots, strict=True):
    ax.plot(x, p_data, "k:", lw=2, label="p_data")
    ax.plot(x, s["p_g"], "g-", lw=1.5, label="p_g")
    ax.plot(x, s["d"], "b--", lw=1.5, label="D(x)")
    ax.axhline(0.5, color="grey", lw=0.6)
    ax.set_ylim(0, top)
    ax.set_title(f"step {s['step']}: JSD {s['jsd']:.3f} nats", fontsize=10)
    ax.set_xlabel("x")
  axes[0][0].legend(loc="upper left", fontsize=8)
  _save(fig, path)


def plot_1d_curves(rows: Sequence[dict], path: str) -> None:
  """JSD(p_data || p_g) and max |D - 1/2| on the data's support against the step."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  steps = [r["step"] for r in rows]
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
  ax1.semilogy(steps, [max(r["jsd"], 1e-8) for r in rows])
  ax1.set_title("JSD(p_data || p_g), nats", fontsize=10)
  ax2.plot(steps, [r["max_abs_d_minus_half"] for r in rows])
  ax2.set_title("max |D(x) - 1/2| where p_data > 0.05", fontsize=10)
  for ax in (ax1, ax2):
    ax.set_xlabel("iteration")
  _save(fig, path)


def plot_ring(real: np.ndarray, samples: dict[str, np.ndarray], means: np.ndarray, std: float,
              results: dict, path: str) -> None:
  """Scatter plots: data, then each G loss's final samples, with the 3-std circles."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

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
  _save(fig, path)


def plot_ring_curves(curves: dict[str, tuple[Sequence[dict], Sequence[float]]],
                     early_steps: int, path: str) -> None:
  """Per replica (name -> (metrics rows, G's gradient norm at each of the first steps)):
  that gradient norm, its mean per logged interval over the run, and modes covered."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

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
  _save(fig, path)
