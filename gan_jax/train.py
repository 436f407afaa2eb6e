"""train_and_evaluate: a whole run from a config into a workdir.

Data flows one way: config -> data and GAN spec -> state (restored if the
workdir has a checkpoint) -> scanned training chunks -> metrics, samples,
curves and checkpoints. Only process 0 writes logs, pictures and metrics.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from gan_jax import build, checkpoint, data as data_lib, evaluate, tensorboard, visualize
from gan_jax.errors import UserError
from gan_jax.loop import ArraySource, TrainLoop
from gan_jax.state import GAN, GANState, sample_latent

SAMPLE_ROWS = 10  # sample grids are SAMPLE_ROWS x SAMPLE_ROWS


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Refuse configs that cannot run, before any data is read or code compiled."""
  def need(ok: bool, msg: str):
    if not ok:
      raise UserError(msg)

  for key in ("num_train_steps", "batch_size", "log_every", "eval_every", "checkpoint_every",
              "steps_per_call"):
    value = config[key]
    need(isinstance(value, int) and value >= 1,
         f"config.{key} is {value!r}; it must be a positive integer (set it with "
         f"--config.{key}=N).")
  need(config.batch_size % num_devices == 0,
       f"config.batch_size={config.batch_size} does not divide over the {num_devices} devices "
       f"used for data parallelism: each device must get the same number of examples. Use a "
       f"multiple of {num_devices} (e.g. --config.batch_size="
       f"{max(num_devices, config.batch_size // num_devices * num_devices)}), or run on fewer "
       f"devices.")
  need(config.gan.k >= 1, f"config.gan.k is {config.gan.k}; it must be at least 1.")
  need(config.optimizer.learning_rate > 0,
       f"config.optimizer.learning_rate is {config.optimizer.learning_rate}; it must be > 0.")


def chunk_length(config: ml_collections.ConfigDict) -> int:
  """Iterations per compiled call: every log, eval and checkpoint falls on a boundary."""
  return math.gcd(config.steps_per_call, config.log_every, config.eval_every,
                  config.checkpoint_every)


def _is_main() -> bool:
  return jax.process_index() == 0


def _hyperparams(opt_state: Any) -> dict[str, float]:
  """Learning rate etc. of an optax.inject_hyperparams state (empty for others)."""
  hp = getattr(opt_state, "hyperparams", None) or {}
  return {k: float(v) for k, v in hp.items()}


class _Recorder:
  """metrics.jsonl, TensorBoard scalars/images and the console line (process 0 only)."""

  def __init__(self, workdir: str, resume_step: int):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.rows = []
    if os.path.exists(self.path):  # keep what precedes the restored checkpoint
      with open(self.path) as f:
        self.rows = [r for r in map(json.loads, filter(str.strip, f)) if r["step"] <= resume_step]
      self._rewrite()
    self.tb = tensorboard.SummaryWriter(os.path.join(workdir, "tensorboard"))

  def _rewrite(self):
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in self.rows)
    os.replace(tmp, self.path)

  def log(self, row: dict) -> None:
    self.rows.append(row)
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    for k, v in row.items():
      if k != "step" and isinstance(v, (int, float)):
        self.tb.scalar(k, v, row["step"])
    self.tb.flush()

  def image(self, tag: str, image: np.ndarray, step: int) -> None:
    """``image``: uint8 [H, W, C]."""
    self.tb.image(tag, image, step)
    self.tb.flush()


