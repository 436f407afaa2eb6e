"""`python launch.py --config=experiments/ring_2d.py`.

The config is projects/ring_2d/configs/ring_2d.py."""

from projects.ring_2d.configs.ring_2d import get_config  # noqa: F401
