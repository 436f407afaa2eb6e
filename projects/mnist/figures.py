"""The paper's MNIST pictures, written by ``--mode=eval`` into the workdir.

Figure 2: samples, each row ending in a column that shows, for the sample beside
it, its nearest training image (L2 in pixel space): the check that the model
did not memorise its training set. Figure 3: digits decoded from linear
interpolations between pairs of latent vectors.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.run import pictures
from gan_jax.run.experiment import generate
from gan_jax.state import GAN, GANState, sample_latent


@functools.partial(jax.jit, static_argnames="batch")
def _nearest(queries: jax.Array, pool: jax.Array, *, batch: int) -> tuple[jax.Array, jax.Array]:
  """Index and squared distance of each query's nearest row of ``pool``, in batches of pool."""
  q_sq = jnp.sum(queries * queries, axis=1)
  n = pool.shape[0]
  pad = (-n) % batch
  padded = jnp.pad(pool, ((0, pad), (0, 0)))
  blocks = padded.reshape(-1, batch, pool.shape[1])

  def body(carry, xs):
    best_d, best_i = carry
    block, start = xs
    d = q_sq[:, None] - 2.0 * queries @ block.T + jnp.sum(block * block, axis=1)[None, :]
    d = jnp.where(start + jnp.arange(batch)[None, :] < n, d, jnp.inf)  # the padding
    i = jnp.argmin(d, axis=1)
    d_min = jnp.take_along_axis(d, i[:, None], axis=1)[:, 0]
    better = d_min < best_d
    return (jnp.where(better, d_min, best_d), jnp.where(better, start + i, best_i)), None

  init = (jnp.full(queries.shape[0], jnp.inf, queries.dtype),
          jnp.zeros(queries.shape[0], jnp.int32))
  starts = jnp.arange(blocks.shape[0], dtype=jnp.int32) * batch
  (dist, index), _ = jax.lax.scan(body, init, (blocks, starts))
  return index, jnp.where(dist < 0.0, 0.0, dist)  # keeps a NaN a NaN


def nearest_neighbours(queries: np.ndarray, pool: np.ndarray, *, batch: int = 5_000
                       ) -> tuple[np.ndarray, np.ndarray]:
  """For each row of ``queries`` [n, d], the index of its nearest row of ``pool`` [N, d]
  by Euclidean distance, and that distance (float32, matmul form)."""
  index, dist = _nearest(jnp.asarray(queries, jnp.float32), jnp.asarray(pool, jnp.float32),
                         batch=min(batch, len(pool)))
  return np.asarray(index), np.sqrt(np.asarray(dist))


def nearest_neighbour_grid(samples: np.ndarray, train: np.ndarray, image_shape, *,
                           rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
  """Figure 2: ``rows`` x ``cols`` samples, then one more column holding the nearest
  training image of each row's last sample. Returns the grid and those distances."""
  shown = samples[:rows * cols].reshape(rows, cols, -1)
  index, dist = nearest_neighbours(shown[:, -1], train)
  images = np.concatenate([shown, train[index][:, None, :]], axis=1)
  grid = pictures.image_grid(images.reshape(rows * (cols + 1), -1), image_shape, rows=rows,
                              cols=cols + 1)
  return grid, dist


def interpolations(gan: GAN, state: GANState, z0: jax.Array, z1: jax.Array, *, steps: int,
                   ema: bool | None = None) -> np.ndarray:
  """Figure 3: G along the segment from each z0[i] to z1[i] in ``steps`` evenly spaced
  points (both ends included); [pairs, steps, features]."""
  t = jnp.linspace(0.0, 1.0, steps)[None, :, None]
  z = (1.0 - t) * z0[:, None, :] + t * z1[:, None, :]
  flat = generate(gan, state, z.reshape(-1, z.shape[-1]), ema=ema)
  return flat.reshape(z0.shape[0], steps, -1)


def write_paper_figures(gan: GAN, state: GANState, dataset, root: jax.Array, workdir: str, *,
                        rows: int = 6, cols: int = 5, pairs: int = 8, steps: int = 10
                        ) -> list[str]:
  """figure2.png and figure3.png of the generator a run is judged by (its EMA when kept)."""
  train = dataset.train.astype(np.float32) / 255.0
  z = sample_latent(gan, jax.random.fold_in(root, 5), (rows * cols,))
  grid, _ = nearest_neighbour_grid(generate(gan, state, z), train, dataset.image_shape,
                                   rows=rows, cols=cols)
  fig2 = os.path.join(workdir, "figure2.png")
  pictures.save_png(fig2, _mark_last_column(grid, cols + 1))
  ends = sample_latent(gan, jax.random.fold_in(root, 6), (2, pairs))
  path = interpolations(gan, state, ends[0], ends[1], steps=steps)
  fig3 = os.path.join(workdir, "figure3.png")
  pictures.save_png(fig3, pictures.image_grid(path.reshape(pairs * steps, -1),
                                                dataset.image_shape, rows=pairs, cols=steps))
  return [fig2, fig3]


def _mark_last_column(grid: np.ndarray, cols: int, pad: int = 2) -> np.ndarray:
  """The grid in RGB with the gap before its last column (the training images) in yellow."""
  out = np.repeat(grid[..., :1], 3, axis=2) if grid.shape[2] == 1 else grid.copy()
  x = (cols - 1) * ((out.shape[1] - pad) // cols)  # the gap left of the last column
  out[:, x:x + pad] = (255, 220, 0)
  return out
