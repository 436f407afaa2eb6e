"""Evaluate a trained generator: the paper's Parzen-window log-likelihood on MNIST."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from gan_jax import build, checkpoint, data as data_lib
from gan_jax.errors import UserError
from gan_jax.evaluation import parzen
from gan_jax.state import GAN, GANState, sample_latent

NUM_SAMPLES = 10_000  # the authors' protocol: 10k kernel centres,
NUM_VALIDATION = 1_000  # sigma chosen on the first 1k validation images,
# and the whole test set for the reported mean.


@functools.partial(jax.jit, static_argnums=0)
def _apply_generator(gan: GAN, g_params: Any, z: jax.Array) -> jax.Array:
  return gan.generator.apply({"params": g_params}, z)


def generate(gan: GAN, g_params: Any, z: jax.Array, batch: int = 2_000) -> np.ndarray:
  """G(z) for noise ``z`` [n, latent], as a float32 NumPy array [n, features]."""
  return np.concatenate([np.asarray(_apply_generator(gan, g_params, z[i:i + batch]))
                         for i in range(0, len(z), batch)])


def evaluate_state(gan: GAN, state: GANState, dataset: data_lib.Dataset, key: jax.Array
                   ) -> dict[str, Any]:
  """The evaluation metrics of ``state``'s generator, as a flat dict of numbers."""
  samples = generate(gan, state.g_params, sample_latent(gan, key, (NUM_SAMPLES,)))
  res = parzen.parzen_evaluate(samples, dataset.validation[:NUM_VALIDATION] / 255.0,
                               dataset.test / 255.0)
  return {"step": int(state.step), "parzen_ll": res.mean, "parzen_ll_stderr": res.stderr,
          "parzen_sigma": res.sigma}


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Evaluate the newest checkpoint in ``workdir``; print a table and write eval.json."""
  dataset = data_lib.load(config.data)
  gan, root, like = build.make_gan_and_state(config, dataset)
  state = checkpoint.restore_latest(workdir, like)
  if state is None:
    raise UserError(f"There is no checkpoint in {os.path.join(workdir, 'checkpoints')}; train "
                    f"first (python launch.py --config=... --workdir={workdir}) or pass the "
                    f"--workdir of a finished run.")
  result = evaluate_state(gan, state, dataset, jax.random.fold_in(root, 3))
  with open(os.path.join(workdir, "eval.json"), "w") as f:
    json.dump(result, f, indent=2)
  print(f"| workdir | step | Parzen log-likelihood (nats) | sigma |\n|---|---|---|---|\n"
        f"| {workdir} | {result['step']} | {result['parzen_ll']:.1f} ± "
        f"{result['parzen_ll_stderr']:.1f} | {result['parzen_sigma']:.3f} |", flush=True)
  return result
