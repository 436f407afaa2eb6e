"""Sweeps: the spec, the grouping into vmapped programs, and replicas equal to lone runs."""

import json
import os
import sys

import jax
import numpy as np
import pytest
from conftest import (
  ROOT,  # noqa: E402
  assert_trees_close,
)

from benchmarks.common import load_config  # noqa: E402
from gan_jax.errors import UserError
from gan_jax.run import sweep, train
from projects.ring_2d.experiment import Ring2D


def ring_config(**changes):
  config = load_config("experiments/ring_2d.py", "smoke")
  config.sweep = ()
  config.num_train_steps, config.log_every, config.early_steps = 20, 10, 10
  config.eval_every = config.checkpoint_every = 10
  config.d_warmup_steps, config.num_eval_samples, config.batch_size = 0, 200, 32
  config.model.generator.hidden = config.model.discriminator.hidden = (16, 16)
  for key, value in changes.items():
    *path, leaf = key.split(".")
    section = config
    for p in path:
      section = section[p]
    section[leaf] = value
  return config


def test_a_product_expands_to_replicas_with_typed_values():
  config = ring_config(sweep=sweep.product({"seed": range(3),
                                            "optimizer.learning_rate": (1e-3, 2e-3),
                                            "gan.g_loss": ("minimax",)}))
  replicas = sweep.expand(config)
  assert len(replicas) == 6
  assert replicas[1].name == "seed=0,learning_rate=0.002,g_loss=minimax"
  assert replicas[5].values == {"seed": 2, "optimizer.learning_rate": 0.002,
                                "gan.g_loss": "minimax"}
  c = replicas[5].config
  assert (c.seed, c.optimizer.learning_rate, c.gan.g_loss, c.sweep) == (2, 0.002, "minimax", ())
  lr = sweep.expand(ring_config(sweep=({"optimizer.learning_rate": 1},)))[0]
  assert isinstance(lr.config.optimizer.learning_rate, float)
  # No sweep: one replica, the config itself.
  (only,) = sweep.expand(ring_config())
  assert only.name == "" and only.config.seed == config.seed


def test_the_command_line_replaces_the_files_runs_with_a_tuple_literal(tmp_path):
  import subprocess  # pylint: disable=import-outside-toplevel
  result = subprocess.run(
      [sys.executable, "-c", "from absl import app, flags\n"
       "from ml_collections import config_flags\n"
       "c = config_flags.DEFINE_config_file('config', lock_config=True)\n"
       "app.run(lambda _: print(repr(c.value.sweep)))",
       "--config=experiments/ring_2d.py",
       "--config.sweep=({'seed': 1, 'gan.g_loss': 'minimax'}, {'seed': 2})"],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == "({'seed': 1, 'gan.g_loss': 'minimax'}, {'seed': 2})"


@pytest.mark.parametrize("entries, message", [
    (({"gan.g_los": "minimax"},), "which this config does not have"),
    (({"seed": "a"},), "holds a int"),
    ("seed=0:4", "tuple of dicts"),
    (({"seed": 1}, {"seed": 1}), "twice"),
])
def test_bad_sweeps_are_refused_by_name(entries, message):
  config = ring_config()
  with config.ignore_type():  # a string where runs belong, as an old config file had it
    config.sweep = entries
  with pytest.raises(UserError, match=message):
    sweep.expand(config)


def test_replicas_that_change_shapes_get_programs_of_their_own():
  config = ring_config(sweep=sweep.product({"model.generator.hidden": ((16, 16), (8,)),
                                            "seed": (0, 1), "gan.real_label": (1.0, 0.9)}))
  groups = sweep.groups(sweep.expand(config))
  assert [len(g) for g in groups] == [4, 4]
  assert {r.config.model.generator.hidden for r in groups[1]} == {(8,)}
  ks = sweep.expand(ring_config(sweep=({"gan.k": 1}, {"gan.k": 2})))
  assert sweep.groups(ks)[1][0].config.gan.k == 2


def rows_of(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_a_vmapped_sweep_trains_each_replica_as_it_would_train_alone(tmp_path):
  """Two replicas differing in seed, G loss, learning rate and label smoothing."""
  a = ring_config(seed=0, **{"gan.g_loss": "minimax"})
  b = ring_config(seed=1, **{"gan.g_loss": "non_saturating", "optimizer.learning_rate": 3e-3,
                             "gan.real_label": 0.9})
  group = [str(tmp_path / "a"), str(tmp_path / "b")]
  states = train.train_group(Ring2D, [a, b], group)
  for config, workdir, state in zip((a, b), group, states, strict=True):
    alone_dir = workdir + "_alone"
    (alone,) = train.train_group(Ring2D, [config], [alone_dir])
    assert int(state.step) == int(alone.step) == 20
    assert_trees_close(state.g_params, alone.g_params, rtol=2e-4, atol=2e-6)
    assert_trees_close(state.d_params, alone.d_params, rtol=2e-4, atol=2e-6)
    np.testing.assert_allclose([r["g_loss"] for r in rows_of(workdir)],
                               [r["g_loss"] for r in rows_of(alone_dir)], rtol=2e-4, atol=1e-6)
  # And the two replicas did train differently.
  diff = jax.tree.map(lambda x, y: float(np.max(np.abs(x - y))), states[0].g_params,
                      states[1].g_params)
  assert max(jax.tree.leaves(diff)) > 1e-2


def test_bfloat16_compute_trains_without_nan_and_keeps_float32_parameters(tmp_path):
  config = ring_config(**{"model.dtype": "bfloat16", "num_train_steps": 300,
                          "log_every": 50, "eval_every": 150, "checkpoint_every": 150})
  config.model.generator.hidden = config.model.discriminator.hidden = (32, 32)
  (state,) = train.train_group(Ring2D, [config], [str(tmp_path)])
  rows = rows_of(tmp_path)
  assert [r["step"] for r in rows] == list(range(50, 301, 50))
  for row in rows:
    for name in ("d_loss", "g_loss", "d_grad_norm", "g_grad_norm"):
      assert np.isfinite(row[name]), (name, row)
  leaves = jax.tree.leaves((state.g, state.d, state.ema_params))
  assert all(x.dtype in (np.float32, np.int32) for x in leaves if hasattr(x, "dtype"))
  results = json.loads((tmp_path / "results.json").read_text())
  assert 0 <= results["high_quality_share"] <= 1
  samples = np.load(tmp_path / "final_samples.npy")
  assert np.all(np.isfinite(samples)) and samples.dtype == np.float32
  # D learnt something: its loss left log 2 (chance) in the course of training.
  assert abs(rows[-1]["d_loss"] - np.log(2)) > 0.01


def test_losses_and_nonzero_ema_decays_share_a_program_but_an_ema_off_does_not():
  config = load_config("experiments/mnist.py", "smoke")
  config.sweep = sweep.product({"gan.ema_decay": (0.999, 0.9999), "gan.d_loss": ("bce", "hinge"),
                                "gan.g_loss": ("hinge", "minimax")})
  assert [len(g) for g in sweep.groups(sweep.expand(config))] == [8]
  config.sweep = sweep.product({"gan.ema_decay": (0.0, 0.999), "seed": range(2)})
  grouped = sweep.groups(sweep.expand(config))
  assert [[r.config.gan.ema_decay for r in g] for g in grouped] == [[0.0, 0.0], [0.999, 0.999]]
