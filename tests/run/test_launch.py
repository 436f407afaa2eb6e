"""End to end: launch.py as a subprocess on the real MNIST files from ../shared/data/mnist."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import (
  MNIST_DIR,
  ROOT,  # noqa: E402
  needs_mnist,
)
from PIL import Image

from gan_jax.run.selection import replay_selection
from projects.mnist.experiment import MNIST

SMOKE = "experiments/mnist.py:smoke"

# With pytest-xdist: on the same worker as test_classifier, sharing its trained classifier.
pytestmark = [needs_mnist, pytest.mark.xdist_group("mnist_classifier")]


def launch(*args, timeout=900):
  """Run launch.py; the environment carries the 4 fake CPU devices of conftest."""
  return subprocess.run([sys.executable, "launch.py", *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=timeout)


def data_flags(tfds_dir, classifier_dir=None):
  flags = [f"--config.data.manual_dir={MNIST_DIR}", f"--config.data.data_dir={tfds_dir}"]
  if classifier_dir:  # the session's trained classifier, so no run trains its own
    flags.append(f"--config.evaluation.classifier_dir={classifier_dir}")
  return flags


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


def smoke_config(tfds_dir, classifier_dir):
  from benchmarks.common import load_config  # pylint: disable=import-outside-toplevel
  config = load_config("experiments/mnist.py", "smoke")
  config.data.manual_dir, config.data.data_dir = str(MNIST_DIR), tfds_dir
  config.evaluation.classifier_dir = classifier_dir
  return config


@pytest.fixture(scope="module")
def classifier_dir(mnist_classifier):
  return mnist_classifier[1]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, tfds_dir, classifier_dir):
  workdir = str(tmp_path_factory.mktemp("run") / "mnist")
  result = launch(f"--config={SMOKE}", f"--workdir={workdir}",
                  *data_flags(tfds_dir, classifier_dir))
  fatal = [l for l in result.stderr.splitlines() if "Check failed" in l or l[:1] == "F"]
  assert result.returncode == 0, "\n".join(fatal[:20]) + result.stderr[-3000:]
  return workdir, result


def test_smoke_run_writes_every_artifact(smoke_run, tfds_dir, classifier_dir):
  workdir, result = smoke_run
  config = smoke_config(tfds_dir, classifier_dir)
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f) == json.loads(config.to_json_best_effort())

  rows = read_metrics(workdir)
  assert [r["step"] for r in rows] == [25, 50, 75, 100]
  for key in ("epoch", "wall_time", "iterations_per_second", "d_loss", "g_loss", "value",
              "d_real", "d_fake", "d_grad_norm", "g_grad_norm", "d_learning_rate",
              "g_learning_rate", "d_momentum"):
    values = [r[key] for r in rows]
    assert all(np.isfinite(values)), key
  assert rows[-1]["epoch"] == pytest.approx(100 / 500)
  assert rows[-1]["d_learning_rate"] == pytest.approx(0.1 / 1.000004**100, rel=1e-5)
  assert all(0 < r["d_real"] < 1 and 0 < r["d_fake"] < 1 for r in rows)
  # Each eval interval adds the paper's Parzen log-likelihood to its row.
  evals = {r["step"]: r for r in rows if "parzen_ll" in r}
  assert sorted(evals) == [50, 100]
  for r in evals.values():
    assert np.isfinite(r["parzen_ll"]) and r["parzen_ll_stderr"] > 0
    assert np.isclose(np.logspace(-1, 0, 10), r["parzen_sigma"]).any()
    # ... and the classifier-feature metrics.
    assert r["frechet_distance"] > 0 and 1 <= r["classifier_score"] <= 10
    assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and r["pr_k"] == 5
    assert sum(r["class_histogram"]) == config.evaluation.num_samples
    assert 0 <= r["classes_covered"] <= 10
    assert 0 <= r["class_kl_to_uniform"] <= np.log(10) + 1e-9

  # The config keeps an EMA of G: each evaluation scores both generators on the same noise.
  for r in evals.values():
    assert np.isfinite(r["ema_parzen_ll"]) and r["ema_frechet_distance"] > 0
    assert r["ema_frechet_distance"] != r["frechet_distance"]
  for step in (50, 100):
    for prefix in ("", "raw_"):  # the EMA's grid, and the raw G's beside it
      with Image.open(os.path.join(workdir, "samples", f"{prefix}step_{step:07d}.png")) as img:
        assert img.size == (10 * 30 + 2, 10 * 30 + 2) and img.mode == "L"
  for name in ("curves.png", "eval.png"):
    with Image.open(os.path.join(workdir, name)) as img:
      assert img.format == "PNG" and img.size[0] > 400
  tb_dir = os.path.join(workdir, "tensorboard")
  (events,) = [e for e in os.listdir(tb_dir) if e.startswith("events.out.tfevents")]
  from tensorboard.backend.event_processing import event_file_loader  # pylint: disable=import-outside-toplevel
  tags = {}
  for event in event_file_loader.EventFileLoader(os.path.join(tb_dir, events)).Load():
    for v in event.summary.value:
      tags.setdefault(v.tag, []).append(event.step)
  assert tags["d_loss"] == [25, 50, 75, 100] and tags["parzen_ll"] == [50, 100]
  assert tags["frechet_distance"] == [50, 100] and tags["classes_covered"] == [50, 100]
  assert tags["samples"] == [50, 100] and tags["raw_samples"] == [50, 100]
  assert tags["ema_parzen_ll"] == [50, 100]
  # Progress lines from process 0 at each log interval, nothing per step.
  progress = [l for l in result.stdout.splitlines() if l.startswith("step ")]
  assert len(progress) == 4 and "it/s" in progress[0] and "ETA" in progress[0]
  assert "D(G(z))" in progress[-1]


def test_eval_mode_scores_the_model_selected_on_validation(smoke_run, tfds_dir, classifier_dir,
                                                          tmp_path):
  workdir, _ = smoke_run
  result = launch(f"--config={SMOKE}", f"--workdir={workdir}", "--mode=eval",
                  *data_flags(tfds_dir, classifier_dir))
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(workdir, "eval.json")) as f:
    scores = json.load(f)
  rows = read_metrics(workdir)
  selected = [r["selected_step"] for r in rows if "selected_step" in r]
  assert selected and scores["step"] == selected[-1]  # the newest best is the selection
  # The run selected by its rule, with the FD guard on the EMA (the smoke config's default):
  # replaying its validation rows under that rule gives the same choices.
  config = smoke_config(tfds_dir, classifier_dir)
  rule = MNIST([config]).selection()
  assert rule.ema_guard == ("val_frechet_distance", False)
  evals = [r for r in rows if "val_parzen_ll" in r]
  replayed = replay_selection(evals, rule)
  assert replayed[-1]["step"] == selected[-1]
  assert [r.get("selected_step") for r in evals] == [
      b["step"] if b is not None and b["step"] == r["step"] else None
      for b, r in zip(replayed, evals, strict=True)]
  assert f"Scoring the model selected on validation (step {selected[-1]} by val_parzen_ll" in \
      result.stdout
  for name in ("figure2.png", "figure3.png"):
    with Image.open(os.path.join(workdir, name)) as img:
      assert img.format == "PNG" and img.size[0] > 150
  assert np.isfinite(scores["parzen_ll"])
  assert f"{scores['parzen_ll']:.1f} ± {scores['parzen_ll_stderr']:.1f}" in result.stdout
  assert f"| Fréchet distance (classifier features) | {scores['frechet_distance']:.3f} |" in \
      result.stdout
  assert f"| digit classes covered | {scores['classes_covered']} of 10" in result.stdout
  assert "| metric | raw G | EMA of G |" in result.stdout and np.isfinite(scores["ema_parzen_ll"])
  assert "Training the MNIST feature classifier" not in result.stdout  # the cached one
  (tmp_path / "empty").mkdir()
  empty = launch(f"--config={SMOKE}", f"--workdir={tmp_path / 'empty'}", "--mode=eval",
                 *data_flags(tfds_dir, classifier_dir))
  assert empty.returncode == 2 and "no checkpoint" in empty.stderr
  assert "Traceback" not in empty.stderr
  assert os.listdir(tmp_path / "empty") == []  # eval writes nothing where nothing was trained
  mistyped = launch(f"--config={SMOKE}", f"--workdir={tmp_path / 'none'}", "--mode=eval",
                    *data_flags(tfds_dir, classifier_dir))
  assert mistyped.returncode == 2 and "does not exist" in mistyped.stderr
  assert not (tmp_path / "none").exists()
  # Outputs that cannot be written (eval.json is a folder here, which even root cannot
  # replace): the table is printed, then one paragraph says what was not saved.
  os.remove(os.path.join(workdir, "eval.json"))
  os.makedirs(os.path.join(workdir, "eval.json", "in_the_way"))
  unsaved = launch(f"--config={SMOKE}", f"--workdir={workdir}", "--mode=eval",
                   *data_flags(tfds_dir, classifier_dir),
                   "--config.evaluation.classifier_metrics=False")  # Parzen is enough here
  assert unsaved.returncode == 2 and "Traceback" not in unsaved.stderr
  assert "| metric | raw G | EMA of G |" in unsaved.stdout
  assert "The table above could not be saved" in unsaved.stderr


def test_missing_data_gives_one_paragraph_naming_manual_dir(tmp_path):
  result = launch(f"--config={SMOKE}", f"--workdir={tmp_path / 'w'}",
                  f"--config.data.manual_dir={tmp_path / 'nowhere'}",
                  f"--config.data.data_dir={tmp_path / 'empty'}")
  assert result.returncode == 2
  assert "manual_dir" in result.stderr and "train-images-idx3-ubyte.gz" in result.stderr
  assert "Traceback" not in result.stderr


def test_misspelt_config_key_is_refused(tmp_path):
  result = launch(f"--config={SMOKE}", f"--workdir={tmp_path}",
                  "--config.optimizer.learnin_rate=0.05")
  assert result.returncode == 2
  assert 'Did you mean "learning_rate"' in result.stderr
  assert "Traceback" not in result.stderr


def test_a_config_file_that_is_not_there_is_one_paragraph(tmp_path):
  result = launch("--config=experiments/nope.py", f"--workdir={tmp_path / 'w'}")
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.startswith("error: The config file 'experiments/nope.py' could not be "
                                  "loaded") and result.stderr.count("\n") == 1
  assert "experiments/mnist.py" in result.stderr  # the configs there are
  assert not (tmp_path / "w").exists()


def test_batch_that_does_not_divide_over_devices_is_refused(tmp_path):
  result = launch(f"--config={SMOKE}", f"--workdir={tmp_path}", "--config.batch_size=10")
  assert result.returncode == 2
  assert "config.batch_size=10 does not divide over the 4 devices" in result.stderr
  assert "Traceback" not in result.stderr


def test_a_workdir_of_the_earlier_layout_is_refused_for_training_and_scored_by_eval(
    smoke_run, tfds_dir, classifier_dir, tmp_path):
  """A workdir as gan_jax 0.1 left it: flat g_params/d_params, no EMA, no layout recorded."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  from gan_jax.run import checkpoint  # pylint: disable=import-outside-toplevel
  workdir, _ = smoke_run
  ckpt = checkpoint.Checkpointer(workdir)
  try:
    new = ckpt.restore(None, 100)
  finally:
    ckpt.close()
  old = {"step": new["step"], "g_params": new["g"]["params"], "d_params": new["d"]["params"],
         "g_opt_state": new["g"]["opt_state"], "d_opt_state": new["d"]["opt_state"]}
  legacy = tmp_path / "legacy"
  manager = ocp.CheckpointManager(str(legacy / "checkpoints"),
                                  options=ocp.CheckpointManagerOptions(create=True),
                                  item_handlers=ocp.StandardCheckpointHandler())
  manager.save(100, args=ocp.args.StandardSave(old),
               custom_metadata={"sha256": checkpoint.tree_digest(old)})
  manager.wait_until_finished()
  manager.close()
  train = launch(f"--config={SMOKE}", f"--workdir={legacy}", *data_flags(tfds_dir, classifier_dir))
  assert train.returncode == 2 and "Traceback" not in train.stderr
  assert "state layout 1" in train.stderr and "another --workdir" in train.stderr
  assert os.listdir(legacy / "checkpoints") == ["100"]  # untouched
  scored = launch(f"--config={SMOKE}", f"--workdir={legacy}", "--mode=eval",
                  "--config.evaluation.classifier_metrics=False",
                  *data_flags(tfds_dir, classifier_dir))
  assert scored.returncode == 0, scored.stderr[-3000:]
  assert "scoring its generator's raw parameters" in scored.stdout
  with open(legacy / "eval.json") as f:
    result = json.load(f)
  # The same generator and noise as the run's own evaluation at step 100.
  at_100 = [r for r in read_metrics(workdir) if r["step"] == 100 and "parzen_ll" in r][0]
  assert result["parzen_ll"] == pytest.approx(at_100["parzen_ll"], abs=1e-3)
  assert "ema_parzen_ll" not in result
