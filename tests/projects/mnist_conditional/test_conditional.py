"""The conditional MNIST project: the label reaches both players, per-class sampling, the
label-aware metrics on real images, and the config end to end."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from benchmarks.common import load_config
from projects.mnist_conditional import evaluate, model

pytestmark = pytest.mark.xdist_group("mnist_classifier")
ROOT = pathlib.Path(__file__).resolve().parents[3]


def small_players():
  g = model.ConditionalGenerator(output_dim=784, z_hidden=8, cond_hidden=8, joint_hidden=16)
  d = model.ConditionalDiscriminator(x_hidden=8, cond_hidden=4, joint_hidden=8, init_scale=0.5)
  return g, d


def test_the_label_reaches_both_players_and_a_bad_label_is_named():
  g, d = small_players()
  z = jnp.ones((2, 100)) * 0.3
  labels = jnp.array([3, 7], jnp.int32)
  g_vars = g.init(jax.random.key(0), z, cond=labels)
  same_z = g.apply(g_vars, jnp.repeat(z[:1], 2, 0), cond=labels)
  assert same_z.shape == (2, 784) and not np.allclose(same_z[0], same_z[1])
  d_vars = d.init({"params": jax.random.key(1)}, same_z, cond=labels)
  out = d.apply(d_vars, jnp.repeat(same_z[:1], 2, 0), cond=labels)
  assert out.shape == (2,) and not np.isclose(out[0], out[1])
  with pytest.raises(ValueError, match=r"cond has shape \(2, 10\).*integer labels \[B\]"):
    g.apply(g_vars, z, cond=jax.nn.one_hot(labels, 10))
  for bad in ([3, 10], [-1, 2]):  # one_hot would make these an all-zero, unconditional row
    with pytest.raises(ValueError, match=r"labels in \[0, 10\)"):
      d.apply(d_vars, same_z, cond=jnp.array(bad, jnp.int32))


def test_grids_have_one_row_per_digit_and_the_same_noise_down_each_column():
  from conftest import tiny_gan  # pylint: disable=import-outside-toplevel
  z, labels = evaluate.grid_inputs(tiny_gan(), jax.random.key(0), cols=4)
  assert labels.tolist() == [d for d in range(10) for _ in range(4)]
  np.testing.assert_array_equal(z[:4], z[4:8])
  assert evaluate.even_labels(25).tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_real_digits_score_as_the_labels_they_are_asked_for(mnist, mnist_classifier):
  """Test images standing in for samples: shown in label order, the classifier reads the
  labels asked for and each digit's FD is small; under the wrong labels, neither."""
  _, cache = mnist_classifier
  config = load_config("experiments/mnist_conditional.py", "smoke")
  config.evaluation.classifier_dir = cache
  config.evaluation.parzen = False
  ev = evaluate.ConditionalEvaluator(config, mnist)
  by_class = [np.flatnonzero(mnist.validation_labels == c) for c in range(10)]
  order = np.array([by_class[c][i // 10] for i, c in enumerate(ev.labels)])
  right = ev.score(mnist.validation[order] / 255.0)
  # 200 images a digit: an FD of a few units is this sample size's bias.
  assert right["label_accuracy"] >= 0.98 and right["class_fd_mean"] < 20.0
  shifted = np.array([by_class[(c + 1) % 10][i // 10] for i, c in enumerate(ev.labels)])
  wrong = ev.score(mnist.validation[shifted] / 255.0)
  assert wrong["label_accuracy"] < 0.05 and wrong["class_fd_mean"] > 5 * right["class_fd_mean"], (
      right, wrong)
  assert abs(wrong["frechet_distance"] - right["frechet_distance"]) < 0.5  # the same images


def test_the_conditional_config_trains_selects_and_evaluates_end_to_end(tfds_dir,
                                                                        mnist_classifier,
                                                                        tmp_path):
  """launch.py on the real data and players: (image, label) minibatches, grids with one row
  per digit, the label-aware metrics in the rows, and --mode=eval's class grid."""
  from conftest import MNIST_DIR  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path / "run")
  flags = ["--config=experiments/mnist_conditional.py:smoke", f"--workdir={workdir}",
           f"--config.data.manual_dir={MNIST_DIR}", f"--config.data.data_dir={tfds_dir}",
           f"--config.evaluation.classifier_dir={mnist_classifier[1]}",
           "--config.num_train_steps=50", "--config.eval_every=50",
           "--config.checkpoint_every=50", "--config.steps_per_call=25"]
  run = lambda *extra: subprocess.run([sys.executable, "launch.py", *flags, *extra], cwd=ROOT,  # noqa: E731
                                      capture_output=True, text=True, timeout=600)
  trained = run()
  assert trained.returncode == 0, trained.stderr[-3000:]
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  evals = [r for r in rows if "label_accuracy" in r]
  assert evals and {"ema_label_accuracy", "class_fd_mean", "val_parzen_ll"} <= set(evals[-1])
  assert 0.0 <= evals[-1]["label_accuracy"] <= 1.0
  with Image.open(os.path.join(workdir, "samples", "step_0000050.png")) as grid:
    assert grid.size == (10 * 28 + 11 * 2,) * 2
  scored = run("--mode=eval")
  assert scored.returncode == 0, scored.stderr[-3000:]
  with Image.open(os.path.join(workdir, "class_grid.png")) as grid:
    assert grid.size == (16 * 28 + 17 * 2, 10 * 28 + 11 * 2)
  with open(os.path.join(workdir, "eval.json")) as f:
    scores = json.load(f)
  row = f"| label accuracy (classifier reads the label asked for) | {scores['label_accuracy']:.4f}"
  assert row in scored.stdout
