"""Fault injection on real runs: launch.py on the real MNIST files, killed, stopped,
diverged, given damaged checkpoints, and resumed.

Every run trains a small model for STEPS iterations in chunks of 25, with a
checkpoint every 50. An uninterrupted run is the reference: each
interrupted run, once resumed, must end with bitwise the same state.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import MNIST_DIR, ROOT, assert_trees_equal, needs_mnist

from gan_jax.run import checkpoint

pytestmark = needs_mnist

STEPS = 200
OVERRIDES = {
    "num_train_steps": STEPS, "batch_size": 32, "steps_per_call": 25, "log_every": 25,
    "eval_every": STEPS, "checkpoint_every": 50, "keep_checkpoints": 10,
    "evaluation.parzen": False, "evaluation.classifier_metrics": False,
    "model.generator.hidden": "(32,)", "model.generator.init_scale": 0.3,
    "model.discriminator.hidden": "(16,16)", "model.discriminator.init_scale": 0.3,
}
# The launches compile with XLA's optimisations off (fast to compile; all runs alike), and
# share JAX's persistent compilation cache: every launch runs the same programs.
ENV = {**os.environ, "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
       "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
  ENV["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax_cache"))


def flags(workdir, tfds_dir, **changes):
  values = {**OVERRIDES, **changes}
  return (["--config=experiments/mnist.py:smoke", f"--workdir={workdir}",
           f"--config.data.manual_dir={MNIST_DIR}", f"--config.data.data_dir={tfds_dir}"] +
          [f"--config.{k}={v}" for k, v in values.items()])


def launch(workdir, tfds_dir, *, script=("launch.py",), **changes):
  return subprocess.run([sys.executable, *script, *flags(workdir, tfds_dir, **changes)],
                        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def start(workdir, tfds_dir, **changes):
  return subprocess.Popen([sys.executable, "launch.py", *flags(workdir, tfds_dir, **changes)],
                          cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def wait_for(proc, prefix, timeout=300):
  """Read ``proc``'s output until a line starts with ``prefix``; returns the lines read."""
  lines, deadline = [], time.time() + timeout
  while time.time() < deadline:
    line = proc.stdout.readline()
    if not line:
      break
    lines.append(line)
    if line.startswith(prefix):
      return lines
  proc.kill()
  raise AssertionError(f"no line starting with {prefix!r}:\n{''.join(lines)[-3000:]}")


def ok(result):
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  return result


def final_state(workdir, step=STEPS):
  ckpt = checkpoint.Checkpointer(workdir)
  try:
    return ckpt.restore(None, step)  # verified against its recorded SHA-256
  finally:
    ckpt.close()


