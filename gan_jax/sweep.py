"""Sweeps: one config that stands for many runs, trained as one program where shapes allow.

A config declares a sweep in ``config.sweep``, a string of space-separated axes,
each ``field=value,value,...`` (or ``field=start:stop`` for a range of
integers); the runs are the Cartesian product of the axes::

  config.sweep = "seed=0:8 gan.g_loss=minimax,non_saturating"      # 16 runs
  --config.sweep="optimizer.learning_rate=1e-3,3e-4 gan.real_label=1.0,0.9"

Every replica is the base config with its values set. Fields in ``VMAPPABLE``
change numbers, not shapes or code: replicas that differ only in those form
one *group* and train as one compiled program, ``jax.vmap`` over their states
inside the scanned loop (see ``TrainLoop.replica_gan``). Replicas that differ
elsewhere (widths, k, batch size, ...) fall into separate groups, run one
after another.
"""

from __future__ import annotations

import ast
import copy
import csv
import dataclasses
import io
import json
import os
import re
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

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


def _parse_value(text: str, current: Any, field: str) -> Any:
  if isinstance(current, str):
    return text
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  if isinstance(current, bool):
    if isinstance(value, bool):
      return value
  elif isinstance(current, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
    return float(value)
  elif isinstance(current, int) and isinstance(value, int) and not isinstance(value, bool):
    return value
  elif current is None or type(value) is type(current):
    return value
  raise UserError(f"config.sweep gives {field} the value {text!r}, but the field holds a "
                  f"{type(current).__name__} ({current!r}); write values of that type.")


def _split(values: str) -> list[str]:
  """Split on commas outside parentheses/brackets: "(16,16),(8,)" -> ["(16,16)", "(8,)"]."""
  parts, depth, current = [], 0, ""
  for ch in values:
    depth += ch in "(["
    depth -= ch in ")]"
    if ch == "," and depth == 0:
      parts.append(current)
      current = ""
    else:
      current += ch
  return [p for p in parts + [current] if p]


def parse(spec: str, config: ml_collections.ConfigDict) -> list[tuple[str, list[Any]]]:
  """The axes of a sweep spec: ``[(field, [values...]), ...]``, each value typed like the field."""
  axes = []
  for token in spec.split():
    field, sep, values = token.partition("=")
    if not sep or not field or not values:
      raise UserError(f"config.sweep has the axis {token!r}; write each axis as "
                      f"field=value,value,... or field=start:stop, axes separated by spaces, "
                      f"e.g. --config.sweep='seed=0:4 gan.g_loss=minimax,non_saturating'.")
    if field in {f for f, _ in axes}:
      raise UserError(f"config.sweep names {field} twice; give each field one axis.")
    try:
      section, leaf = _lookup(config, field)
    except KeyError:
      raise UserError(f"config.sweep sweeps {field!r}, which this config does not have; name "
                      f"an existing field by its dotted path (e.g. optimizer.learning_rate)."
                      ) from None
    current = section[leaf]
    if re.fullmatch(r"-?\d+:-?\d+", values) and isinstance(current, int):
      start, stop = map(int, values.split(":"))
      parsed = list(range(start, stop))
    else:
      parsed = [_parse_value(v, current, field) for v in _split(values)]
    if not parsed:
      raise UserError(f"config.sweep's axis {token!r} has no values.")
    axes.append((field, parsed))
  return axes


def _text(value: Any) -> str:
  text = "x".join(map(str, value)) if isinstance(value, tuple) else str(value)
  return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)


def expand(config: ml_collections.ConfigDict) -> list[Replica]:
  """The replicas of ``config.sweep`` (one, named ``""``, when the config has no sweep).

  A replica's name, ``seed=3,g_loss=minimax``, lists its swept values by their
  fields' last names (whole dotted paths where those clash); it is also the
  name of its sub-workdir.
  """
  spec = config.get("sweep", "") or ""
  axes = parse(spec, config)
  base = copy.deepcopy(config)
  if "sweep" in base:
    with base.unlocked():
      base.sweep = ""
  if not axes:
    return [Replica("", {}, base)]
  labels = {f: f.rsplit(".", 1)[-1] for f, _ in axes}
  if len(set(labels.values())) != len(labels):  # e.g. optimizer.lr and g_optimizer.lr
    labels = {f: f for f in labels}
  replicas = []
  for combo in np.ndindex(*[len(v) for _, v in axes]):
    values = {field: vals[i] for (field, vals), i in zip(axes, combo, strict=True)}
    cfg = copy.deepcopy(base)
    for field, value in values.items():
      section, leaf = _lookup(cfg, field)
      try:
        section[leaf] = value
      except TypeError as e:
        raise UserError(f"config.sweep cannot set {field}={value!r}: {e}") from e
    name = ",".join(f"{labels[f]}={_text(v)}" for f, v in values.items())
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
