"""Every field an experiment config may hold, its type and its allowed values.

``COMMON`` holds the fields of every experiment; each experiment adds its own
sections (``Experiment.fields``, in its project).
``check(config, num_devices)`` runs before any data is read or code compiled and
turns each mistake (an unknown or missing field, a wrong type, a value out of
range, a batch that does not split over the devices) into one ``UserError``
naming the field and what to do. ``resume_differences`` compares a config with
the one a workdir's checkpoint was made with.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable
from typing import Any

from gan_jax import kernels, losses, optim, players, state
from gan_jax.errors import UserError
from gan_jax.loop import batch_split_error
from gan_jax.run import checkpoint

_NO_DEFAULT = object()


@dataclasses.dataclass(frozen=True)
class Field:
  kind: str  # "int", "float", "str", "bool", "ints" (a tuple of positive ints)
  rule: Callable[[Any], bool] | None = None
  expect: str = ""  # what ``rule`` asks, for the message
  default: Any = _NO_DEFAULT  # a field with a default may be absent


def positive(kind="int", **kw):
  return Field(kind, lambda v: v > 0, "a positive number" if kind == "float" else
               "a positive integer", **kw)


def choice(options, **kw):
  return Field("str", lambda v: v in options, f"one of {', '.join(map(repr, options))}", **kw)


def unit(**kw):
  return Field("float", lambda v: 0.0 < v <= 1.0, "a number in (0, 1]", **kw)


_ACTIVATIONS = tuple(sorted(players.ACTIVATIONS))
# Every optimizer may also take Lookahead (gan_jax.optim.lookahead) and a linear anneal of
# its updates to 0 (gan_jax.optim.anneal, from update anneal_start over anneal_steps): 0 = off.
_WRAPPERS = {
    "anneal_start": Field("int", lambda v: v >= 0, "an integer >= 0", default=0),
    "anneal_steps": Field("int", lambda v: v >= 0, "an integer >= 0 (0: off)", default=0),
    "lookahead_steps": Field("int", lambda v: v >= 0, "an integer >= 0 (0: off)", default=0),
    "lookahead_alpha": Field("float", lambda v: 0.0 < v <= 1.0, "a number in (0, 1]",
                             default=0.5),
}
_OPTIMIZER_FIELDS = {
    "paper_sgd": {
        "learning_rate": positive("float"),
        "decay_factor": Field("float", lambda v: v >= 1.0, "a number >= 1"),
        "min_learning_rate": Field("float", lambda v: v >= 0.0, "a number >= 0"),
        "init_momentum": Field("float", lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"),
        "final_momentum": Field("float", lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"),
        "momentum_start_epoch": Field("int", lambda v: v >= 0, "an integer >= 0"),
        "momentum_saturate_epoch": Field("int", lambda v: v >= 0, "an integer >= 0"),
        "warmup_steps": Field("int", lambda v: v >= 0, "an integer >= 0", default=0),
        **_WRAPPERS,
    },
    "sgd": {"learning_rate": positive("float"),
            "momentum": Field("float", lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"),
            **_WRAPPERS},
    "adam": {"learning_rate": positive("float"),
             "b1": Field("float", lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"),
             "b2": Field("float", lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"),
             **_WRAPPERS},
}

# The fields every experiment has: the run, the optimizers and the game.
COMMON: dict[str, Any] = {
    "experiment": Field("str", default=""),  # the project that trains it (launch.py resolves it)
    "seed": Field("int"),
    "batch_size": positive(),
    "num_train_steps": positive(),
    "log_every": positive(),
    "eval_every": positive(),
    # a denser cadence early, when the models change fastest: also every eval_early_every
    # steps up to step eval_early_until (0: none)
    "eval_early_every": Field("int", lambda v: v >= 0, "an integer >= 0 (0: none)", default=0),
    "eval_early_until": Field("int", lambda v: v >= 0, "an integer >= 0", default=0),
    "checkpoint_every": positive(),
    # the curves' pictures are redrawn after an evaluation at most this often (wall seconds),
    # and after the last step; 0: after every evaluation
    "plot_every_seconds": Field("float", lambda v: v >= 0.0, "a number >= 0 (0: every "
                                "evaluation)", default=60.0),
    "steps_per_call": positive(default=500),
    "keep_checkpoints": positive(default=2),
    "keep_every": Field("int", lambda v: v >= 0, "an integer >= 0 (0: keep none extra)",
                        default=0),
    "parallel": choice(("pmap", "shard_map", "none"), default="pmap"),
    # The kernel set (gan_jax.kernels): "auto" = the XLA:CPU rewrites on CPUs, plain elsewhere.
    "kernels": choice(kernels.CHOICES, default="auto"),
    "sweep": Field("replicas", default=()),
    "on_divergence": choice(("stop", "rollback"), default="stop"),
    "max_rollbacks": Field("int", lambda v: v >= 0, "an integer >= 0", default=3),
    "optimizer": "optimizer",  # checked by name, see _OPTIMIZER_FIELDS
    "g_optimizer": "optimizer",  # optional: G's own optimizer
    "gan": {
        "g_loss": choice(losses.G_LOSS_KINDS),
        "d_loss": choice(losses.D_LOSS_KINDS, default="bce"),
        "r1_gamma": Field("float", lambda v: v >= 0.0, "a number >= 0 (0: off)", default=0.0),
        "gp_weight": Field("float", lambda v: v >= 0.0, "a number >= 0 (0: off)", default=0.0),
        # weight of a feature-matching term in G's loss (losses.WithFeatureMatching); 0 = off
        "feature_matching": Field("float", lambda v: v >= 0.0, "a number >= 0 (0: off)",
                                  default=0.0),
        # G's EMA, kept for sampling and evaluation; 0 = none. It changes no update.
        "ema_decay": Field("float", *state.RULES["ema_decay"], default=0.0),
        # gamma of a power-function EMA (decay min(ema_decay, (1 - 1/t)^(gamma+1)) at G
        # update t: an average over the last ~1/(gamma+2) of the run); 0 = a constant decay.
        "ema_power": Field("float", *state.RULES["ema_power"], default=0.0),
        # d_grad_norm / g_grad_norm recorded; False leaves them out. They are metrics, not part
        # of the update: measured at every grad_norms_every-th iteration, or with 0 once per
        # compiled call (its last iteration, so at every logged step); 1 = every iteration.
        "grad_norms": Field("bool", default=True),
        "grad_norms_every": Field("int", lambda v: v >= 0, "an integer >= 0 (0: at logged "
                                  "steps only)", default=0),
        "real_label": Field("float", *state.RULES["real_label"]),
        "k": Field("int", *state.RULES["k"]),
        "update_rule": choice(state.UPDATES),
    },
}

# An MLP generator and a maxout discriminator (players.MLPGenerator, MaxoutDiscriminator).
MLP_PLAYERS: dict[str, Any] = {
    "generator": {
        "hidden": Field("ints"),
        "activation": choice(_ACTIVATIONS),
        "output_activation": choice(_ACTIVATIONS),
        "init_scale": positive("float"),
        "output_bias": choice(("marginals", "zeros"), default="zeros"),
    },
    "discriminator": {
        "hidden": Field("ints"),
        "pieces": positive(),
        "activation": choice(("maxout",) + _ACTIVATIONS),
        "init_scale": positive("float"),
        "input_keep": unit(),
        "hidden_keep": unit(),
        "minibatch_std": Field("int", lambda v: v >= 0, "an int >= 0 (0: off)", default=0),
        "minibatch_features": Field("int", lambda v: v >= 0, "an int >= 0 (0: off)", default=0),
        "minibatch_dims": Field("int", lambda v: v >= 1, "an int >= 1", default=4),
        "pack": Field("int", lambda v: v >= 1, "an int >= 1 (1: one example at a time)",
                      default=1),
    },
}

OPTIONAL_SECTIONS = ("g_optimizer",)

# Settings that may differ between a checkpoint and the run that resumes it.
RESUMABLE_CHANGES = ("num_train_steps", "log_every", "eval_every", "eval_early", "checkpoint_every",
                     "plot_every_seconds", "steps_per_call", "kernels", "experiment",
                     "keep_checkpoints", "keep_every", "parallel", "sweep",
                     "on_divergence", "max_rollbacks", "data.manual_dir", "data.data_dir",
                     "evaluation.", "gan.grad_norms")
# ... and these with a notice: the optimizers' hyperparameters (not their names).
NOTICED_CHANGES = ("optimizer.", "g_optimizer.")


def _is_finite_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _type_ok(kind: str, value: Any) -> bool:
  if kind == "int":
    return isinstance(value, int) and not isinstance(value, bool)
  if kind == "float":
    return _is_finite_number(value)
  if kind == "str":
    return isinstance(value, str)
  if kind == "bool":
    return isinstance(value, bool)
  if kind == "replicas":
    return (isinstance(value, (tuple, list)) and
            all(isinstance(v, dict) and all(isinstance(k, str) for k in v) for v in value))
  if kind == "floats":
    return (isinstance(value, (tuple, list)) and len(value) > 0 and
            all(map(_is_finite_number, value)))
  if kind == "ints":
    return (isinstance(value, (tuple, list)) and len(value) > 0 and
            all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value))
  raise ValueError(kind)


_KIND_WORDS = {"int": "an integer", "float": "a finite number", "str": "a string",
               "bool": "True or False",
               "ints": "a non-empty tuple of positive integers, e.g. (1200, 1200)",
               "floats": "a non-empty tuple of finite numbers, e.g. (-6.0, 8.0)",
               "replicas": "a tuple of dicts, one per run, of dotted field names and values, "
                           "e.g. ({'seed': 0}, {'seed': 1})"}


def _check_section(section: Any, schema: dict[str, Any], prefix: str) -> None:
  keys = list(section.keys())
  for key in keys:
    name = prefix + key
    if key not in schema:
      close = difflib.get_close_matches(key, list(schema), n=1)
      hint = (f" Did you mean config.{prefix}{close[0]}?" if close else
              f" The fields of {('config.' + prefix[:-1]) if prefix else 'config'} are: "
              f"{', '.join(sorted(schema))}.")
      raise UserError(f"config.{name} is not a field gan_jax knows, so it would be ignored."
                      f"{hint} Fix or remove it in the config file.")
  for key, spec in schema.items():
    name = prefix + key
    if key not in keys:
      if isinstance(spec, Field) and spec.default is not _NO_DEFAULT:
        continue
      if key in OPTIONAL_SECTIONS and not prefix:
        continue
      raise UserError(f"config.{name} is missing. Add it to the config file (the files in "
                      f"experiments/ show every field of each experiment).")
    value = section[key]
    if spec == "optimizer":
      if key in OPTIONAL_SECTIONS and not value:
        continue
      _check_optimizer(value, name)
    elif isinstance(spec, dict):
      if not hasattr(value, "keys"):
        raise UserError(f"config.{name} is {value!r}; it must be a section (a ConfigDict) with "
                        f"the fields {', '.join(sorted(spec))}.")
      _check_section(value, spec, name + ".")
    else:
      _check_field(spec, value, name)


def _check_field(spec: Field, value: Any, name: str) -> None:
  if not _type_ok(spec.kind, value):
    raise UserError(f"config.{name} is {value!r} ({type(value).__name__}); it must be "
                    f"{_KIND_WORDS[spec.kind]}. Set it with --config.{name}=... or in the "
                    f"config file.")
  if spec.rule is not None and not spec.rule(value):
    raise UserError(f"config.{name} is {value!r}; it must be {spec.expect}. Set it with "
                    f"--config.{name}=... or in the config file.")


def _check_optimizer(section: Any, name: str) -> None:
  if not hasattr(section, "keys") or "name" not in section:
    raise UserError(f"config.{name} must be a section with a 'name' (one of "
                    f"{', '.join(optim.OPTIMIZERS)}) and that optimizer's fields.")
  kind = section["name"]
  if kind not in _OPTIMIZER_FIELDS:
    raise UserError(f"config.{name}.name is {kind!r}, which gan_jax does not know; use one of "
                    f"{', '.join(map(repr, optim.OPTIMIZERS))}.")
  _check_section(section, {"name": Field("str"), **_OPTIMIZER_FIELDS[kind]}, name + ".")


def check(config: Any, num_devices: int, fields: dict[str, Any]) -> None:
  """Refuse a config that cannot run, naming the field and the fix.

  ``fields``: the experiment's schema (``Experiment.schema()``).
  """
  _check_section(config, fields, "")
  gan = config.gan
  conflict = state.option_conflict(gan.update_rule, gan.k, gan.get("ema_decay", 0.0),
                                   gan.get("ema_power", 0.0), "config.gan.")
  if conflict:
    raise UserError(f"{conflict}, with --config.gan.<field>=... or in the config file.")
  if config.gan.get("r1_gamma", 0.0) and config.gan.get("gp_weight", 0.0):
    raise UserError(f"config.gan.r1_gamma={config.gan.r1_gamma} and config.gan.gp_weight="
                    f"{config.gan.gp_weight} both regularise D; choose one and set the other "
                    f"to 0.")
  split = batch_split_error(config.batch_size, num_devices)
  if split:
    fix = max(num_devices, config.batch_size // num_devices * num_devices)
    raise UserError(f"config.batch_size={split} (e.g. --config.batch_size={fix}), or run on "
                    f"fewer devices.")
  d_cfg, per_device = config.model.get("discriminator", {}), config.batch_size // num_devices
  pack, group = d_cfg.get("pack", 1), d_cfg.get("minibatch_std", 0)
  fix = f"or a batch size that it divides on {num_devices} device(s)."
  if per_device % pack:
    raise UserError(f"config.model.discriminator.pack={pack} packs each device's minibatch of "
                    f"{per_device}, which is not a multiple of it; choose a pack that divides "
                    f"it, {fix}")
  if group and per_device % (group * pack):
    packs = f" in packs of {pack}" if pack > 1 else ""
    raise UserError(f"config.model.discriminator.minibatch_std={group} groups each device's "
                    f"minibatch of {per_device}{packs}, which is not a multiple of it; choose a "
                    f"group size that divides it, {fix}")


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  """{"model.generator.hidden": (1200, 1200), ...} of a config or its JSON dict."""
  out = {}
  for key, value in tree.items():
    if hasattr(value, "items"):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = tuple(value) if isinstance(value, list) else value
  return out


def _default(dotted: str, fields: dict[str, Any]) -> Any:
  """A field's default in ``fields`` ("<absent>" if it has none): absent means that value."""
  spec: Any = fields
  for part in dotted.split("."):
    if not isinstance(spec, dict) or part not in spec:
      return "<absent>"
    spec = spec[part]
  return spec.default if isinstance(spec, Field) and spec.default is not _NO_DEFAULT \
      else "<absent>"


