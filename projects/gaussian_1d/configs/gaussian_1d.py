"""The paper's theory on a 1-D toy: p_data = N(2, 0.5^2), an affine generator.

Command:
  python launch.py --config=experiments/gaussian_1d.py --workdir=runs/gaussian_1d
  python launch.py --config=experiments/gaussian_1d.py:smoke     # seconds
G(z) = a z + b of z ~ N(0, 1), so p_g = N(b, a^2) in closed form; it starts at
N(-1, 1). D: maxout 32x4 -> 32x4 -> 1, no dropout. Adam for both players.
(a) G fixed, D trained alone: D is compared with D* = p_data / (p_data + p_g)
    (Proposition 1) and V(D, G) with -log 4 + 2 JSD (Theorem 1's identity).
(b) Both trained by Algorithm 1 (k = 1): JSD falls toward 0, D toward 1/2.
(c) figure1.png in the workdir is the paper's Figure 1 for this run.
Part (b) checkpoints like every experiment: a stopped or killed run resumes exactly.
Run time on a 2-core CPU: see README.md (results table).
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "gaussian_1d"
  config.seed = 0
  config.batch_size = 256
  config.d_pretrain_steps = 2000  # part (a): D alone against the fixed initial G
  config.num_train_steps = 4000  # part (b): both players
  config.log_every = 100
  config.eval_every = 100  # the closed-form JSD, D vs 1/2, V and C(G)
  config.checkpoint_every = 500
  config.steps_per_call = 500
  config.parallel = "none"
  config.sweep = ()  # runs of a sweep, e.g. tuple({"seed": s} for s in range(4))
  config.keep_checkpoints = 2
  config.on_divergence = "stop"  # or "rollback" (see experiments/mnist.py)
  config.max_rollbacks = 3
  config.figure_steps = (1000, 2000, 3000)  # Figure 1 panels: after (a), these steps, and the end
  config.grid = (-6.0, 8.0)  # where densities, D and the integrals are evaluated

  config.data = ml_collections.ConfigDict(dict(mean=2.0, std=0.5))

  config.model = ml_collections.ConfigDict()
  config.model.latent_dim = 1
  config.model.generator = ml_collections.ConfigDict(dict(
      init_scale=1.0, start_scale=1.0, start_shift=-1.0))
  config.model.discriminator = ml_collections.ConfigDict(dict(
      hidden=(32, 32), pieces=4, activation="maxout", init_scale=0.5,
      input_keep=1.0, hidden_keep=1.0))

  config.optimizer = ml_collections.ConfigDict(dict(name="adam", learning_rate=2e-3, b1=0.5,
                                                    b2=0.999))
  config.g_optimizer = ml_collections.ConfigDict(dict(name="adam", learning_rate=2e-3, b1=0.5,
                                                      b2=0.999))
  config.gan = ml_collections.ConfigDict(dict(
      g_loss="non_saturating", real_label=1.0, k=1, update_rule="alternating"))

  if arg == "smoke":
    config.d_pretrain_steps = 300
    config.num_train_steps = 400
    config.figure_steps = (100, 200)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'smoke' or nothing.")
  return config
