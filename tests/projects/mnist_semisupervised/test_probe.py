"""Linear probes: balanced draws, fits that never read test labels, the command on a trained
run's D and E."""

import json
import os
import subprocess
import sys
import types

import flax.serialization
import jax
import numpy as np
import pytest
from conftest import ROOT

from gan_jax.errors import UserError
from projects.mnist import evaluate as mnist_evaluate
from projects.mnist_inference import encoder as encoder_lib
from projects.mnist_semisupervised import probe, run


def test_draws_are_balanced_and_an_impossible_count_is_one_paragraph():
  labels = np.repeat(np.arange(10), 30)
  idx = probe.balanced_draw(labels, 100, seed=0)
  assert np.bincount(labels[idx]).tolist() == [10] * 10 and len(set(idx)) == 100
  assert not np.array_equal(idx, probe.balanced_draw(labels, 100, seed=1))
  assert len(probe.balanced_draw(labels, 300, seed=0)) == 300  # the whole split
  for bad in (310, 105, 0):
    with pytest.raises(UserError, match=r"cannot draw .* labels from a split of 300 .*at most 30 "
                       r"per class"):
      probe.balanced_draw(labels, bad, seed=0)


def synthetic(seed=0, n=400):
  rng = np.random.RandomState(seed)
  centres = rng.randn(10, 20) * 3

  def split(m):
    y = np.tile(np.arange(10), m // 10)
    return (centres[y] + rng.randn(m, 20)).astype(np.float32), y
  (tr, ytr), (va, yva), (te, yte) = split(n), split(200), split(200)
  return types.SimpleNamespace(train=tr, train_labels=ytr, validation=va,
                               validation_labels=yva, test=te, test_labels=yte)


def test_probes_fit_on_the_drawn_labels_and_never_read_test_labels():
  ds = synthetic()
  feats = {"raw": lambda x: x * 255.0}  # probe_table reads images / 255
  ds_bytes = types.SimpleNamespace(**{**ds.__dict__, **{s: getattr(ds, s) for s in
                                                        ("train", "validation", "test")}})
  got = run.probe_table(feats, ds_bytes, [20, 400], draws=2, report=lambda _: None)
  assert got["raw"]["20"]["mean"] < 0.2 and len(got["raw"]["20"]["errors"]) == 2
  assert len(got["raw"]["400"]["errors"]) == 1  # the whole split: one draw
  shuffled = types.SimpleNamespace(**{**ds_bytes.__dict__, "test_labels":
                                      np.random.RandomState(1).permutation(ds.test_labels)})
  again = run.probe_table(feats, shuffled, [20, 400], draws=2, report=lambda _: None)
  for c in ("20", "400"):  # the same fits (same L2 chosen), scored against other labels
    assert again["raw"][c]["l2"] == got["raw"][c]["l2"]
    assert again["raw"][c]["mean"] > got["raw"][c]["mean"] + 0.5


def test_the_command_probes_pixels_d_and_e_of_a_trained_run(mnist_smoke_run, tfds_dir, tmp_path,
                                                            xla_optimized):
  from conftest import MNIST_DIR  # pylint: disable=import-outside-toplevel
  data = [f"--manual_dir={MNIST_DIR}", f"--data_dir={tfds_dir}"]
  _, _, gan, state, _ = mnist_evaluate.load_run(mnist_smoke_run, manual_dir=MNIST_DIR,
                                                data_dir=tfds_dir)
  enc = encoder_lib.for_gan(gan, [32])  # written as projects.mnist_inference.run writes it
  params, _ = encoder_lib.fit_encoder(gan, state, enc, jax.random.key(0), steps_total=100,
                                      chunk=100)
  os.makedirs(tmp_path / "e")
  with open(tmp_path / "e" / "encoder.msgpack", "wb") as f:
    f.write(flax.serialization.to_bytes(params))
  with open(tmp_path / "e" / "results.json", "w") as f:
    json.dump({"hidden": "32"}, f)
  results = run.main([f"--gan_workdir={mnist_smoke_run}", f"--workdir={tmp_path / 'p'}",
                      f"--encoder_dir={tmp_path / 'e'}", "--counts=100,1000", "--draws=1", *data])
  assert set(results) == {"pixels", "D's last hidden layer", "E's last hidden layer"}
  for by_count in results.values():  # more labels help; every probe beats chance (90%)
    assert 0.0 < by_count["1000"]["mean"] < by_count["100"]["mean"] < 0.85
  assert results["pixels"]["1000"]["mean"] < 0.2
  with open(tmp_path / "p" / "results.json") as f:
    assert json.load(f)["counts"] == [100, 1000]
  with pytest.raises(UserError, match="cannot draw 60000 labels from a split of 50000"):
    run.main([f"--gan_workdir={mnist_smoke_run}", f"--workdir={tmp_path / 'q'}",
              "--counts=60000", *data])


def test_the_command_answers_bad_input_with_one_paragraph_and_status_2(tmp_path):
  out = subprocess.run([sys.executable, "-m", "projects.mnist_semisupervised.run",
                        f"--gan_workdir={tmp_path}", f"--workdir={tmp_path / 'p'}",
                        "--counts=100,a"], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert out.returncode == 2
  assert out.stderr.startswith("error: --counts is '100,a'") and "Traceback" not in out.stderr
