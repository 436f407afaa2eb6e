"""A Markdown table of a run's evaluations, the way its field reports them.

  python -m projects.mnist.report runs/mnist [--every_epochs 20] [--ema_guard RULE]

One line per evaluation (every ``--every_epochs`` epochs, and the last): the
validation score that selection uses, raw G and EMA; then the model selected on
validation up to that point (step, generator) with its test figures: Parzen
log-likelihood ± s.e., σ, Fréchet distance and recall. Test figures of models
that were not selected are not shown: they would invite a best-of-test choice.
``--ema_guard`` replays the run's validation rows under another guard on the
EMA (``val_frechet_distance``, ``val_parzen_ll`` or ``none``) instead of
reading the selection the run recorded; it still reads no test figure to choose.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from gan_jax.run.recorder import read_rows
from gan_jax.run.selection import Selection, replay_selection
from projects.mnist.evaluate import EMA_GUARD_TOLERANCE, SELECTION_METRICS

SELECT_KEYS = tuple(SELECTION_METRICS)  # ("val_parzen_ll", "val_frechet_distance")


def _fmt(value: Any, digits: int = 1) -> str:
  return "—" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict], every_epochs: float = 20.0, ema_guard: str | None = None,
          tolerance: float = EMA_GUARD_TOLERANCE) -> str:
  """The Markdown table of ``rows`` (metrics.jsonl) at their evaluations: the selection
  the run recorded, or (``ema_guard`` a metric or "none") the rows' selection replayed
  with that guard on the EMA, within ``tolerance``."""
  evals = [r for r in rows if any(k in r for k in SELECT_KEYS)]
  if not evals:
    return "(no evaluation with a validation metric in these rows)"
  by_step = {r["step"]: r for r in evals}
  key = next(k for k in SELECT_KEYS if k in evals[0])
  replayed = None
  if ema_guard is not None:
    guard = None if ema_guard == "none" else (ema_guard, SELECTION_METRICS[ema_guard])
    replayed = replay_selection(evals, Selection(key, SELECTION_METRICS[key], guard,
                                                 tolerance))
  lines = [f"| epoch | {key}: G / EMA | selected (step, generator) | test Parzen ± s.e. | σ "
           f"| FD | recall |", "|---|---|---|---|---|---|---|"]
  selected = None
  last_shown = -1e9
  for i, r in enumerate(evals):
    if replayed is not None:
      best = replayed[i]
      selected = None if best is None else (best["step"],
                                            "ema_" if best["generator"] == "ema" else "")
    elif "selected_step" in r:
      generator = r.get("selected_generator")
      if generator is None:  # rows written before the generator was recorded: by its value
        generator = "ema" if r.get(f"selected_{key}") == r.get("ema_" + key) else "raw"
      selected = (r["selected_step"], "ema_" if generator == "ema" else "")
    epoch = r.get("epoch", r["step"])
    if epoch - last_shown < every_epochs - 1e-9 and i != len(evals) - 1:
      continue
    last_shown = epoch
    test = "—"
    sigma = fd = recall = None
    where = "—"
    if selected is not None:
      s, p = selected
      chosen = by_step[s]
      where = f"{s} ({'EMA' if p else 'G'})"
      if p + "parzen_ll" in chosen:
        test = f"{chosen[p + 'parzen_ll']:.1f} ± {chosen[p + 'parzen_ll_stderr']:.1f}"
        sigma = chosen[p + "parzen_sigma"]
      fd, recall = chosen.get(p + "frechet_distance"), chosen.get(p + "recall")
    lines.append(f"| {epoch:.0f} | {_fmt(r.get(key))} / {_fmt(r.get('ema_' + key))} | {where} "
                 f"| {test} | {_fmt(sigma, 3)} | {_fmt(fd, 2)} | {_fmt(recall, 2)} |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("workdir")
  parser.add_argument("--every_epochs", type=float, default=20.0)
  parser.add_argument("--ema_guard", choices=("none",) + SELECT_KEYS, default=None,
                      help="replay the selection with this guard on the EMA (default: the "
                           "selection the run recorded)")
  parser.add_argument("--ema_guard_tolerance", type=float, default=EMA_GUARD_TOLERANCE,
                      help="with --ema_guard: how much worse than G, as a fraction of G's "
                           "figure, the EMA's guard metric may be")
  args = parser.parse_args()
  rows = read_rows(os.path.join(args.workdir, "metrics.jsonl"))
  print(table(rows, args.every_epochs, args.ema_guard, args.ema_guard_tolerance))


if __name__ == "__main__":
  main()
