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
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorboardX

from gan_jax import (build, checkpoint, data as data_lib, evaluate, optim, preemption, schema,
                     sweep, visualize, workdir as workdir_lib)
from gan_jax.errors import UserError
from gan_jax.loop import ArraySource, TrainLoop
from gan_jax.state import GAN, GANState, sample_latent, set_hparams

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


def chunk_length(config: ml_collections.ConfigDict) -> int:
  """Iterations per compiled call: every log, eval and checkpoint falls on a boundary."""
  return math.gcd(config.steps_per_call, config.log_every, config.eval_every,
                  config.checkpoint_every)


def _is_main() -> bool:
  return jax.process_index() == 0


def _hyperparams(opt_state: Any, opt_cfg: Any) -> dict[str, float]:
  """The current learning rate, momentum etc. of an optimizer made by ``optim.make_optimizer``."""
  hp = {k: float(v) for k, v in (getattr(opt_state, "hyperparams", None) or {}).items()}
  lr = optim.current_learning_rate(opt_cfg, opt_state)
  if lr is not None:
    hp["learning_rate"] = lr
  return hp


class _Recorder:
  """metrics.jsonl, TensorBoard scalars/images and the console line (process 0 only)."""

  def __init__(self, workdir: str, resume_step: int):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.rows = []
    if os.path.exists(self.path):  # keep what precedes the restored checkpoint
      with open(self.path) as f:
        self.rows = [r for r in map(json.loads, filter(str.strip, f)) if r["step"] <= resume_step]
      self._rewrite()
    self.tb = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))

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
        self.tb.add_scalar(k, v, row["step"])
    self.tb.flush()

  def image(self, tag: str, image: np.ndarray, step: int) -> None:
    """``image``: uint8 [H, W, C]."""
    self.tb.add_image(tag, image, step, dataformats="HWC")
    self.tb.flush()

  def close(self) -> None:
    self.tb.close()


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
  has_ema = state.ema_params is not None
  # samples/step_N.png shows the generator a run is judged by (the EMA when there is one);
  # samples/raw_step_N.png the raw G beside it.
  for ema, prefix in (((True, ""), (False, "raw_")) if has_ema else ((False, ""),)):
    images = evaluate.generate(gan, state, fixed_z, ema=ema)
    grid = visualize.image_grid(images, dataset.image_shape, rows=SAMPLE_ROWS, cols=SAMPLE_ROWS)
    visualize.save_png(os.path.join(workdir, "samples", f"{prefix}step_{step:07d}.png"), grid)
    recorder.image(f"{prefix}samples", grid, step)
  if not evaluator.active:
    return {}

  def report(ema: bool, got: dict, seconds: float) -> None:
    which = " (EMA of G)" if ema else ""
    print(f"eval at step {step}{which}: {evaluate.summary(got)} ({seconds:.0f} s)", flush=True)
    if got.get("classes_covered", 10) < 10:
      print(f"warning: mode collapse at step {step}{which}: only {got['classes_covered']} of "
            f"10 digit classes get at least 1% of the samples (histogram "
            f"{got['class_histogram']}).", flush=True)
  return evaluate.score_generators(evaluator, gan, state, key, report)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> GANState:
  """Train ``config``'s GAN, writing everything into ``workdir``; returns the final state.

  Resumes from the newest intact checkpoint in ``workdir`` when there is one.
  Every check of the config and the workdir runs before data are read or code
  compiled. SIGTERM/SIGINT end the run after the current chunk with a
  checkpoint (see ``gan_jax.preemption``); the returned state is then the one
  checkpointed.
  """
  validate_config(config, len(_devices(config)))  # before the lock creates the workdir
  with workdir_lib.locked(workdir, enabled=_is_main()):
    return train_group([config], [workdir])[0]


def _devices(config: ml_collections.ConfigDict) -> list[Any]:
  if config.parallel == "none" and jax.process_count() > 1:
    raise UserError(f"config.parallel='none' trains on one device, but this is a run of "
                    f"{jax.process_count()} processes; use 'pmap' or 'shard_map' to span them.")
  # pmap/shard_map span the devices of every process; each process feeds its local ones.
  return jax.devices() if config.parallel != "none" else jax.local_devices()[:1]


class _Misaligned(Exception):
  """The replicas of a group were checkpointed at different steps."""


