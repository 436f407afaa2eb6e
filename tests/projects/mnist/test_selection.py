"""Model selection on validation (checkpoints/best) and the paper's Figures 2 and 3."""

import json

import jax
import ml_collections
import numpy as np
import pytest

from benchmarks.common import load_config  # noqa: E402
from gan_jax.run import build, checkpoint, experiment as experiment_lib, train
from gan_jax.run.selection import Selection, replay_selection
from gan_jax.state import init_state
from projects.mnist import data as data_lib, figures, report
from projects.mnist.experiment import MNIST


def synthetic_mnist(test_value=np.nan):
  """MNIST-shaped splits of random bytes; the test split is ``test_value`` everywhere."""
  rs = np.random.RandomState(0)
  byte = lambda n: rs.randint(0, 256, (n, 784)).astype(np.uint8)
  labels = lambda n: rs.randint(0, 10, n)
  return data_lib.Dataset(train=byte(600), validation=byte(1300),
                          test=np.full((50, 784), test_value, np.float32),
                          train_labels=labels(600), validation_labels=labels(1300),
                          test_labels=labels(50), image_shape=(28, 28, 1))


def tiny_config(steps):
  config = load_config("experiments/mnist.py", "smoke")
  config.num_train_steps, config.batch_size = steps, 50
  config.steps_per_call = config.log_every = 25
  config.eval_every = 50
  config.checkpoint_every, config.keep_checkpoints, config.keep_every = 100, 1, 0
  config.model.generator.hidden = (32,)
  config.model.discriminator.hidden = (16, 16)
  config.model.generator.init_scale = config.model.discriminator.init_scale = 0.3
  config.evaluation.classifier_metrics = False
  config.evaluation.num_samples = 300
  config.parallel = "none"
  return config


def rows_of(workdir):
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_selection_never_reads_the_test_split_and_best_survives_retention_and_resume(
    monkeypatch, tmp_path, capsys):
  # The same run on two data sets that differ only in their test split (NaN / zeros).
  monkeypatch.setattr(data_lib, "load", lambda _: synthetic_mnist(0.0))
  zeros = tmp_path / "zeros"
  train.train_and_evaluate(tiny_config(200), str(zeros), MNIST)
  monkeypatch.setattr(data_lib, "load", lambda _: synthetic_mnist(np.nan))
  tmp_path = tmp_path / "nan"
  train.train_and_evaluate(tiny_config(100), str(tmp_path), MNIST)  # then resumed to 200 steps
  train.train_and_evaluate(tiny_config(200), str(tmp_path), MNIST)
  rows = [r for r in rows_of(tmp_path) if "val_parzen_ll" in r]
  assert [r["step"] for r in rows] == list(range(50, 201, 50))
  other = [r for r in rows_of(zeros) if "val_parzen_ll" in r]
  # The test figures differ; every validation figure and the selection are the same.
  assert [r["parzen_ll"] for r in rows] != [r["parzen_ll"] for r in other]
  for key in ("val_parzen_ll", "ema_val_parzen_ll", "selected_step"):
    assert [r.get(key) for r in rows] == [r.get(key) for r in other], key
  # The selection is the best validation score of either generator over the run.
  scores = [(max(r["val_parzen_ll"], r["ema_val_parzen_ll"]), r["step"]) for r in rows]
  best_value, best_step = max(scores)
  assert np.isfinite(best_value)
  best = checkpoint.Checkpointer(str(tmp_path), keep=1, subdir=checkpoint.BEST)
  try:
    assert best.all_steps() == [best_step]
    selected = best.metadata(best_step)["memory"]["selected"]
    assert selected["value"] == pytest.approx(best_value) and selected["step"] == best_step
    assert int(best.restore(None, best_step)["step"]) == best_step  # digest-verified
  finally:
    best.close()
  # Retention kept one regular checkpoint (step 200); best/ is apart from it.
  assert checkpoint.Checkpointer(str(tmp_path)).all_steps() == [200]

  # --mode=eval scores the selected model by default, and the newest on request.
  capsys.readouterr()
  config = tiny_config(200)
  got = MNIST.evaluate_checkpoint(config, str(tmp_path), "best")
  assert got["step"] == best_step
  assert f"model selected on validation (step {best_step}" in capsys.readouterr().out
  assert MNIST.evaluate_checkpoint(config, str(tmp_path), "latest")["step"] == 200
  for name in ("figure2.png", "figure3.png"):
    assert (tmp_path / name).stat().st_size > 1000


