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

from gan_jax import (build, checkpoint, data as data_lib, evaluate, preemption, schema,
                     tensorboard, visualize)
from gan_jax.errors import UserError
from gan_jax.loop import ArraySource, TrainLoop
from gan_jax.state import GAN, GANState, sample_latent

SAMPLE_ROWS = 10  # sample grids are SAMPLE_ROWS x SAMPLE_ROWS


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Refuse configs that cannot run, before any data is read or code compiled."""
  schema.check(config, num_devices)


def prepare_workdir(workdir: str) -> None:
  """Create ``workdir`` and make sure files can be written there."""
  probe = os.path.join(workdir, f".write_test_{os.getpid()}")
  try:
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise UserError(f"The workdir {workdir!r} cannot be written ({e.strerror}: "
                    f"{e.filename or workdir}); pass a --workdir where this user may create "
                    f"files.") from e


def check_resumable(ckpt: checkpoint.Checkpointer, config: ml_collections.ConfigDict) -> None:
  """Refuse to resume a checkpoint made with a different model, game or data set."""
  saved = ckpt.saved_config()
  if saved is None:
    return
  refused, noticed = schema.resume_differences(saved, config)
  if refused:
    shown = "; ".join(refused[:6]) + ("; ..." if len(refused) > 6 else "")
    raise UserError(
        f"The workdir {ckpt.workdir!r} holds checkpoints (newest: step {ckpt.latest_step()}) of "
        f"a run with different settings, which this run would resume: {shown}. Launch with "
        f"the checkpoint's settings to resume it, or pass another --workdir to start a new "
        f"run. (Run length, log/eval/checkpoint intervals, evaluation settings and the "
        f"optimizers' hyperparameters may change between launches.)")
  if noticed and _is_main():
    print(f"Resuming with changed optimizer settings: {'; '.join(noticed)}.", flush=True)


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

  def truncate(self, step: int) -> None:
    """Forget the rows after ``step`` (a rollback)."""
    self.rows = [r for r in self.rows if r["step"] <= step]
    self._rewrite()

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


class Divergence(UserError):
  """Training produced a non-finite loss, gradient norm or parameter."""


def _first_nonfinite(metrics: dict[str, np.ndarray], first_step: int
                     ) -> tuple[str, float, int] | None:
  """(quantity, value, step) of the earliest non-finite metric of a chunk, or None."""
  found = None
  for key, values in sorted(metrics.items()):
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size and (found is None or first_step + bad[0] + 1 < found[2]):
      found = (key, float(values[bad[0]]), first_step + int(bad[0]) + 1)
  return found


def _nonfinite_leaves(tree: Any) -> list[str]:
  """Paths of the floating-point leaves of ``tree`` that hold a NaN or inf."""
  bad = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    a = np.asarray(leaf)
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
      bad.append(jax.tree_util.keystr(path))
  return bad


def _divergence_error(what: str, step: int, last_good: int | None, rollbacks: int) -> Divergence:
  kept = (f"The newest checkpoint (step {last_good}) is intact and was taken before the "
          f"divergence" if last_good is not None else "No checkpoint had been written")
  tried = (f" after {rollbacks} rollback(s) to the last good state with new random keys"
           if rollbacks else "")
  retry = ("raise --config.max_rollbacks" if rollbacks else
           "set --config.on_divergence=rollback to retry from it with a new random key")
  return Divergence(
      f"Training diverged{tried}: {what} at step {step}. {kept}. Lower the learning rate "
      f"(--config.optimizer.learning_rate) or change the seed and launch again (a lower "
      f"learning rate resumes from that checkpoint), or {retry}.")


def _check_finite(metrics: dict[str, np.ndarray], first_step: int, last_good: int | None,
                  rollbacks: int = 0) -> None:
  """Stop, naming the step and quantity, at the first non-finite loss or gradient norm."""
  found = _first_nonfinite(metrics, first_step)
  if found:
    key, value, step = found
    raise _divergence_error(f"{key} became {value}", step, last_good, rollbacks)


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

  Resumes from the newest intact checkpoint in ``workdir`` when there is one.
  Every check of the config and the workdir runs before data are read or code
  compiled. SIGTERM/SIGINT end the run after the current chunk with a
  checkpoint (see ``gan_jax.preemption``); the returned state is then the one
  checkpointed.
  """
  if config.parallel == "none" and jax.process_count() > 1:
    raise UserError(f"config.parallel='none' trains on one device, but this is a run of "
                    f"{jax.process_count()} processes; use 'pmap' or 'shard_map' to span them.")
  # pmap/shard_map span the devices of every process; each process feeds its local ones.
  devices = jax.devices() if config.parallel != "none" else jax.local_devices()[:1]
  validate_config(config, len(devices))
  prepare_workdir(workdir)
  ckpt = checkpoint.Checkpointer(workdir, keep=config.get("keep_checkpoints", 2),
                                 keep_every=config.get("keep_every", 0))
  try:
    check_resumable(ckpt, config)
    return _train(config, workdir, tuple(devices), ckpt)
  finally:
    ckpt.close()


def _warn(message: str) -> None:
  if _is_main():
    print(message, flush=True)