def steps_of(workdir):
  return sorted(int(n) for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit())


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tfds_dir):
  """An uninterrupted run: its workdir (all its checkpoints) and final state."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  ok(launch(workdir, tfds_dir))
  assert steps_of(workdir) == list(range(50, STEPS + 1, 50))
  state = final_state(workdir)
  # The config keeps an EMA of G (experiments/mnist.py), so every bitwise comparison of
  # the final state below covers the EMA too.
  assert state["hparams"]["ema_decay"] == np.float32(0.999)
  assert not np.array_equal(state["ema_params"]["output"]["kernel"],
                            state["g"]["params"]["output"]["kernel"])
  return workdir, state


def copy_run(reference, tmp_path, upto):
  """A copy of the reference workdir as it was after step ``upto``."""
  workdir = str(tmp_path / "run")
  shutil.copytree(reference[0], workdir)
  for step in steps_of(workdir):
    if step > upto:
      shutil.rmtree(os.path.join(workdir, "checkpoints", str(step)))
  return workdir


def test_sigterm_finishes_the_chunk_checkpoints_and_resumes_exactly(reference, tfds_dir,
                                                                   tmp_path):
  workdir = str(tmp_path / "run")
  proc = start(workdir, tfds_dir)
  wait_for(proc, "step 25/")
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out[-3000:]
  assert "SIGTERM received: finishing the current chunk" in out
  (line,) = [l for l in out.splitlines() if l.startswith("Stopped by SIGTERM at step ")]
  stopped = int(line.split()[5])
  assert 25 <= stopped < STEPS and stopped % 25 == 0 and max(steps_of(workdir)) == stopped
  assert "Launch the same command again to resume" in line

  result = ok(launch(workdir, tfds_dir))
  assert f"Resuming from the checkpoint at step {stopped}" in result.stdout
  assert_trees_equal(final_state(workdir), reference[1])
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    assert [json.loads(l)["step"] for l in f] == list(range(25, STEPS + 1, 25))


def test_a_second_launch_into_a_running_workdir_is_refused_and_the_first_is_untouched(
    tfds_dir, tmp_path):
  workdir = str(tmp_path / "run")
  proc = start(workdir, tfds_dir, num_train_steps=100_000)
  wait_for(proc, "step 25/")
  second = launch(workdir, tfds_dir)  # e.g. a scheduler retrying the same command
  assert second.returncode == 2 and "Traceback" not in second.stderr
  assert f"is in use by another run: process {proc.pid} on host" in second.stderr
  assert proc.poll() is None  # the first run goes on
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out[-3000:]
  (line,) = [l for l in out.splitlines() if l.startswith("Stopped by SIGTERM at step ")]
  stopped = int(line.split()[5])
  with open(os.path.join(workdir, "metrics.jsonl")) as f:  # each step once
    assert [json.loads(l)["step"] for l in f] == list(range(25, stopped + 1, 25))
  assert int(final_state(workdir, stopped)["step"]) == stopped  # digest-verified restore


def test_second_sigint_stops_at_once(tfds_dir, tmp_path):
  proc = start(str(tmp_path / "run"), tfds_dir, num_train_steps=100_000)
  wait_for(proc, "step 25/")
  proc.send_signal(signal.SIGINT)
  wait_for(proc, "SIGINT received")
  t0 = time.time()
  proc.send_signal(signal.SIGINT)
  out, _ = proc.communicate(timeout=60)
  assert proc.returncode == -signal.SIGINT, out[-3000:]  # ended by the signal itself
  assert time.time() - t0 < 30 and "Stopped by" not in out


def test_kill_9_during_training_loses_only_the_steps_since_the_checkpoint(
    reference, tfds_dir, tmp_path):
  workdir = str(tmp_path / "run")
  proc = start(workdir, tfds_dir)
  wait_for(proc, "step 125/")
  proc.kill()  # SIGKILL: the kernel drops its workdir lock, so the relaunch below may run
  proc.communicate(timeout=60)
  assert proc.returncode == -signal.SIGKILL
  assert os.path.exists(os.path.join(workdir, ".lock"))
  last = max(steps_of(workdir))
  assert last >= 100
  result = ok(launch(workdir, tfds_dir))
  assert f"Resuming from the checkpoint at step {last}" in result.stdout
  assert_trees_equal(final_state(workdir), reference[1])


def test_kill_9_while_writing_a_checkpoint_leaves_the_previous_one_in_use(
    reference, tfds_dir, tmp_path):
  workdir = str(tmp_path / "run")
  killed = launch(workdir, tfds_dir, script=("tests/helpers/kill_during_checkpoint.py", "100"))
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  assert "killing the process while committing checkpoint 100" in killed.stdout
  names = os.listdir(os.path.join(workdir, "checkpoints"))
  assert steps_of(workdir) == [50] and any(n.startswith("100.") for n in names), names

  result = ok(launch(workdir, tfds_dir))
  assert "Resuming from the checkpoint at step 50" in result.stdout
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == sorted(
      str(s) for s in steps_of(workdir))  # the temporary directory is gone
  assert_trees_equal(final_state(workdir), reference[1])


def test_truncated_checkpoint_is_reported_and_the_previous_one_used(reference, tfds_dir,
                                                                   tmp_path):
  workdir = copy_run(reference, tmp_path, upto=STEPS)
  data = os.path.join(workdir, "checkpoints", str(STEPS), "default")
  files = [os.path.join(d, f) for d, _, fs in os.walk(data) for f in fs if "/d/" in d + "/"]
  biggest = max(files, key=os.path.getsize)
  with open(biggest, "r+b") as f:
    f.truncate(os.path.getsize(biggest) // 2)

  result = ok(launch(workdir, tfds_dir))
  assert f"warning: the checkpoint at step {STEPS} is damaged" in result.stdout
  assert f"Resuming from the checkpoint at step {STEPS - 50}" in result.stdout
  assert os.path.isdir(os.path.join(workdir, "damaged_checkpoints", str(STEPS)))
  assert_trees_equal(final_state(workdir), reference[1])  # retrained from the one before


def test_divergence_names_step_and_quantity_and_keeps_the_checkpoint(reference, tfds_dir,
                                                                    tmp_path):
  workdir = copy_run(reference, tmp_path, upto=STEPS)
  result = launch(workdir, tfds_dir, num_train_steps=STEPS + 100,
                  **{"optimizer.learning_rate": 1e6})
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  err = result.stderr.strip().splitlines()[-1]
  assert err.startswith("error: Training diverged: ") and " became " in err
  step = int(err.split(" at step ")[1].split(".")[0])
  assert STEPS < step <= STEPS + 25
  assert f"The newest checkpoint (step {STEPS}) is intact" in err
  assert max(steps_of(workdir)) == STEPS
  assert_trees_equal(final_state(workdir), reference[1])


def test_rollback_retries_from_the_last_good_checkpoint_with_new_keys(reference, tfds_dir,
                                                                     tmp_path):
  workdir = copy_run(reference, tmp_path, upto=STEPS)
  result = launch(workdir, tfds_dir, num_train_steps=STEPS + 100, on_divergence="rollback",
                  max_rollbacks=2, **{"optimizer.learning_rate": 1e6})
  assert result.returncode == 2
  rolled = [l for l in result.stdout.splitlines() if "Rolled back to step" in l]
  assert len(rolled) == 2 and f"Rolled back to step {STEPS} (the newest checkpoint)" in rolled[0]
  assert "rollback 2 of 2" in rolled[1]
  assert "after 2 rollback(s)" in result.stderr
  assert_trees_equal(final_state(workdir), reference[1])


def test_a_different_model_in_the_workdir_is_refused_before_training(reference, tfds_dir,
                                                                   tmp_path):
  workdir = copy_run(reference, tmp_path, upto=STEPS)
  result = launch(workdir, tfds_dir, **{"model.discriminator.pieces": 3})
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert "model.discriminator.pieces: 5 in the checkpoint, 3 now" in result.stderr
  assert "Training" not in result.stdout  # refused before data or compilation
  # (A changed run length is allowed: see the N + restart + N test.)


def test_n_steps_then_a_restart_and_n_more_equal_2n_steps_bitwise(reference, tfds_dir,
                                                                 tmp_path):
  workdir = str(tmp_path / "run")
  ok(launch(workdir, tfds_dir, num_train_steps=STEPS // 2))
  result = ok(launch(workdir, tfds_dir))  # the same command with the full length
  assert f"Resuming from the checkpoint at step {STEPS // 2}" in result.stdout
  assert_trees_equal(final_state(workdir), reference[1])


def test_bad_config_file_and_unwritable_workdir_exit_2_without_traceback(tfds_dir, tmp_path):
  config_file = tmp_path / "typo.py"
  config_file.write_text(
      "import importlib.util, os\n"
      f"spec = importlib.util.spec_from_file_location('base', {str(ROOT)!r} + "
      "'/experiments/mnist.py')\n"
      "base = importlib.util.module_from_spec(spec)\n"
      "spec.loader.exec_module(base)\n"
      "def get_config(arg=None):\n"
      "  config = base.get_config(arg)\n"
      "  config.optimizer.momentun = 0.9\n"
      "  return config\n")
  result = subprocess.run([sys.executable, "launch.py", f"--config={config_file}",
                           f"--workdir={tmp_path / 'run'}"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert "config.optimizer.momentun is not a field gan_jax knows" in result.stderr
  assert not os.path.exists(tmp_path / "run")  # refused before anything was written

  (tmp_path / "file").write_text("")
  result = launch(str(tmp_path / "file" / "run"), tfds_dir)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert "cannot be written" in result.stderr and "--workdir" in result.stderr


def test_eval_while_a_run_checkpoints_every_step_leaves_the_run_untouched(tfds_dir,
                                                                          tmp_path):
  """--mode=eval opens the checkpoints read-only: it never removes the temporary
  directory of the checkpoint the trainer is writing, and a checkpoint that retention
  rotates away while eval reads it is looked up again."""
  workdir = str(tmp_path / "run")
  changes = {"num_train_steps": 60, "steps_per_call": 1, "log_every": 1,
             "checkpoint_every": 1, "keep_checkpoints": 2}
  trainer = start(workdir, tfds_dir, **changes)
  wait_for(trainer, "Training ")
  while not os.path.isdir(os.path.join(workdir, "checkpoints")) or not steps_of(workdir):
    assert trainer.poll() is None
    time.sleep(0.2)
  scored = 0
  while trainer.poll() is None or scored == 0:
    result = launch(workdir, tfds_dir, script=("launch.py", "--mode=eval", "--checkpoint=latest"),
                    **changes, **{"evaluation.parzen": True, "evaluation.num_samples": 500})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Parzen" in result.stdout and "Traceback" not in result.stderr
    assert "read only" not in result.stderr  # orbax's warnings about read-only use
    scored += 1
  out = trainer.stdout.read()
  assert trainer.wait() == 0, out[-3000:]
  assert "Done: 60 iterations" in out
  assert steps_of(workdir) == [59, 60]
  final_state(workdir, 60)  # reads back against its digest


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_while_the_classifier_trains_stops_within_seconds(tfds_dir, tmp_path,
                                                                        sig):
  """Before the training loop (here: the feature classifier's first training, which the
  run does before its first iteration) a stop signal ends the launch at once, in one line."""
  workdir = str(tmp_path / "run")
  trainer = start(workdir, tfds_dir, **{"evaluation.classifier_metrics": True,
                                        "evaluation.train_classifier": True,
                                        "evaluation.classifier_dir": str(tmp_path / "clf")})
  wait_for(trainer, "Training the MNIST feature classifier")
  time.sleep(1.0)
  trainer.send_signal(sig)
  t0 = time.time()
  out, _ = trainer.communicate(timeout=60)
  assert time.time() - t0 < 10 and trainer.returncode == 0, out[-3000:]
  assert f"Stopped by {signal.Signals(sig).name} while no chunk of training was running" in out
  assert "Traceback" not in out
  assert not os.path.exists(tmp_path / "clf") or not [
      e for e in os.listdir(tmp_path / "clf") if e.startswith("mnist_classifier_")]