def resume_differences(saved: dict[str, Any], config: Any, fields: dict[str, Any],
                       resumable: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
  """(refused, noticed): the fields where ``config`` differs from a checkpoint's config.

  Refused: anything that changes the model, the game or the data (resuming would
  restore mismatched parameters or silently change the run). Noticed: the
  optimizers' hyperparameters. Run length, intervals and evaluation settings may
  differ freely, and so may an experiment's own ``resumable`` fields (prefixes).
  """
  old, new = flatten(saved), flatten(config)
  refused, noticed = [], []
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key, _default(key, fields)), new.get(key, _default(key, fields))
    if a == b or key.startswith(RESUMABLE_CHANGES + tuple(resumable)):
      continue
    line = f"{key}: {a!r} in the checkpoint, {b!r} now"
    if key.startswith(NOTICED_CHANGES) and not key.endswith(".name"):
      noticed.append(line)
    else:
      refused.append(line)
  return refused, noticed


def check_resumable(ckpt: Any, config: Any, *, fields: dict[str, Any],
                    check_layout: bool = True, resumable: tuple[str, ...] = ()) -> None:
  """Refuse to resume a workdir whose checkpoints were made with a different model, game or
  data set (``ckpt``: its ``checkpoint.Checkpointer``), in one paragraph; print (on process 0)
  the optimizer settings that changed, which are allowed.

  Storage only reports what a checkpoint holds (its layout, the config saved with it);
  which differences a resume tolerates is this module's policy.
  """
  if check_layout:
    ckpt.check_layout()
  saved = checkpoint.saved_config(ckpt)
  if saved is None:
    return
  refused, noticed = resume_differences(saved, config, fields, resumable)
  if refused:
    shown = "; ".join(refused[:6]) + ("; ..." if len(refused) > 6 else "")
    raise UserError(
        f"The workdir {ckpt.workdir!r} holds checkpoints (newest: step {ckpt.latest_step()}) "
        f"of a run with different settings, which this run would resume: {shown}. Launch "
        f"with the checkpoint's settings to resume it, or pass another --workdir to start a "
        f"new run. (Run length, log/eval/checkpoint intervals, evaluation settings and the "
        f"optimizers' hyperparameters may change between launches.)")
  import jax  # pylint: disable=import-outside-toplevel
  if noticed and jax.process_index() == 0:
    print(f"Resuming with changed optimizer settings: {'; '.join(noticed)}.", flush=True)