def test_nearest_neighbours_match_a_brute_force_search():
  rs = np.random.RandomState(1)
  queries, pool = rs.rand(13, 40).astype(np.float32), rs.rand(257, 40).astype(np.float32)
  pool[100] = queries[3]  # an exact copy is found at distance 0
  index, dist = figures.nearest_neighbours(queries, pool, batch=50)  # 257 = 5 * 50 + 7
  brute = np.sqrt(((queries[:, None, :].astype(np.float64) - pool[None]) ** 2).sum(-1))
  np.testing.assert_array_equal(index, brute.argmin(axis=1))
  np.testing.assert_allclose(dist, brute.min(axis=1), atol=2e-3)
  assert index[3] == 100 and dist[3] < 2e-3


def test_figure_2_puts_each_rows_nearest_training_image_last():
  rs = np.random.RandomState(2)
  train_images = rs.rand(90, 784).astype(np.float32)
  samples = rs.rand(6, 784).astype(np.float32)
  grid, dist = figures.nearest_neighbour_grid(samples, train_images, (28, 28, 1), rows=2, cols=3)
  assert grid.shape == (2 * 30 + 2, 4 * 30 + 2, 1)
  for r in range(2):
    last = samples[r * 3 + 2]
    nearest = np.argmin(((train_images - last) ** 2).sum(1))
    tile = grid[2 + r * 30:2 + r * 30 + 28, 2 + 3 * 30:2 + 3 * 30 + 28, 0]
    np.testing.assert_array_equal(tile, np.round(train_images[nearest].reshape(28, 28) * 255))
    assert dist[r] == pytest.approx(np.linalg.norm(train_images[nearest] - last), rel=1e-4)


def test_figure_3_interpolations_start_and_end_at_g_of_the_two_latent_vectors():
  config = tiny_config(25)
  gan = build.make_gan(config, data_dim=784, batches_per_epoch=10)
  state = init_state(gan, jax.random.key(0), np.zeros((1, 784), np.float32))
  z0, z1 = (jax.random.uniform(jax.random.key(i), (4, 100), minval=-1.7, maxval=1.7)
            for i in (1, 2))
  path = figures.interpolations(gan, state, z0, z1, steps=7)
  assert path.shape == (4, 7, 784)
  np.testing.assert_allclose(path[:, 0], experiment_lib.generate(gan, state, z0), atol=1e-6)
  np.testing.assert_allclose(path[:, -1], experiment_lib.generate(gan, state, z1), atol=1e-6)
  middle = experiment_lib.generate(gan, state, (z0 + z1) / 2)
  assert not np.allclose(path[:, 3], path[:, 0])
  np.testing.assert_allclose(path[:, 3], middle, atol=1e-5)  # 7 points: t = 1/2 is the 4th


