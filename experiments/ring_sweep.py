"""`python launch.py --config=experiments/ring_sweep.py`.

The config is projects/ring_2d/configs/ring_sweep.py."""

from projects.ring_2d.configs.ring_sweep import get_config  # noqa: F401