def train_group(configs: list[ml_collections.ConfigDict], workdirs: list[str],
                names: list[str] | None = None) -> list[GANState]:
  """Train GANs whose configs differ only in ``sweep.VMAPPABLE`` fields, one per workdir.

  One config trains alone. Several train as one compiled program, the chunk
  ``jax.vmap``-ed over their stacked states inside the data parallelism; each
  replica still writes a complete run into its own workdir (metrics, samples,
  evaluations, checkpoints), exactly what training it alone writes. If their
  newest checkpoints are at different steps (one was damaged, say), they train
  one after another instead. Returns the final states (host arrays).
  """
  names = names or [""] * len(configs)
  devices = _devices(configs[0])
  for config in configs:
    validate_config(config, len(devices))
  for workdir in workdirs:
    prepare_workdir(workdir)
  ckpts = [checkpoint.Checkpointer(w, keep=c.get("keep_checkpoints", 2),
                                   keep_every=c.get("keep_every", 0))
           for c, w in zip(configs, workdirs, strict=True)]
  closers: list[Any] = []  # the TensorBoard writers, closed however training ends
  try:
    for ckpt, config in zip(ckpts, configs, strict=True):
      schema.check_resumable(ckpt, config)
    return _train(configs, workdirs, names, tuple(devices), ckpts, closers)
  except _Misaligned:
    pass
  finally:
    for close in closers + [ckpt.close for ckpt in ckpts]:
      close()
  _warn("The replicas' newest checkpoints are at different steps; they train one after "
        "another.")
  finals = []
  for config, workdir in zip(configs, workdirs, strict=True):
    finals += train_group([config], [workdir])
    if preemption.STOP.signal_name is not None:
      break
  return finals


def _warn(message: str) -> None:
  if _is_main():
    print(message, flush=True)


