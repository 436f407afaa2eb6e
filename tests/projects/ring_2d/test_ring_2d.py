"""The 2-D ring experiment: its mode statistics, and the minimax loss's early saturation."""

import csv
import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import ROOT  # noqa: E402
from PIL import Image

from benchmarks.common import load_config  # noqa: E402
from gan_jax.run import train
from projects.ring_2d import experiment as ring


def test_samples_of_the_true_mixture_cover_every_mode():
  sample = ring.ring_sampler(8, 2.0, 0.02)
  x = np.asarray(sample(jax.random.key(0), 20_000))
  stats = ring.mode_statistics(x, ring.ring_means(8, 2.0), 0.02)
  assert stats["modes_covered"] == 8 and sum(stats["mode_counts"]) <= 20_000
  # Within 3 std of a 2-d isotropic Gaussian's centre: 1 - exp(-9/2) = 0.9889.
  assert stats["high_quality_share"] == pytest.approx(1 - np.exp(-4.5), abs=0.003)
  shares = np.array(stats["mode_counts"]) / 20_000
  assert np.all(np.abs(shares - 0.9889 / 8) < 0.01)


def test_collapsed_and_off_ring_samples_are_counted_as_such():
  means = ring.ring_means(8, 2.0)
  np.testing.assert_allclose(np.linalg.norm(means, axis=1), 2.0)
  one_mode = means[3] + 0.02 * np.random.RandomState(0).randn(1000, 2)
  stats = ring.mode_statistics(one_mode, means, 0.02)
  assert stats["modes_covered"] == 1 and np.argmax(stats["mode_counts"]) == 3
  # Half the samples at the centre (no mode's), the rest split over two modes, one
  # of them below the 4% share.
  mixed = np.concatenate([np.zeros((500, 2)), np.repeat(means[[0]], 470, 0),
                          np.repeat(means[[5]], 30, 0)])
  stats = ring.mode_statistics(mixed, means, 0.02)
  assert stats["high_quality_share"] == pytest.approx(0.5)
  assert stats["modes_covered"] == 1 and stats["mode_counts"][5] == 30


def test_minimax_loss_saturates_where_the_non_saturating_one_does_not(tmp_path):
  """After D learns to reject the initial G, minimax G gradients start far smaller."""
  config = load_config("experiments/ring_2d.py", "smoke")
  train.train_sweep(config, str(tmp_path), ring.Ring2D)  # both G losses: a sweep of two replicas
  res = json.loads((tmp_path / "results.json").read_text())
  mm, ns = res["g_loss=minimax"], res["g_loss=non_saturating"]
  assert mm["early_d_fake"] < 0.5  # D rejects G's samples at the start
  assert res["first_g_grad_norm_ratio_ns_over_minimax"] > 20
  assert ns["early_g_grad_norm"] > mm["early_g_grad_norm"]
  for r in (mm, ns):
    assert 0 <= r["modes_covered"] <= 8 and 0 <= r["high_quality_share"] <= 1
  assert json.loads((tmp_path / "results.json").read_text())["g_loss=minimax"] == mm
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert {r["replica"] for r in rows} == {"g_loss=minimax", "g_loss=non_saturating"}
  assert mm["best_modes_covered"] == max(r["modes_covered"] for r in rows
                                         if r["replica"] == "g_loss=minimax")
  for name in ("samples.png", "curves.png", "g_loss=minimax/samples.png"):
    with Image.open(tmp_path / name) as img:
      assert img.format == "PNG" and img.size[0] > 600
  # One row per replica in sweep.csv, and each replica's own metrics.
  with open(tmp_path / "sweep.csv") as f:
    summary = list(csv.DictReader(f))
  assert [r["replica"] for r in summary] == ["g_loss=minimax", "g_loss=non_saturating"]
  assert [r["gan.g_loss"] for r in summary] == ["minimax", "non_saturating"]
  assert int(summary[0]["modes_covered"]) == mm["modes_covered"]
  assert float(summary[1]["first_g_grad_norm"]) == pytest.approx(ns["first_g_grad_norm"])
  own = [json.loads(l) for l in
         (tmp_path / "g_loss=non_saturating" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in own] == [50, 100] and "modes_covered" in own[-1]
  assert json.loads((tmp_path / "g_loss=minimax" / "results.json").read_text()) == mm
  assert (tmp_path / "g_loss=minimax" / "checkpoints" / "100").is_dir()


def test_launch_refuses_eval_mode_for_toys_and_unknown_experiments(tmp_path):
  """launch.py dispatches on config.experiment (the train path is run by the tests above)."""
  def launch(*args):
    return subprocess.run([sys.executable, "launch.py", *args, f"--workdir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)

  ev = launch("--config=experiments/ring_2d.py:smoke", "--mode=eval")
  assert ev.returncode == 2 and "has no --mode=eval" in ev.stderr
  assert "Traceback" not in ev.stderr
  bad = launch("--config=experiments/gaussian_1d.py:smoke", "--config.experiment=gaussian_2d")
  assert bad.returncode == 2 and "config.experiment is 'gaussian_2d'" in bad.stderr
  assert "'ring_2d'" in bad.stderr and "Traceback" not in bad.stderr
