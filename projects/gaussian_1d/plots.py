"""The 1-D experiment's pictures: the paper's Figure 1 and the JSD curves."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gan_jax.run import pictures


def figure1(x: np.ndarray, p_data: np.ndarray, snapshots: Sequence[dict],
                   path: str) -> None:
  """The paper's Figure 1 for a 1-D run: p_data (black dots), p_g (green) and D (blue
  dashes) at each snapshot (dicts with step, p_g, d, jsd)."""
  plt = pictures.pyplot()

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
  pictures.save_figure(fig, path)


def curves(rows: Sequence[dict], path: str) -> None:
  """JSD(p_data || p_g) and max |D - 1/2| on the data's support against the step."""
  plt = pictures.pyplot()

  steps = [r["step"] for r in rows]
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
  ax1.semilogy(steps, [max(r["jsd"], 1e-8) for r in rows])
  ax1.set_title("JSD(p_data || p_g), nats", fontsize=10)
  ax2.plot(steps, [r["max_abs_d_minus_half"] for r in rows])
  ax2.set_title("max |D(x) - 1/2| where p_data > 0.05", fontsize=10)
  for ax in (ax1, ax2):
    ax.set_xlabel("iteration")
  pictures.save_figure(fig, path)
