"""Model selection on validation: which evaluation's generator (raw G or its EMA) is the
best so far, by a validation metric, and so kept in ``checkpoints/best``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

EMA_PREFIX = "ema_"  # metrics-row keys of the EMA generator: ema_parzen_ll, ...


class Selection(NamedTuple):
  """How the driver picks ``checkpoints/best`` from the metrics rows of evaluations."""
  key: str  # the metrics-row key of a validation metric (the EMA's is ``ema_<key>``)
  higher_is_better: bool
  # (key, higher is better) of a second validation metric on which the EMA of G must be
  # no worse than raw G at the same evaluation to be a candidate at all (None: no guard) ...
  ema_guard: tuple[str, bool] | None = None
  # ... by more than this fraction of raw G's figure: the metric's own noise between draws
  # of samples, so that a difference within it does not decide.
  ema_guard_tolerance: float = 0.0

  def candidate(self, row: dict[str, Any]) -> tuple[tuple[float, str] | None, str]:
    """The better of raw G ("raw") and its EMA ("ema") in one evaluation's metrics row, as
    (value, generator), or None when neither has a finite value; and why the EMA was left
    out, if it was ("" otherwise)."""
    def finite(k):
      return isinstance(row.get(k), (int, float)) and math.isfinite(row[k])

    key, ema = self.key, EMA_PREFIX + self.key
    found = [(row[key], "raw")] if finite(key) else []
    why = ""
    if finite(ema):
      if self.ema_guard is None:
        found.append((row[ema], "ema"))
      else:
        g, higher = self.ema_guard
        if finite(g) and finite(EMA_PREFIX + g) and self._within_guard(row[g],
                                                                       row[EMA_PREFIX + g]):
          found.append((row[ema], "ema"))
        else:
          why = (f"its {g} {row.get(EMA_PREFIX + g, math.nan):.4g} is worse than G's "
                 f"{row.get(g, math.nan):.4g}"
                 + (f" by more than {self.ema_guard_tolerance:.0%}"
                    if self.ema_guard_tolerance else ""))
    if not found:
      return None, why
    return (max if self.higher_is_better else min)(found), why

  def _within_guard(self, raw: float, ema: float) -> bool:
    assert self.ema_guard is not None
    slack = self.ema_guard_tolerance * abs(raw)
    return ema >= raw - slack if self.ema_guard[1] else ema <= raw + slack

  def improves(self, value: float, best: dict[str, Any] | None) -> bool:
    """Whether value beats the best so far (a ``memory["selected"]`` dict, or None)."""
    if best is None:
      return True
    return value > best["value"] if self.higher_is_better else value < best["value"]

  def update(self, best: dict[str, Any] | None, row: dict[str, Any], step: int
             ) -> tuple[dict[str, Any] | None, str]:
    """The new best after the evaluation ``row`` at ``step`` (a dict: metric, value,
    generator, step), or None when the best so far stands; and ``candidate``'s reason
    for leaving the EMA out ("" otherwise)."""
    found, why = self.candidate(row)
    if found is None or not self.improves(found[0], best):
      return None, why
    return {"metric": self.key, "value": found[0], "generator": found[1], "step": step}, why


def replay_selection(rows: Sequence[dict[str, Any]], selection: Selection
                     ) -> list[dict[str, Any] | None]:
  """The best model so far after each row, by ``selection``, as the driver keeps it:
  a dict (metric, value, generator, step) per row, None before the first candidate.
  Lets a finished run's rows be read under another selection rule."""
  best, out = None, []
  for row in rows:
    best = selection.update(best, row, row["step"])[0] or best
    out.append(best)
  return out
