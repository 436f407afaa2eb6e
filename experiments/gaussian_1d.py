"""`python launch.py --config=experiments/gaussian_1d.py`.

The config is projects/gaussian_1d/configs/gaussian_1d.py."""

from projects.gaussian_1d.configs.gaussian_1d import get_config  # noqa: F401
