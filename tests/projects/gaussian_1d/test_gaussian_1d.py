"""Proposition 1 and Theorem 1 on a 1-D Gaussian toy (experiments/gaussian_1d.py)."""

import json

import jax
import numpy as np
from PIL import Image

import gan_jax
from benchmarks.common import load_config  # noqa: E402
from gan_jax.run import train
from projects.gaussian_1d import experiment as toy

MEAN, STD = 2.0, 0.5  # p_data = N(2, 0.5^2)


def sample_data(key, n):
  return MEAN + STD * jax.random.normal(key, (n, 1))


def test_gaussian_1d_experiment_shows_proposition_1_and_theorem_1(xla_optimized, tmp_path):
  """experiments/gaussian_1d.py as configured: (a) D -> D* and V = -log 4 + 2 JSD with G
  fixed; (b) both trained: JSD -> 0 and D -> 1/2; (c) the Figure-1 PNG."""
  config = load_config("experiments/gaussian_1d.py")
  # The driver every experiment runs through.
  train.train_and_evaluate(config, str(tmp_path), toy.Gaussian1D)
  res = json.loads((tmp_path / "results.json").read_text())
  a, b = res["part_a"], res["part_b"]
  assert a["max_abs_d_minus_d_star"] <= 0.05  # Proposition 1, where p_data + p_g > 0.05
  assert a["abs_value_minus_c_of_g"] <= 0.02  # V(D*, G) = C(G), JSD by integration
  assert a["c_of_g"] > -np.log(4) + 0.5  # G starts far from the data
  assert b["jsd"] < 0.01 and b["jsd"] < res["initial_jsd"] / 50  # Theorem 1: JSD -> 0
  assert b["max_abs_d_minus_half"] < 0.1  # D -> 1/2 on the data's support
  assert abs(b["g_shift"] - MEAN) < 0.1 and abs(abs(b["g_scale"]) - STD) < 0.05
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert rows[-1]["step"] == config.num_train_steps and rows[-1]["jsd"] == b["jsd"]
  assert [r["step"] for r in rows] == list(range(100, config.num_train_steps + 1, 100))
  assert rows[-1]["jsd"] < rows[0]["jsd"] and "d_loss" in rows[-1]
  for name in ("figure1.png", "curves.png"):
    with Image.open(tmp_path / name) as img:
      assert img.format == "PNG" and img.size[0] > 600
  # Like every experiment: its config, a verified checkpoint and TensorBoard events.
  assert json.loads((tmp_path / "config.json").read_text())["experiment"] == "gaussian_1d"
  assert (tmp_path / "checkpoints" / str(config.num_train_steps)).is_dir()
  assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_affine_generator_density_matches_its_samples():
  g = gan_jax.MLPGenerator(output_dim=1, hidden=(), output_activation="linear")
  params = toy.affine_generator_params(-1.5, 0.7)
  z = jax.random.normal(jax.random.key(0), (200_000, 1))
  x = np.asarray(g.apply({"params": params}, z))[:, 0]
  assert abs(x.mean() - 0.7) < 0.02 and abs(x.std() - 1.5) < 0.02
  grid = np.linspace(-5, 5, 11)
  np.testing.assert_allclose(toy.affine_generator_density(params, grid),
                             toy.gaussian_pdf(grid, 0.7, 1.5))
