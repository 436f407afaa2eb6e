"""Pictures of a run: sample grids and training curves (PNG, written atomically)."""

from __future__ import annotations

import os
from collections.abc import Sequence

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
  """Losses, V and D's outputs against the step, from metrics.jsonl rows, as one PNG (the
  rows of logged steps; an evaluation between logs writes a row without losses)."""
  rows = [r for r in rows if "d_loss" in r]
  if not rows:
    return
  plt = pyplot()
  steps = [r["step"] for r in rows]
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
  logits = "d_real" in rows[0]  # the BCE game; else a critic's raw outputs
  for key, label in [("d_loss", "D loss"), ("g_loss", "G loss"), ("value", "V(D, G)")]:
    if key in rows[0]:
      ax1.plot(steps, [r[key] for r in rows], label=label)
  if logits:
    ax1.axhline(-np.log(4), color="grey", ls=":", lw=1, label="-log 4 (optimum)")
  ax1.set_xlabel("iteration")
  ax1.set_ylabel("nats")
  ax1.legend()
  ax1.set_title("losses")
  real, fake, name = ("d_real", "d_fake", "D") if logits else ("critic_real", "critic_fake",
                                                                "critic")
  ax2.plot(steps, [r[real] for r in rows], label=f"{name}(x), data")
  ax2.plot(steps, [r[fake] for r in rows], label=f"{name}(G(z)), samples")
  if logits:
    ax2.axhline(0.5, color="grey", ls=":", lw=1, label="1/2 (p_g = p_data)")
    ax2.set_ylim(0, 1)
  ax2.set_xlabel("iteration")
  ax2.legend()
  ax2.set_title("discriminator outputs")
  save_figure(fig, path)


def pyplot():
  """matplotlib.pyplot with a file-only backend (imported on first use)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def save_figure(fig, path: str) -> None:
  """Write ``fig`` to ``path`` as PNG (temp file, then rename) and close it."""
  plt = pyplot()
  fig.tight_layout()
  tmp = f"{path}.tmp.png"
  fig.savefig(tmp, dpi=90)
  plt.close(fig)
  os.replace(tmp, path)
