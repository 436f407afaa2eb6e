"""The console line and the curves for the BCE game and for a critic's metrics."""

import os

from gan_jax.run import pictures
from gan_jax.run.recorder import progress_line


def rows(kind):
  outputs = ({"d_real": 0.7, "d_fake": 0.3, "value": -1.2} if kind == "bce" else
             {"critic_real": 1.5, "critic_fake": -0.5})
  return [{"step": s, "d_loss": 0.6, "g_loss": 0.9, **outputs} for s in (10, 20, 30)]


def test_the_progress_line_names_d_s_outputs_for_what_they_are():
  assert "D(x) 0.700  D(G(z)) 0.300" in progress_line("", rows("bce")[-1], 100, 5.0)
  line = progress_line("", rows("critic")[-1], 100, 5.0)
  assert "critic(x) 1.500  critic(G(z)) -0.500" in line and "D(x)" not in line


def test_curves_are_drawn_for_the_bce_game_and_for_a_critic(tmp_path):
  for kind in ("bce", "critic"):
    path = str(tmp_path / f"{kind}.png")
    pictures.plot_curves(rows(kind), path)
    assert os.path.getsize(path) > 1000