def test_the_report_shows_test_figures_of_the_selected_model_only():
  from projects.mnist import report  # pylint: disable=import-outside-toplevel
  rows = [{"step": 500 * e, "epoch": e, "d_loss": 0.5} for e in range(1, 61)]
  for e, val, test, sel in ((20, 100.0, 111.0, "ema"), (40, 90.0, 999.0, None),
                            (60, 120.0, 130.0, "raw")):
    row = rows[e - 1]
    row.update(val_parzen_ll=val - 5, ema_val_parzen_ll=val, parzen_ll=test - 3,
               parzen_ll_stderr=2.0, parzen_sigma=0.2, ema_parzen_ll=test,
               ema_parzen_ll_stderr=2.1, ema_parzen_sigma=0.17)
    if sel:
      row.update(selected_step=row["step"], selected_generator=sel,
                 selected_val_parzen_ll=val if sel == "ema" else val - 5)
  lines = report.table(rows, every_epochs=20).splitlines()
  assert len(lines) == 2 + 3
  assert "| 20 | 95.0 / 100.0 | 10000 (EMA) | 111.0 ± 2.1 | 0.170 |" in lines[2]
  # Epoch 40 scored 999 on test, but was not selected: its test figure is never shown.
  assert "| 40 | 85.0 / 90.0 | 10000 (EMA) | 111.0 ± 2.1 |" in lines[3] and "999" not in lines[3]
  assert "| 60 | 115.0 / 120.0 | 30000 (G) | 127.0 ± 2.0 | 0.200 |" in lines[4]


def test_the_ema_guard_leaves_out_an_ema_worse_than_g_on_the_guard_metric():
  rule = Selection("val_parzen_ll", True, ("val_frechet_distance", False))
  row = {"step": 10, "val_parzen_ll": 100.0, "ema_val_parzen_ll": 150.0,
         "val_frechet_distance": 20.0, "ema_val_frechet_distance": 40.0}
  found, why = rule.candidate(row)
  assert found == (100.0, "raw") and "val_frechet_distance 40 is worse than G's 20" in why
  assert rule._replace(ema_guard=None).candidate(row) == ((150.0, "ema"), "")
  assert rule.candidate({**row, "ema_val_frechet_distance": 20.0}) == ((150.0, "ema"), "")
  # A NaN guard figure leaves the EMA out; a NaN score is never a candidate.
  assert rule.candidate({**row, "ema_val_frechet_distance": float("nan")})[0] == (100.0, "raw")
  assert rule.candidate({**row, "val_parzen_ll": float("nan")})[0] is None
  # Lower-is-better selection, higher-is-better guard.
  fd_rule = Selection("val_frechet_distance", False, ("val_parzen_ll", True))
  assert fd_rule.candidate(row)[0] == (20.0, "raw")
  assert fd_rule.candidate({**row, "ema_val_frechet_distance": 5.0})[0] == (5.0, "ema")


def test_replaying_rows_keeps_the_best_so_far_as_the_driver_does():
  rule = Selection("val_parzen_ll", True, ("val_frechet_distance", False))
  row = lambda step, g, e, fd_g, fd_e: {
      "step": step, "val_parzen_ll": g, "ema_val_parzen_ll": e,
      "val_frechet_distance": fd_g, "ema_val_frechet_distance": fd_e}
  rows = [row(1, 80, 120, 70, 300),  # a blurred EMA: left out, G chosen
          row(2, 130, 210, 30, 80),   # again
          row(3, 140, 200, 20, 19),   # the EMA is no worse: chosen
          row(4, 150, 190, 18, 17),   # below the best so far: kept
          row(5, 160, 205, 15, 14)]
  got = [(b["step"], b["generator"], b["value"]) for b in replay_selection(rows, rule)]
  assert got == [(1, "raw", 80), (2, "raw", 130), (3, "ema", 200), (3, "ema", 200),
                 (5, "ema", 205)]
  unguarded = replay_selection(rows, rule._replace(ema_guard=None))
  assert [b["step"] for b in unguarded] == [1, 2, 2, 2, 2]
  # The report replays the same rule and never names an unselected model's test figures.
  for r in rows:
    r.update(parzen_ll=r["val_parzen_ll"] + 3, parzen_ll_stderr=2.0, parzen_sigma=0.2,
             ema_parzen_ll=r["ema_val_parzen_ll"] + 3, ema_parzen_ll_stderr=2.0,
             ema_parzen_sigma=0.2, epoch=r["step"])
  text = report.table(rows, every_epochs=1, ema_guard="val_frechet_distance")
  assert "| 5 | 160.0 / 205.0 | 5 (EMA) | 208.0 ± 2.0 |" in text
  assert "213.0" not in text and "204.0" not in text  # the blurred EMA's test figures
  assert "| 2 | 130.0 / 210.0 | 2 (G) | 133.0 ± 2.0 |" in text
  assert "| 2 | 130.0 / 210.0 | 2 (EMA) | 213.0 ± 2.0 |" in report.table(rows, 1, "none")