def _train(configs: list[ml_collections.ConfigDict], workdirs: list[str], names: list[str],
           devices: tuple[Any, ...], ckpts: list[checkpoint.Checkpointer],
           closers: list[Any]) -> list[GANState]:
  config, num = configs[0], len(configs)  # config: what the replicas share
  dataset = data_lib.load(config.data)
  batches_per_epoch = len(dataset.train) // config.batch_size
  group_gan = None
  if num > 1:  # one spec for the group; each replica's own values live in its state
    group_gan = build.make_group_gan(configs, data_dim=dataset.dim,
                                     batches_per_epoch=batches_per_epoch)
  built = [build.make_gan_and_state(c, dataset, group_gan) for c in configs]
  gans, roots, initials = ([b[i] for b in built] for i in range(3))

  states, rollbacks = list(initials), 0
  found = _restore_all(ckpts, initials)
  starts = {0 if f is None else int(f[0].step) for f in found}
  if len(starts) > 1:
    raise _Misaligned()
  for i, f in enumerate(found):
    if f is not None:  # the optimizers' learning rates may have changed between launches
      states[i] = _this_runs_rates(gans[i], f[0], configs[i])
      rollbacks = max(rollbacks, int(f[1].get("rollbacks", 0)))
      _warn(f"Resuming {_label(names[i])}from the checkpoint at step {int(f[0].step)} in "
            f"{ckpts[i].directory}")
  start = starts.pop()

  if _is_main():
    for c, w in zip(configs, workdirs, strict=True):
      with open(os.path.join(w, "config.json"), "w") as f:
        f.write(c.to_json_best_effort(indent=2, sort_keys=True))
  recorders = [_Recorder(w, start) for w in workdirs] if _is_main() else []
  closers.extend(r.close for r in recorders)
  evaluator = evaluate.Evaluator(config, dataset) if _is_main() else None

  chunk = chunk_length(config)
  source = ArraySource(len(dataset.train))
  loops: dict[int, TrainLoop] = {}

  def loop_of(length: int) -> TrainLoop:
    if length not in loops:  # a final partial chunk compiles once more
      loops[length] = TrainLoop(gans[0], source, global_batch=config.batch_size,
                                steps_per_call=length, parallel=config.parallel, devices=devices,
                                vmapped=num > 1)
    return loops[length]

  loop = loop_of(chunk)
  base_keys = [jax.random.fold_in(r, 1) for r in roots]

  def train_key(rollbacks: int) -> jax.Array:  # each rollback continues with a fresh key
    keys = [k if rollbacks == 0 else jax.random.fold_in(k, rollbacks) for k in base_keys]
    return keys[0] if num == 1 else jnp.stack(keys)

  def put(states: list[GANState]) -> Any:
    return loop.put_state(states[0] if num == 1 else sweep.stack(states))

  def host_states(dstate: Any) -> list[GANState]:
    host = checkpoint.host_copy(loop.get_state(dstate))
    return [host] if num == 1 else [sweep.unstack(host, i) for i in range(num)]

  def per_replica(tree: Any) -> list[Any]:
    return [tree] if num == 1 else [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(num)]

  fixed_z = [sample_latent(g, jax.random.fold_in(r, 2), (SAMPLE_ROWS**2,))
             for g, r in zip(gans, roots, strict=True)]
  config_json = [c.to_json_best_effort(sort_keys=True) for c in configs]

  def save(hosts: list[GANState]) -> None:
    for i, host in enumerate(hosts):
      bad = _nonfinite_leaves(host)
      if bad:  # never checkpoint a diverged state
        raise _divergence_error(f"{_label(names[i])}the parameters {', '.join(bad[:4])} became "
                                f"non-finite", int(host.step), ckpts[i].latest_step(), rollbacks)
    for i, host in enumerate(hosts):
      ckpts[i].save(host, {"config": config_json[i], "rollbacks": rollbacks})

  dstate, ddata = put(states), loop.put_data(dataset.train)
  total = config.num_train_steps
  step, pending, t_last, step_last = start, [], time.time(), start
  t_start = time.time()
  if _is_main():
    epochs = total * gans[0].real_batches_per_step / batches_per_epoch
    hosts = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
    many = f", {num} replicas vmapped in one program" if num > 1 else ""
    print(f"Training {total} iterations ({epochs:.1f} epochs) from step {start}: global batch "
          f"{config.batch_size} on {len(devices)} {devices[0].platform} device(s){hosts}, "
          f"{chunk} iterations per compiled call{many}.", flush=True)
  stopped_by = None
  with preemption.STOP.installed() as stop:
    while step < total:
      if stop.requested():
        stopped_by = stop.signal_name or "a stop signal to another process"
        break
      loop = loop_of(min(chunk, total - step))
      dstate, metrics = loop(dstate, ddata, train_key(rollbacks))
      metrics = per_replica(jax.device_get(metrics))  # [chunk] per metric and replica
      first, step = step, step + loop.steps_per_call
      bad = [(i, b) for i, m in enumerate(metrics)
             if (b := _first_nonfinite(m, first)) is not None]
      if bad:
        i, (key, value, bad_step) = min(bad, key=lambda ib: ib[1][2])
        what = f"{_label(names[i])}{key} became {value}"
        if (config.get("on_divergence", "stop") != "rollback" or
            rollbacks >= config.get("max_rollbacks", 3)):
          raise _divergence_error(what, bad_step, ckpts[i].latest_step(), rollbacks)
        rollbacks += 1
        found = _restore_all(ckpts, initials)
        states = [init if f is None else _this_runs_rates(g, f[0], c)
                  for f, init, g, c in zip(found, initials, gans, configs, strict=True)]
        if len({int(s.step) for s in states}) > 1:
          raise _divergence_error(what, bad_step, ckpts[i].latest_step(), rollbacks)
        step = step_last = int(states[0].step)
        dstate, pending, t_last = put(states), [], time.time()
        for recorder in recorders:
          recorder.truncate(step)
        _warn(f"warning: training diverged: {what} at step {bad_step}. Rolled back to step "
              f"{step} ({'the newest checkpoint' if found[0] else 'the initial state'}) and "
              f"continuing with a new random key (rollback {rollbacks} of "
              f"{config.get('max_rollbacks', 3)}).")
        continue
      pending.append(metrics)
      done = step >= total
      rows = [{} for _ in range(num)]
      if step % config.log_every == 0 or done:
        now = time.time()
        rate = (step - step_last) / max(now - t_last, 1e-9)
        t_last, step_last = now, step
        if _is_main():
          # One copy of the optimizer states only: their scalars, not the parameters.
          opts = per_replica(jax.device_get(loop.get_state((dstate.d.opt_state,
                                                            dstate.g.opt_state))))
          for i in range(num):
            means = {k: float(np.mean(np.concatenate([m[i][k] for m in pending])))
                     for k in pending[0][i]}
            row = rows[i]
            row.update({"step": step, "epoch": step * gans[i].real_batches_per_step /
                        batches_per_epoch, "wall_time": now - t_start,
                        "iterations_per_second": rate, **means})
            g_opt_cfg = configs[i].get("g_optimizer") or configs[i].optimizer
            row.update({f"d_{k}": v for k, v in
                        _hyperparams(opts[i][0], configs[i].optimizer).items()})
            row.update({f"g_{k}": v for k, v in _hyperparams(opts[i][1], g_opt_cfg).items()})
            if rollbacks:
              row["rollbacks"] = rollbacks
            print(f"{_label(names[i])}step {step}/{total}  epoch {row['epoch']:.1f}  "
                  f"{rate:.1f} it/s  ETA {_fmt_time((total - step) / max(rate, 1e-9))}  |  "
                  f"D loss {means['d_loss']:.4f}  G loss {means['g_loss']:.4f}  D(x) "
                  f"{means['d_real']:.3f}  D(G(z)) {means['d_fake']:.3f}", flush=True)
        pending = []
      eval_due = step % config.eval_every == 0 or done
      ckpt_due = step % config.checkpoint_every == 0 or done
      # One host copy of the state serves both this chunk's evaluation and its checkpoint.
      hosts = host_states(dstate) if ckpt_due or (eval_due and _is_main()) else None
      if eval_due and _is_main():
        t_eval = time.time()
        for i, host in enumerate(hosts):
          rows[i].update(_evaluate(gans[i], host, dataset, evaluator, recorders[i], workdirs[i],
                                   fixed_z[i], jax.random.fold_in(roots[i], 3)))
        t_last += time.time() - t_eval  # keep evaluation out of the it/s figure
      if _is_main():
        for i, row in enumerate(rows):
          if not row:
            continue
          recorders[i].log(row)
          if eval_due:
            visualize.plot_curves([r for r in recorders[i].rows if "d_loss" in r],
                                  os.path.join(workdirs[i], "curves.png"))
            visualize.plot_eval(recorders[i].rows, os.path.join(workdirs[i], "eval.png"))
      if ckpt_due:
        save(hosts)
    finals = host_states(dstate)
    if stopped_by is not None:
      save(finals)
      if _is_main():
        where = ckpts[0].directory if num == 1 else "each replica's checkpoints/"
        print(f"Stopped by {stopped_by} at step {step} of {total}; the checkpoint at step "
              f"{step} is in {where}. Launch the same command again to resume.", flush=True)
      return finals
  if _is_main():
    print(f"Done: {step} iterations in {_fmt_time(time.time() - t_start)}; outputs in "
          f"{', '.join(workdirs) if num < 4 else os.path.dirname(workdirs[0])}", flush=True)
  return finals