def _fmt_time(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _check_finite(metrics: dict[str, np.ndarray], first_step: int, last_good: int | None):
  """Stop, naming the step and quantity, at the first non-finite loss or gradient norm."""
  for key, values in sorted(metrics.items()):
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
      kept = (f"The newest checkpoint (step {last_good}) is intact and was taken before the "
              f"divergence" if last_good is not None else "No checkpoint had been written")
      raise UserError(
          f"Training diverged: {key} became {values[bad[0]]} at step {first_step + bad[0] + 1}. "
          f"{kept}. Lower the learning rate (--config.optimizer.learning_rate) or change the "
          f"seed, and launch again.")


def _evaluate(gan: GAN, state: GANState, dataset: data_lib.Dataset, evaluator: evaluate.Evaluator,
              recorder: _Recorder, workdir: str, fixed_z: jax.Array, key: jax.Array) -> dict:
  """Sample grid (PNG and TensorBoard) and the configured metrics of ``state``."""
  step = int(state.step)
  images = np.asarray(evaluate.generate(gan, state.g_params, fixed_z))
  grid = visualize.image_grid(images, dataset.image_shape, rows=SAMPLE_ROWS, cols=SAMPLE_ROWS)
  visualize.save_png(os.path.join(workdir, "samples", f"step_{step:07d}.png"), grid)
  recorder.image("samples", grid, step)
  if not evaluator.active:
    return {}
  t0 = time.time()
  scores = evaluator(gan, state, key)
  parts = []
  if "parzen_ll" in scores:
    parts.append(f"Parzen log-likelihood {scores['parzen_ll']:.1f} ± "
                 f"{scores['parzen_ll_stderr']:.1f} nats (sigma {scores['parzen_sigma']:.3f})")
  if "frechet_distance" in scores:
    parts.append(f"FD {scores['frechet_distance']:.2f}, classifier score "
                 f"{scores['classifier_score']:.2f}, precision {scores['precision']:.3f}, "
                 f"recall {scores['recall']:.3f}, {scores['classes_covered']}/10 digits covered")
  print(f"eval at step {step}: {'; '.join(parts)} ({time.time() - t0:.0f} s)", flush=True)
  if scores.get("classes_covered", 10) < 10:
    print(f"warning: mode collapse at step {step}: only {scores['classes_covered']} of 10 digit "
          f"classes get at least 1% of the samples (histogram {scores['class_histogram']}).",
          flush=True)
  return scores


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> GANState:
  """Train ``config``'s GAN, writing everything into ``workdir``; returns the final state.

  Resumes from the newest checkpoint in ``workdir`` when there is one.
  """
  if config.parallel == "none" and jax.process_count() > 1:
    raise UserError(f"config.parallel='none' trains on one device, but this is a run of "
                    f"{jax.process_count()} processes; use 'pmap' or 'shard_map' to span them.")
  # pmap/shard_map span the devices of every process; each process feeds its local ones.
  devices = jax.devices() if config.parallel != "none" else jax.local_devices()[:1]
  validate_config(config, len(devices))
  try:
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
  except OSError as e:
    raise UserError(f"The workdir {workdir!r} cannot be created ({e.strerror}); pass a "
                    f"writable --workdir.") from e

  dataset = data_lib.load(config.data)
  batches_per_epoch = len(dataset.train) // config.batch_size
  gan, root_key, state = build.make_gan_and_state(config, dataset)

  ckpt = checkpoint.Checkpointer(workdir, keep=config.get("keep_checkpoints", 2),
                                 keep_every=config.get("keep_every", 0))
  start = ckpt.latest_step()
  if start is not None:
    state = ckpt.restore(state)
    if _is_main():
      print(f"Resuming from the checkpoint at step {start} in {ckpt.directory}", flush=True)
  start = int(state.step)

  if _is_main():
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  recorder = _Recorder(workdir, start) if _is_main() else None
  evaluator = evaluate.Evaluator(config, dataset) if _is_main() else None

  chunk = chunk_length(config)
  source = ArraySource(len(dataset.train))
  loop = TrainLoop(gan, source, global_batch=config.batch_size, steps_per_call=chunk,
                   parallel=config.parallel, devices=tuple(devices))
  train_key = jax.random.fold_in(root_key, 1)
  fixed_z = sample_latent(gan, jax.random.fold_in(root_key, 2), (SAMPLE_ROWS**2,))

  dstate, ddata = loop.put_state(state), loop.put_data(dataset.train)
  total = config.num_train_steps
  step, pending, t_last, step_last = start, [], time.time(), start
  t_start = time.time()
  if _is_main():
    epochs = total * gan.real_batches_per_step / batches_per_epoch
    hosts = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
    print(f"Training {total} iterations ({epochs:.1f} epochs) from step {start}: global batch "
          f"{config.batch_size} on {len(devices)} {devices[0].platform} device(s){hosts}, "
          f"{chunk} iterations per compiled call.", flush=True)
  while step < total:
    if total - step < chunk:  # a final partial chunk compiles once more
      loop = TrainLoop(gan, source, global_batch=config.batch_size, steps_per_call=total - step,
                       parallel=config.parallel, devices=tuple(devices))
    dstate, metrics = loop(dstate, ddata, train_key)
    metrics = jax.device_get(metrics)  # [chunk] per metric: a few hundred floats
    step += loop.steps_per_call
    _check_finite(metrics, step - loop.steps_per_call, ckpt.latest_step())
    pending.append(metrics)
    done = step >= total
    row = {}
    if step % config.log_every == 0 or done:
      means = {k: float(np.mean(np.concatenate([m[k] for m in pending]))) for k in pending[0]}
      pending = []
      now = time.time()
      rate = (step - step_last) / max(now - t_last, 1e-9)
      t_last, step_last = now, step
      if _is_main():
        # One copy of the optimizer states only: their scalars, not the parameters.
        d_opt, g_opt = loop.get_state((dstate.d_opt_state, dstate.g_opt_state))
        row.update({"step": step, "epoch": step * gan.real_batches_per_step / batches_per_epoch,
                    "wall_time": now - t_start, "iterations_per_second": rate, **means})
        row.update({f"d_{k}": v for k, v in _hyperparams(d_opt).items()})
        row.update({f"g_{k}": v for k, v in _hyperparams(g_opt).items()})
        print(f"step {step}/{total}  epoch {row['epoch']:.1f}  {rate:.1f} it/s  "
              f"ETA {_fmt_time((total - step) / max(rate, 1e-9))}  |  D loss "
              f"{means['d_loss']:.4f}  G loss {means['g_loss']:.4f}  D(x) {means['d_real']:.3f}  "
              f"D(G(z)) {means['d_fake']:.3f}", flush=True)
    if (step % config.eval_every == 0 or done) and _is_main():
      t_eval = time.time()
      row.update(_evaluate(gan, loop.get_state(dstate), dataset, evaluator, recorder, workdir,
                           fixed_z, jax.random.fold_in(root_key, 3)))
      t_last += time.time() - t_eval  # keep evaluation out of the it/s figure
    if row and _is_main():
      recorder.log(row)
      if step % config.eval_every == 0 or done:
        visualize.plot_curves([r for r in recorder.rows if "d_loss" in r],
                              os.path.join(workdir, "curves.png"))
        visualize.plot_eval(recorder.rows, os.path.join(workdir, "eval.png"))
    if step % config.checkpoint_every == 0 or done:
      ckpt.save(loop.get_state(dstate))
  final = loop.get_state(dstate)
  ckpt.close()
  if _is_main():
    print(f"Done: {step} iterations in {_fmt_time(time.time() - t_start)}; outputs in {workdir}",
          flush=True)
  return final



def train_sweep(config: ml_collections.ConfigDict, workdir: str) -> list[dict]:
  """Every replica of ``config.sweep``, one after another, each in ``<workdir>/<replica>``.

  Each replica is a whole run (its own checkpoints, metrics, samples and
  evaluation), so launching the same workdir again resumes the unfinished ones
  and passes over the finished. ``<workdir>/sweep.csv`` gets one row per finished
  replica: its swept values and its final metrics row.
  """
  from gan_jax import sweep  # pylint: disable=import-outside-toplevel
  replicas = sweep.expand(config)
  if _is_main():
    os.makedirs(workdir, exist_ok=True)
    print(f"Sweep of {len(replicas)} runs, one after another: "
          f"{', '.join(r.name for r in replicas)}", flush=True)
  rows = []
  for i, replica in enumerate(replicas):
    sub = os.path.join(workdir, replica.name)
    if _is_main():
      print(f"[{i + 1}/{len(replicas)}] {replica.name} -> {sub}", flush=True)
    train_and_evaluate(replica.config, sub)
    if _is_main():
      with open(os.path.join(sub, "metrics.jsonl")) as f:
        final = [json.loads(line) for line in f if line.strip()][-1]
      rows.append({"replica": replica.name, **replica.values,
                   **{k: v for k, v in final.items() if not isinstance(v, (list, dict))}})
      sweep.write_summary(os.path.join(workdir, "sweep.csv"), rows)
  return rows