def test_an_fd_difference_within_its_noise_does_not_flip_the_choice_and_a_blur_does():
  """The guard's tolerance (EMA_GUARD_TOLERANCE, the validation FD's spread between draws of
  samples) keeps an EMA whose FD is a noise-level 0.3% worse, and still leaves out a
  blurred one (FD 40 against 5)."""
  from projects.mnist.evaluate import EMA_GUARD_TOLERANCE  # pylint: disable=import-outside-toplevel
  config = ml_collections.ConfigDict({"evaluation": {
      "parzen": True, "classifier_metrics": True, "select_on": "auto", "ema_guard": "auto"}})
  rule = MNIST([config]).selection()
  assert rule.ema_guard == ("val_frechet_distance", False)
  assert rule.ema_guard_tolerance == EMA_GUARD_TOLERANCE > 0
  noise = {"step": 10000, "val_parzen_ll": 77.8, "ema_val_parzen_ll": 143.9,
           "val_frechet_distance": 59.2, "ema_val_frechet_distance": 59.4}
  assert rule.candidate(noise) == ((143.9, "ema"), "")
  # Without the tolerance the same rows flipped to raw G.
  assert rule._replace(ema_guard_tolerance=0.0).candidate(noise)[0] == (77.8, "raw")
  blur = {**noise, "val_frechet_distance": 5.0, "ema_val_frechet_distance": 40.0}
  found, why = rule.candidate(blur)
  assert found == (77.8, "raw") and f"by more than {EMA_GUARD_TOLERANCE:.0%}" in why
  # Just past the tolerance is out; the same holds for a higher-is-better guard.
  edge = 5.0 * (1 + EMA_GUARD_TOLERANCE) * 1.01
  assert rule.candidate({**blur, "ema_val_frechet_distance": edge})[0] == (77.8, "raw")
  up = Selection("val_frechet_distance", False, ("val_parzen_ll", True), 0.05)
  sharper = {**noise, "ema_val_frechet_distance": 50.0}
  assert up.candidate({**sharper, "ema_val_parzen_ll": 74.0})[0] == (50.0, "ema")
  assert up.candidate({**sharper, "ema_val_parzen_ll": 70.0})[0] == (59.2, "raw")


def test_a_denser_early_cadence_evaluates_and_checkpoints_there_and_norms_wait_for_logs(
    monkeypatch, tmp_path):
  monkeypatch.setattr(data_lib, "load", lambda _: synthetic_mnist(0.0))
  config = tiny_config(200)
  config.steps_per_call, config.log_every, config.eval_every = 100, 100, 100
  config.eval_early_every, config.eval_early_until = 25, 50
  assert train.chunk_length(config) == 25
  train.train_and_evaluate(config, str(tmp_path), MNIST)
  rows = rows_of(tmp_path)
  assert [r["step"] for r in rows if "val_parzen_ll" in r] == [25, 50, 100, 200]
  assert [r["step"] for r in rows if "g_grad_norm" in r] == [100, 200]
  assert all(np.isfinite(r["g_grad_norm"]) and r["g_grad_norm"] > 0
             for r in rows if "g_grad_norm" in r)
  selected = [r["selected_step"] for r in rows if "selected_step" in r]
  assert selected[0] == 25 and set(selected) <= {25, 50, 100, 200}  # early evals select too
  best = checkpoint.Checkpointer(str(tmp_path), subdir=checkpoint.BEST, read_only=True)
  assert best.latest_step() == selected[-1]
  best.close()
