"""The toys and a sweep run through the same driver as MNIST: stopped by SIGTERM or killed
with SIGKILL between checkpoints, then launched again, they end bitwise where an
uninterrupted run ends, with each metrics row once and the same results."""

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import ROOT, assert_trees_equal

from gan_jax.run import checkpoint

pytestmark = pytest.mark.xdist_group("toy_faults")  # one worker: the references are shared

STEPS = 200
COMMON = {"num_train_steps": STEPS, "steps_per_call": 25, "log_every": 25, "eval_every": 50,
          "checkpoint_every": 50, "keep_checkpoints": 10}
EXPERIMENTS = {
    # One ring run (no sweep), small widths.
    "ring_2d": ("experiments/ring_2d.py:smoke", {
        **COMMON, "sweep": "()", "early_steps": 60, "d_warmup_steps": 20,
        "num_eval_samples": 500, "model.generator.hidden": "(16,16)",
        "model.discriminator.hidden": "(16,16)"}),
    "gaussian_1d": ("experiments/gaussian_1d.py:smoke", {
        **COMMON, "d_pretrain_steps": 50, "figure_steps": "(100,)"}),
    # Two replicas vmapped in one program, each in its own sub-workdir.
    "ring_sweep": ("experiments/ring_2d.py:smoke", {
        **COMMON, "early_steps": 60, "d_warmup_steps": 20, "num_eval_samples": 500,
        "model.generator.hidden": "(16,16)", "model.discriminator.hidden": "(16,16)"}),
}
REPLICAS = {"ring_sweep": ["g_loss=minimax", "g_loss=non_saturating"]}
ENV = {**os.environ, "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
       "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
  ENV["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax_cache"))


def launch(name, workdir, *prefix):
  config, values = EXPERIMENTS[name]
  args = [f"--config={config}", f"--workdir={workdir}"] + [
      f"--config.{k}={v}" for k, v in values.items()]
  return subprocess.run([sys.executable, *(prefix or ("launch.py",)), *args], cwd=ROOT, env=ENV,
                        capture_output=True, text=True, timeout=600)


def ok(result):
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  return result


def run_dirs(name, workdir):
  return [os.path.join(workdir, r) for r in REPLICAS.get(name, [""])]


def outcome(name, workdir):
  """Per replica: the final state (digest-verified), the metrics rows' steps, and
  results.json without its wall time."""
  out = []
  for run in run_dirs(name, workdir):
    ckpt = checkpoint.Checkpointer(run)
    try:
      state = ckpt.restore(None, STEPS)
    finally:
      ckpt.close()
    with open(os.path.join(run, "metrics.jsonl")) as f:
      steps = [json.loads(line)["step"] for line in f]
    with open(os.path.join(run, "results.json")) as f:
      results = {k: v for k, v in json.load(f).items() if k != "wall_seconds"}
    out.append((state, steps, results))
  return out


@pytest.fixture(scope="module")
def references(tmp_path_factory):
  refs = {}
  for name in EXPERIMENTS:
    workdir = str(tmp_path_factory.mktemp(f"reference_{name}"))
    ok(launch(name, workdir))
    refs[name] = outcome(name, workdir)
    assert refs[name][0][1] == list(range(25, STEPS + 1, 25))
  return refs


# Each experiment once, each signal on a single run and on the sweep (MNIST takes both
# signals in test_faults.py).
@pytest.mark.parametrize("name,how", [("ring_2d", "SIGTERM"), ("gaussian_1d", "SIGKILL"),
                                      ("ring_sweep", "SIGTERM"), ("ring_sweep", "SIGKILL")])
def test_an_interrupted_run_resumes_to_the_same_end_bitwise(name, how, references, tmp_path):
  workdir = str(tmp_path / "run")
  first = launch(name, workdir, "tests/helpers/signal_at_step.py", how, "125")
  assert f"sending {how} to this process after step 125" in first.stdout
  if how == "SIGKILL":
    assert first.returncode == -signal.SIGKILL
    resumed_from = 100  # the newest checkpoint before the kill
  else:
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Stopped by SIGTERM at step 125" in first.stdout
    resumed_from = 125
  for run in run_dirs(name, workdir):
    assert not os.path.exists(os.path.join(run, "results.json"))  # not finished

  again = ok(launch(name, workdir))
  assert again.stdout.count(f"from the checkpoint at step {resumed_from}") == len(
      run_dirs(name, workdir))
  for (state, steps, results), (ref_state, ref_steps, ref_results) in zip(
      outcome(name, workdir), references[name], strict=True):
    assert_trees_equal(state, ref_state)
    assert steps == ref_steps  # each row once
    assert results == ref_results  # incl. what the run remembered across the restart
