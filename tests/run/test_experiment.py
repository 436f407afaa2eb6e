"""A new experiment is one file: a user's Experiment subclass, named by its config, gets
the driver's schema check, checkpoints, exact resume, sweeps and logs."""

import json
import sys

import ml_collections
import numpy as np
import pytest
from conftest import ROOT, assert_trees_equal

import projects
from gan_jax.errors import UserError
from gan_jax.run import checkpoint, sweep, train

sys.path.insert(0, str(ROOT / "tests" / "helpers"))
from segment_experiment import Segment  # noqa: E402


def segment_config(**changes):
  c = ml_collections.ConfigDict()
  c.experiment = "segment_experiment:Segment"
  c.seed, c.batch_size, c.num_train_steps = 0, 64, 60
  c.log_every, c.eval_every, c.checkpoint_every, c.steps_per_call = 20, 20, 20, 20
  c.parallel, c.num_eval_samples, c.sweep = "none", 500, ()
  c.model = ml_collections.ConfigDict(dict(
      latent_dim=2, latent_dist="normal",
      generator=dict(hidden=(16,), activation="relu", output_activation="linear",
                     init_scale=0.5),
      discriminator=dict(hidden=(16,), pieces=2, activation="maxout", init_scale=0.5,
                         input_keep=1.0, hidden_keep=1.0)))
  c.optimizer = ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-3, b1=0.5,
                                               b2=0.999))
  c.gan = ml_collections.ConfigDict(dict(g_loss="non_saturating", real_label=1.0, k=1,
                                         update_rule="alternating"))
  c.update(changes)
  return c


def rows(workdir):
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_a_users_experiment_trains_evaluates_checkpoints_and_resumes_exactly(tmp_path):
  whole = train.train_and_evaluate(segment_config(), str(tmp_path / "whole"), Segment)
  assert int(whole.step) == 60
  logged = rows(tmp_path / "whole")
  assert [r["step"] for r in logged] == [20, 40, 60]
  assert all(np.isfinite(r["mean_distance"]) and "d_loss" in r for r in logged)
  # Half the run, then the same workdir again with the full length: bitwise the same end.
  train.train_and_evaluate(segment_config(num_train_steps=40), str(tmp_path / "split"), Segment)
  resumed = train.train_and_evaluate(segment_config(), str(tmp_path / "split"), Segment)
  assert_trees_equal(checkpoint.host_copy(resumed), checkpoint.host_copy(whole))
  assert [r["step"] for r in rows(tmp_path / "split")] == [20, 40, 60]


@pytest.mark.parametrize("every,drawn", [(0.0, [20, 40, 60, 80]), (1e9, [20, 80])])
def test_curves_are_drawn_at_most_every_plot_every_seconds_and_at_the_end(tmp_path, every,
                                                                          drawn):
  seen = []

  class Plotted(Segment):
    def plot(self, ctx):
      seen.append(ctx.rows[-1]["step"])

  train.train_and_evaluate(segment_config(num_train_steps=80, plot_every_seconds=every),
                           str(tmp_path), Plotted)
  assert seen == drawn
  assert [r["step"] for r in rows(tmp_path)] == [20, 40, 60, 80]  # every row recorded


def test_a_users_experiment_sweeps_and_its_fields_are_checked(tmp_path):
  config = segment_config(sweep=sweep.product({"seed": (0, 1)}))
  finals = train.train_sweep(config, str(tmp_path), Segment)
  assert [r["replica"] for r in finals] == ["seed=0", "seed=1"]
  assert finals[0]["mean_distance"] != finals[1]["mean_distance"]
  assert (tmp_path / "sweep.csv").read_text().splitlines()[0].startswith("replica,seed,")
  # Its own schema: a misspelt field of the experiment is refused by name.
  bad = segment_config()
  bad.num_eval_sample = 5
  with pytest.raises(UserError, match="num_eval_sample is not a field.*num_eval_samples"):
    train.validate_experiment(bad, Segment)


def test_an_unknown_experiment_is_refused_naming_the_choices():
  with pytest.raises(UserError, match="'ring_2d'.*package.module:ClassName"):
    projects.find("segment_experiment:Nope")