def _train(config: ml_collections.ConfigDict, workdir: str, devices: tuple[Any, ...],
           ckpt: checkpoint.Checkpointer) -> GANState:
  dataset = data_lib.load(config.data)
  batches_per_epoch = len(dataset.train) // config.batch_size
  gan, root_key, initial = build.make_gan_and_state(config, dataset)

  state, rollbacks = initial, 0
  found = ckpt.restore_latest_valid(initial, report=_warn)
  if found is not None:
    state, meta = found
    rollbacks = int(meta.get("rollbacks", 0))
    _warn(f"Resuming from the checkpoint at step {int(state.step)} in {ckpt.directory}")
  start = int(state.step)

  if _is_main():
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  recorder = _Recorder(workdir, start) if _is_main() else None
  evaluator = evaluate.Evaluator(config, dataset) if _is_main() else None

  chunk = chunk_length(config)
  source = ArraySource(len(dataset.train))
  loops: dict[int, TrainLoop] = {}

  def loop_of(length: int) -> TrainLoop:
    if length not in loops:  # a final partial chunk compiles once more
      loops[length] = TrainLoop(gan, source, global_batch=config.batch_size,
                                steps_per_call=length, parallel=config.parallel, devices=devices)
    return loops[length]

  loop = loop_of(chunk)
  base_key = jax.random.fold_in(root_key, 1)

  def train_key(rollbacks: int) -> jax.Array:  # each rollback continues with a fresh key
    return base_key if rollbacks == 0 else jax.random.fold_in(base_key, rollbacks)

  fixed_z = sample_latent(gan, jax.random.fold_in(root_key, 2), (SAMPLE_ROWS**2,))
  config_json = config.to_json_best_effort(sort_keys=True)

  def save(host_state: GANState) -> None:
    bad = _nonfinite_leaves(host_state)
    if bad:  # never checkpoint a diverged state
      raise _divergence_error(f"the parameters {', '.join(bad[:4])} became non-finite",
                              int(host_state.step), ckpt.latest_step(), rollbacks)
    ckpt.save(host_state, {"config": config_json, "rollbacks": rollbacks})

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
  stopped_by = None
  with preemption.STOP.installed() as stop:
    while step < total:
      if stop.requested():
        stopped_by = stop.signal_name or "a stop signal to another process"
        break
      loop = loop_of(min(chunk, total - step))
      dstate, metrics = loop(dstate, ddata, train_key(rollbacks))
      metrics = jax.device_get(metrics)  # [chunk] per metric: a few hundred floats
      first, step = step, step + loop.steps_per_call
      bad = _first_nonfinite(metrics, first)
      if bad is not None:
        key, value, bad_step = bad
        if (config.get("on_divergence", "stop") != "rollback" or
            rollbacks >= config.get("max_rollbacks", 3)):
          raise _divergence_error(f"{key} became {value}", bad_step, ckpt.latest_step(),
                                  rollbacks)
        rollbacks += 1
        found = ckpt.restore_latest_valid(initial, report=_warn)
        state = initial if found is None else found[0]
        step = step_last = int(state.step)
        dstate, pending, t_last = loop.put_state(state), [], time.time()
        if recorder is not None:
          recorder.truncate(step)
        _warn(f"warning: training diverged: {key} became {value} at step {bad_step}. Rolled "
              f"back to step {step} ({'the newest checkpoint' if found else 'the initial state'})"
              f" and continuing with a new random key (rollback {rollbacks} of "
              f"{config.get('max_rollbacks', 3)}).")
        continue
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
          if rollbacks:
            row["rollbacks"] = rollbacks
          print(f"step {step}/{total}  epoch {row['epoch']:.1f}  {rate:.1f} it/s  "
                f"ETA {_fmt_time((total - step) / max(rate, 1e-9))}  |  D loss "
                f"{means['d_loss']:.4f}  G loss {means['g_loss']:.4f}  D(x) "
                f"{means['d_real']:.3f}  D(G(z)) {means['d_fake']:.3f}", flush=True)
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
        save(checkpoint.host_copy(loop.get_state(dstate)))
    final = checkpoint.host_copy(loop.get_state(dstate))
    if stopped_by is not None:
      save(final)
      if _is_main():
        print(f"Stopped by {stopped_by} at step {step} of {total}; the checkpoint at step "
              f"{step} is in {ckpt.directory}. Launch the same command again to resume.",
              flush=True)
      return final
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
  for replica in replicas:  # every replica's config is checked before any of them trains
    validate_config(replica.config, len(jax.devices()) if replica.config.parallel != "none"
                    else 1)
  for i, replica in enumerate(replicas):
    sub = os.path.join(workdir, replica.name)
    if _is_main():
      print(f"[{i + 1}/{len(replicas)}] {replica.name} -> {sub}", flush=True)
    train_and_evaluate(replica.config, sub)
    if preemption.STOP.signal_name is not None:
      break  # the replica saved a checkpoint and said so; the next launch goes on from it
    if _is_main():
      with open(os.path.join(sub, "metrics.jsonl")) as f:
        final = [json.loads(line) for line in f if line.strip()][-1]
      rows.append({"replica": replica.name, **replica.values,
                   **{k: v for k, v in final.items() if not isinstance(v, (list, dict))}})
      sweep.write_summary(os.path.join(workdir, "sweep.csv"), rows)
  return rows
