"""Two JAX processes (gloo collectives on 127.0.0.1), two fake CPU devices each, against one
process with four: the same global batch must give the same training.

The 2-process run resumes a checkpoint that the 1-process run wrote, trains on, and writes
its own; the 1-process run continues from the same checkpoint. So one launch checks restore
across processes, the spanning pmap, and the save from process 0.
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
from conftest import MNIST_DIR, ROOT, assert_trees_close, needs_mnist

from gan_jax.run import checkpoint, sweep, train
from projects.mnist.experiment import MNIST

pytestmark = needs_mnist

# A small model that moves visibly in a few steps; no evaluation.
OVERRIDES = {
    "batch_size": 32, "steps_per_call": 10, "log_every": 10, "eval_every": 20,
    "checkpoint_every": 20, "evaluation.parzen": False, "evaluation.classifier_metrics": False,
    "model.generator.hidden": (32,), "model.generator.init_scale": 0.3,
    "model.discriminator.hidden": (16, 16), "model.discriminator.init_scale": 0.3,
}


def make_config(tfds_dir, steps):
  from benchmarks.common import load_config  # pylint: disable=import-outside-toplevel
  config = load_config("experiments/mnist.py", "smoke")
  config.data.manual_dir, config.data.data_dir = MNIST_DIR, tfds_dir
  for key, value in {**OVERRIDES, "num_train_steps": steps}.items():
    *path, leaf = key.split(".")
    section = config
    for p in path:
      section = section[p]
    section[leaf] = value
  return config


def flag_value(v):
  return "(" + ",".join(map(str, v)) + ",)" if isinstance(v, tuple) else str(v)


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch_two_processes(workdir, tfds_dir, steps):
  flags = ["--config=experiments/mnist.py:smoke", f"--workdir={workdir}",
           f"--config.data.manual_dir={MNIST_DIR}", f"--config.data.data_dir={tfds_dir}",
           f"--config.num_train_steps={steps}",
           *(f"--config.{k}={flag_value(v)}" for k, v in OVERRIDES.items())]
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
         "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
  address = f"127.0.0.1:{free_port()}"
  procs = [subprocess.Popen([sys.executable, "launch.py", *flags,
                             f"--coordinator_address={address}", "--num_processes=2",
                             f"--process_id={i}"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in (0, 1)]
  outputs = []
  for p in procs:
    try:
      out, err = p.communicate(timeout=400)
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
    outputs.append((p.returncode, out, err))
  return outputs


def test_two_processes_train_like_one(tmp_path, tfds_dir, mnist):
  # The authors' split, as TFDS builds it from the four files (prepared once in tfds_dir).
  assert mnist.train.shape == (50_000, 784) and mnist.validation.shape == (10_000, 784)
  assert mnist.test.shape == (10_000, 784) and mnist.train.dtype == np.uint8
  single, multi = str(tmp_path / "single"), str(tmp_path / "multi")
  train.train_and_evaluate(make_config(tfds_dir, 20), single, MNIST)
  shutil.copytree(single, multi)

  outputs = launch_two_processes(multi, tfds_dir, 40)
  for i, (rc, out, err) in enumerate(outputs):
    assert rc == 0, f"process {i} failed:\n{out[-2000:]}\n{err[-3000:]}"
  (_, out0, _), (_, out1, _) = outputs
  assert "process 0 of 2, 2 local / 4 global cpu devices" in out0
  assert "Resuming from the checkpoint at step 20" in out0
  assert "step 40/40" in out0
  assert "step 40/40" not in out1 and "Resuming" not in out1  # only process 0 reports

  final = train.train_and_evaluate(make_config(tfds_dir, 40), single, MNIST)
  ckpt = checkpoint.Checkpointer(multi)
  try:
    assert ckpt.all_steps() == [20, 40]
    restored = ckpt.restore(final)
  finally:
    ckpt.close()
  assert int(restored.step) == 40
  # The run moved: step 40 differs from step 20 by far more than the tolerance below.
  start = checkpoint.Checkpointer(single)
  try:
    at_20 = start.restore(final, step=20)
  finally:
    start.close()
  moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
              for a, b in zip(jax.tree.leaves(at_20.d_params), jax.tree.leaves(final.d_params),
                              strict=True))
  assert moved > 1e-3
  assert_trees_close(restored, final, rtol=1e-5, atol=1e-6)
  with open(os.path.join(multi, "metrics.jsonl")) as f:
    steps = [json.loads(line)["step"] for line in f if line.strip()]
  assert steps == [10, 20, 30, 40]  # the resumed run's rows follow the first run's, none repeated


def test_a_sweep_trains_equal_shapes_as_one_program_and_other_shapes_apart(tmp_path, tfds_dir,
                                                                           mnist, capsys):
  del mnist  # prepared in tfds_dir
  config = make_config(tfds_dir, 10)
  config.steps_per_call = config.log_every = config.eval_every = config.checkpoint_every = 10
  config.sweep = sweep.product({"model.generator.hidden": ((16,), (8,)), "seed": (3, 4)})
  rows = train.train_sweep(config, str(tmp_path / "sweep"), MNIST)
  names = ["hidden=16,seed=3", "hidden=16,seed=4", "hidden=8,seed=3", "hidden=8,seed=4"]
  assert [r["replica"] for r in rows] == names
  assert capsys.readouterr().out.count("2 replicas vmapped in one program") == 2
  with open(tmp_path / "sweep" / "sweep.csv") as f:
    lines = f.read().splitlines()
  assert lines[0].startswith("replica,model.generator.hidden,seed,step,")
  assert len(lines) == 5 and lines[1].startswith('"hidden=16,seed=3","(16,)",3,10,')
  for name in names:
    width, seed = int(name[7:].split(",")[0]), int(name[-1])
    with open(tmp_path / "sweep" / name / "config.json") as f:
      saved = json.load(f)
    assert saved["model"]["generator"]["hidden"] == [width] and saved["seed"] == seed
    assert os.path.exists(tmp_path / "sweep" / name / "samples" / "step_0000010.png")
  # A vmapped replica (the second of its program) ends where training its config alone ends.
  for replica in sweep.expand(config)[1:2]:
    alone = train.train_and_evaluate(replica.config, str(tmp_path / "alone" / replica.name),
                                     MNIST)
    ckpt = checkpoint.Checkpointer(str(tmp_path / "sweep" / replica.name))
    try:
      assert ckpt.all_steps() == [10]
      assert_trees_close(ckpt.restore(alone), alone, rtol=1e-5, atol=1e-6)
    finally:
      ckpt.close()
