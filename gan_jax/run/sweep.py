"""Sweeps: one config that stands for many runs, trained as one program where shapes allow.

A config lists its runs in ``config.sweep``: a tuple of dicts, one per run,
each mapping dotted field names to that run's values (the convention of
big_vision's config files: plain Python, so comprehensions and products are
written as Python)::

  config.sweep = tuple({"seed": s, "gan.g_loss": loss}              # 16 runs
                       for s in range(8) for loss in ("minimax", "non_saturating"))

On the command line the same field takes a tuple literal, replacing the file's::

  --config.sweep="({'optimizer.learning_rate': 1e-3}, {'optimizer.learning_rate': 3e-4})"

Every replica is the base config with its values set. Fields in ``VMAPPABLE``
change numbers, not shapes or code: replicas that differ only in those form
one *group* and train as one compiled program, ``jax.vmap`` over their states
inside the scanned loop (``TrainLoop(vmapped=True)``). Replicas that differ
elsewhere (widths, k, batch size, ...) fall into separate groups, run one
after another.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import itertools
import json
import os
import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from gan_jax.errors import UserError

# Fields a vmapped group may vary: the seed (initial state and keys) and the values
# each replica's state carries (``GANState.hparams``, the optimizers' learning rates;
# a group's spec holds the tuple of its replicas' losses). The EMA decay may vary
# among nonzero values (an EMA off changes the state's structure).
VMAPPABLE = ("seed", "optimizer.learning_rate", "g_optimizer.learning_rate",
             "gan.real_label", "gan.g_loss", "gan.d_loss", "gan.ema_decay")


@dataclasses.dataclass(frozen=True)
class Replica:
  """One run of a sweep: its name (also its sub-workdir), its values and its config."""

  name: str
  values: dict[str, Any]
  config: ml_collections.ConfigDict


def _lookup(config: ml_collections.ConfigDict, field: str) -> tuple[Any, str]:
  *path, leaf = field.split(".")
  section = config
  for part in path:
    if not isinstance(section, ml_collections.ConfigDict) or part not in section:
      raise KeyError(field)
    section = section[part]
  if not isinstance(section, ml_collections.ConfigDict) or leaf not in section:
    raise KeyError(field)
  return section, leaf


def _typed(value: Any, current: Any, field: str) -> Any:
  """``value`` as the type of the field it replaces; a UserError when it does not fit."""
  ok = value
  if isinstance(current, bool):
    ok = value if isinstance(value, bool) else None
  elif isinstance(current, float):
    ok = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
  elif isinstance(current, int):
    ok = value if isinstance(value, int) and not isinstance(value, bool) else None
  elif isinstance(current, str):
    ok = value if isinstance(value, str) else None
  elif isinstance(current, tuple):
    ok = tuple(value) if isinstance(value, (tuple, list)) else None
  elif current is not None and type(value) is not type(current):
    ok = None
  if ok is None:
    raise UserError(f"config.sweep gives {field} the value {value!r}, but the field holds a "
                    f"{type(current).__name__} ({current!r}); give a value of that type.")
  return ok


def product(axes: dict[str, Sequence[Any]]) -> tuple[dict[str, Any], ...]:
  """The Cartesian product of ``{field: values}`` as ``config.sweep`` entries, first axis
  slowest."""
  fields = list(axes)
  return tuple(dict(zip(fields, combo, strict=True))
               for combo in itertools.product(*(list(axes[f]) for f in fields)))


def _text(value: Any) -> str:
  text = "x".join(map(str, value)) if isinstance(value, tuple) else str(value)
  return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)


def expand(config: ml_collections.ConfigDict) -> list[Replica]:
  """The replicas of ``config.sweep`` (one, named ``""``, when the config has no sweep).

  A replica's name, ``seed=3,g_loss=minimax``, lists its values by their
  fields' last names (whole dotted paths where those clash); it is also the
  name of its sub-workdir.
  """
  entries: Any = config.get("sweep", ()) or ()
  if isinstance(entries, str) or not all(isinstance(e, dict) for e in entries):
    raise UserError(
        f"config.sweep is {entries!r}; list the runs as a tuple of dicts, one per run, each "
        f"mapping dotted field names to values, e.g. config.sweep = tuple({{'seed': s}} for s "
        f"in range(4)) in the config file, or --config.sweep=\"({{'seed': 0}}, {{'seed': 1}})\" "
        f"on the command line.")
  base = copy.deepcopy(config)
  if "sweep" in base:
    with base.unlocked():
      base.sweep = ()
  if not entries:
    return [Replica("", {}, base)]
  fields = list(dict.fromkeys(f for e in entries for f in e))
  labels = {f: f.rsplit(".", 1)[-1] for f in fields}
  if len(set(labels.values())) != len(labels):  # e.g. optimizer.lr and g_optimizer.lr
    labels = {f: f for f in fields}
  replicas, names = [], set()
  for entry in entries:
    cfg = copy.deepcopy(base)
    values = {}
    for field, value in entry.items():
      try:
        section, leaf = _lookup(cfg, field)
      except KeyError:
        raise UserError(f"config.sweep sets {field!r}, which this config does not have; name "
                        f"an existing field by its dotted path (e.g. optimizer.learning_rate)."
                        ) from None
      values[field] = _typed(value, section[leaf], field)
      try:
        section[leaf] = values[field]
      except TypeError as e:
        raise UserError(f"config.sweep cannot set {field}={value!r}: {e}") from e
    name = ",".join(f"{labels[f]}={_text(v)}" for f, v in values.items())
    if name in names:
      raise UserError(f"config.sweep lists the run {name or '(no changes)'} twice; give each "
                      f"run different values.")
    names.add(name)
    replicas.append(Replica(name, values, cfg))
  return replicas


def _signature(config: ml_collections.ConfigDict) -> str:
  """The config without the vmappable fields: equal signatures share one program."""
  d = config.to_dict()
  for field in VMAPPABLE:
    *path, leaf = field.split(".")
    section = d
    for part in path:
      section = section.get(part) if isinstance(section, dict) else None
    if isinstance(section, dict) and leaf in section:
      value = section.pop(leaf)
      if field == "gan.ema_decay":
        section["has_ema"] = bool(value)
  return json.dumps(d, sort_keys=True, default=str)


def groups(replicas: Sequence[Replica]) -> list[list[Replica]]:
  """Replicas partitioned into groups that can train as one vmapped program, in order."""
  by_sig: dict[str, list[Replica]] = {}
  for r in replicas:
    by_sig.setdefault(_signature(r.config), []).append(r)
  return list(by_sig.values())


def stack(trees: Sequence[Any]) -> Any:
  """Trees of equal structure -> one tree with a leading replica axis."""
  return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def unstack(tree: Any, index: int) -> Any:
  """Replica ``index`` of a stacked tree."""
  return jax.tree.map(lambda x: x[index], tree)


def write_summary(path: str, rows: Sequence[dict[str, Any]]) -> None:
  """sweep.csv: one row per replica, columns in first-seen order; written atomically."""
  columns: list[str] = []
  for row in rows:
    columns += [k for k in row if k not in columns]
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
  writer.writeheader()
  for row in rows:
    writer.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
                     for k, v in row.items()})
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(buf.getvalue())
  os.replace(tmp, path)
