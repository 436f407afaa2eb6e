"""The paper's CIFAR-10 runs (Figure 2 c, d; configs/cifar10_*.py): its players on
contrast-normalised CIFAR-10, trained by the shared driver.

The paper reports no number for CIFAR-10, only samples, and this project measures none:
each evaluation writes a grid of fixed-noise samples whose last column is, as in the
paper's Figure 2, the training image nearest (in the normalised pixels) to the sample
beside it (``samples/step_N.png``).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from gan_jax import kernels, state as state_lib
from gan_jax.errors import UserError
from gan_jax.loop import ArraySource
from gan_jax.run import pictures, schema
from gan_jax.run.experiment import Context, Data, Experiment
from gan_jax.run.schema import Field
from gan_jax.state import GAN, GANState, sample_latent
from projects.cifar10 import data as data_lib, model

ROWS, COLS = 8, 7  # sample grids: ROWS x COLS samples, then each row's nearest neighbour

FIELDS: dict[str, Any] = {
    "data": {
        "name": schema.choice(("cifar10",)),
        "manual_dir": Field("str", default=""),
        "data_dir": Field("str", default=""),
        # False: accept an archive that is not CIFAR's published one (a test's small copy).
        "verify_checksum": Field("bool", default=True),
    },
    "model": {
        "name": schema.choice(("fully_connected", "convolutional")),
        "latent_dim": schema.positive(),
        "latent_dist": schema.choice(state_lib.LATENT_DISTS, default="uniform"),
        "dtype": schema.choice(kernels.DTYPE_CHOICES, default="float32"),
        "generator": {
            "hidden": Field("ints"),
            "activations": Field("str"),  # one per hidden layer, comma-separated
            "deconv": Field("ints", default=()),  # (height, width, channels, kernel, stride)
            "init_scale": schema.positive("float"),
            "output_scale": schema.positive("float"),
        },
        "discriminator": {
            "hidden": Field("ints"),
            "pieces": schema.positive(),
            "conv_channels": Field("ints", default=()),
            "init_scale": schema.positive("float"),
            "input_keep": schema.unit(),
            "hidden_keep": schema.unit(),
        },
    },
}


class CIFAR10(Experiment):
  fields = FIELDS
  resumable = ("data.manual_dir", "data.data_dir", "data.verify_checksum")

  @classmethod
  def check(cls, config, num_devices) -> None:
    super().check(config, num_devices)
    g, d = config.model.generator, config.model.discriminator
    acts = g.activations.split(",")
    if len(acts) != len(g.hidden):
      raise UserError(f"config.model.generator.activations is {g.activations!r}: "
                             f"{len(acts)} activations for {len(g.hidden)} hidden layers "
                             f"{tuple(g.hidden)}; give one per layer, comma-separated.")
    conv = config.model.name == "convolutional"
    if conv and (len(g.get("deconv", ())) != 5 or len(d.get("conv_channels", ())) != 3):
      raise UserError("The convolutional CIFAR-10 model needs "
                             "model.generator.deconv = (height, width, channels, kernel, "
                             "stride) and model.discriminator.conv_channels with three "
                             "widths; see projects/cifar10/configs/cifar10_convolutional.py.")

  def load_data(self) -> Data:
    cfg = self.config.data
    self.dataset = data_lib.load_cifar10(manual_dir=cfg.manual_dir, data_dir=cfg.data_dir,
                                         verify_checksum=cfg.get("verify_checksum", True))
    self.train = data_lib.gcn(self.dataset.train)
    n = len(self.train)
    if n < self.config.batch_size:
      raise UserError(f"The CIFAR-10 training split holds {n} images, fewer than "
                             f"config.batch_size={self.config.batch_size}; lower the batch "
                             f"or use the whole archive.")
    return Data(source=ArraySource(n), dim=self.train.shape[1], array=self.train,
                batches_per_epoch=n // self.config.batch_size)

  def make_gan(self, data: Data) -> GAN:
    return model.make_gan(self.configs, len(self.train))

  def initial_state(self, ctx: Context) -> GANState:
    return model.initial_state(ctx.config, ctx.gan)

  def evaluate(self, ctx: Context) -> dict[str, Any]:
    z = sample_latent(ctx.gan, jax.random.fold_in(ctx.root, 2), (ROWS * COLS,))
    samples = ctx.generate(z)
    grid = figure_grid(samples, self.train)
    os.makedirs(ctx.out.path("samples"), exist_ok=True)
    pictures.save_png(ctx.out.path("samples", f"step_{ctx.step:07d}.png"), grid)
    ctx.out.image("samples", grid, ctx.step)
    return {}

  def plot(self, ctx: Context) -> None:
    pictures.plot_curves([r for r in ctx.rows if "d_loss" in r], ctx.out.path("curves.png"))


def nearest(samples: np.ndarray, train: np.ndarray, chunk: int = 4096) -> np.ndarray:
  """The index of each sample's nearest training image (squared L2 in the normalised
  pixels), over the training set in chunks."""
  s = np.asarray(samples, np.float32)
  best, where = np.full(len(s), np.inf), np.zeros(len(s), np.int64)
  s_sq = (s ** 2).sum(1)
  for i in range(0, len(train), chunk):
    t = np.asarray(train[i:i + chunk], np.float32)
    d = s_sq[:, None] - 2.0 * s @ t.T + (t ** 2).sum(1)[None, :]
    j = d.argmin(1)
    better = d[np.arange(len(s)), j] < best
    best[better], where[better] = d[np.arange(len(s)), j][better], i + j[better]
  return where


def figure_grid(samples: np.ndarray, train: np.ndarray) -> np.ndarray:
  """ROWS x (COLS + 1) tiles: the samples, and at the end of each row the training image
  nearest to the row's last sample (Figure 2), each shown by its own range."""
  rows = samples[:ROWS * COLS].reshape(ROWS, COLS, -1)
  near = train[nearest(rows[:, -1], train)]
  tiles = np.concatenate([rows, near[:, None]], axis=1).reshape(ROWS * (COLS + 1), -1)
  return pictures.image_grid(data_lib.for_display(tiles), data_lib.IMAGE_SHAPE, rows=ROWS,
                             cols=COLS + 1)
