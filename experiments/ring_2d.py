"""`python launch.py --config=experiments/ring_2d.py`: the config is projects/ring_2d/configs/ring_2d.py."""

from projects.ring_2d.configs.ring_2d import get_config  # noqa: F401
