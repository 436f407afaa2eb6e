"""A user's own experiment in one file: G learns points spread along a line segment.

Named by a config as ``experiment = "segment_experiment:Segment"`` (this folder on
sys.path); everything else (checkpoints, resume, logs, sweeps) is the driver's.
"""

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.loop import SamplerSource
from gan_jax.run import build, experiment, schema
from gan_jax.state import init_state, sample_latent


def sample_segment(key, n):
  """Uniform points on the segment from (-1, 0) to (1, 0), with a little noise."""
  t_key, noise_key = jax.random.split(key)
  t = jax.random.uniform(t_key, (n, 1), minval=-1.0, maxval=1.0)
  return jnp.concatenate([t, jnp.zeros_like(t)], axis=1) + 0.01 * jax.random.normal(
      noise_key, (n, 2))


class Segment(experiment.Experiment):
  fields = {"model": {"latent_dim": schema.positive(), "latent_dist": schema.choice(
                ("normal", "uniform"), default="normal"), **schema.MLP_PLAYERS},
            "num_eval_samples": schema.positive()}
  resumable = ("num_eval_samples",)

  def load_data(self):
    return experiment.Data(source=SamplerSource(sample_segment), dim=2)

  def make_gan(self, data):
    return build.make_group_gan(self.configs, data_dim=2, batches_per_epoch=1)

  def initial_state(self, ctx):
    return init_state(ctx.gan, jax.random.fold_in(ctx.root, 0), jnp.zeros((1, 2)),
                      hparams=build.replica_hparams(ctx.config))

  def evaluate(self, ctx):
    z = sample_latent(ctx.gan, jax.random.fold_in(ctx.root, 3), (ctx.config.num_eval_samples,))
    x = ctx.generate(z)
    # Distance of each sample from the segment, and how much of its length the samples span.
    dist = np.hypot(np.maximum(np.abs(x[:, 0]) - 1.0, 0.0), x[:, 1])
    return {"mean_distance": float(dist.mean()),
            "spread": float(np.ptp(np.clip(x[:, 0], -1.0, 1.0)))}
