"""A sweep: 8 seeds x 2 G losses on the ring of 8 Gaussians, 16 GANs in one program.

Command:
  python launch.py --config=experiments/ring_sweep.py --workdir=runs/ring_sweep
  python launch.py --config=experiments/ring_sweep.py:smoke     # seconds
The model, data and training are experiments/ring_2d.py's. The 16 replicas
differ only in their seed and G loss, which change no shapes, so they train as
one compiled program (jax.vmap over their states inside the scanned loop).
Outputs: one sub-workdir per replica (metrics.jsonl, results.json,
samples.png), and sweep.csv with one row per replica (modes covered, share of
samples within 3 std, G's early gradient norms), samples.png and curves.png.
Any field can be swept from the command line with a tuple literal of runs, e.g.
  --config.sweep="({'optimizer.learning_rate': 1e-3}, {'optimizer.learning_rate': 3e-4})"
and replicas that differ in shapes
(--config.sweep="({'model.generator.hidden': (64, 64)}, {'model.generator.hidden': (128,)})")
run one program after another. A stopped or killed sweep resumes each replica from
its own checkpoints when launched again.
"""

import ml_collections

from projects.ring_2d.configs import ring_2d


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ring_2d.get_config(arg)
  config.sweep = tuple({"seed": seed, "gan.g_loss": loss}
                       for seed in range(8) for loss in ("minimax", "non_saturating"))
  return config