def _restore_all(ckpts: list[checkpoint.Checkpointer], initials: list[GANState]
                 ) -> list[tuple[GANState, dict] | None]:
  return [ck.restore_latest_valid(init, report=_warn)
          for ck, init in zip(ckpts, initials, strict=True)]


def _label(name: str) -> str:
  return f"[{name}] " if name else ""


def _this_runs_rates(gan: GAN, state: GANState, config: ml_collections.ConfigDict) -> GANState:
  """A restored state with this launch's learning rates (they may change between launches)."""
  hp = build.replica_hparams(config)
  return set_hparams(gan, state, {k: hp[k] for k in ("d_learning_rate", "g_learning_rate")})


def train_sweep(config: ml_collections.ConfigDict, workdir: str) -> list[dict]:
  """Every replica of ``config.sweep``, each a whole run in ``<workdir>/<replica>``.

  Replicas whose configs differ only in vmappable fields (seed, learning rates,
  label smoothing, G loss) train together as one vmapped program; the others
  one group after another. Each replica's sub-workdir holds what training it
  alone would write (checkpoints, metrics, samples, evaluation), so launching
  the same workdir again resumes the unfinished replicas and passes over the
  finished. ``<workdir>/sweep.csv`` gets one row per finished replica: its
  swept values and its final metrics row.
  """
  replicas = validate_experiment(config)
  with workdir_lib.locked(workdir, enabled=_is_main()):
    return _train_sweep(replicas, workdir)


def validate_experiment(config: ml_collections.ConfigDict) -> list[sweep.Replica]:
  """Check every replica's config (one without a sweep); returns the replicas."""
  replicas = sweep.expand(config)
  for replica in replicas:  # every replica's config is checked before any of them trains
    validate_config(replica.config, len(_devices(replica.config)))
  return replicas


def _train_sweep(replicas: list[sweep.Replica], workdir: str) -> list[dict]:
  grouped = sweep.groups(replicas)
  if _is_main():
    os.makedirs(workdir, exist_ok=True)
    print(f"Sweep of {len(replicas)} runs in {len(grouped)} group(s) of one program each: "
          f"{'; '.join(', '.join(r.name for r in g) for g in grouped)}", flush=True)
  rows = []
  for i, group in enumerate(grouped):
    subs = [os.path.join(workdir, r.name) for r in group]
    if _is_main():
      print(f"[group {i + 1}/{len(grouped)}] {', '.join(r.name for r in group)} -> "
            f"{workdir}/<replica>", flush=True)
    train_group([r.config for r in group], subs, [r.name for r in group])
    if preemption.STOP.signal_name is not None:
      break  # the group saved checkpoints and said so; the next launch goes on from them
    if _is_main():
      for replica, sub in zip(group, subs, strict=True):
        with open(os.path.join(sub, "metrics.jsonl")) as f:
          final = [json.loads(line) for line in f if line.strip()][-1]
        rows.append({"replica": replica.name, **replica.values,
                     **{k: v for k, v in final.items() if not isinstance(v, (list, dict))}})
      sweep.write_summary(os.path.join(workdir, "sweep.csv"), rows)
  return rows
