"""gan_jax: generative adversarial nets as pure, composable JAX functions."""

from gan_jax import kernels, losses
from gan_jax.loop import ArraySource, SamplerSource, TrainLoop, iteration_inputs, run_chunk
from gan_jax.losses import (
                            D_LOSSES,
                            G_LOSSES,
                            R1,
                            GradientPenalty,
                            discriminator_loss,
                            generator_loss,
                            value_function,
)
from gan_jax.players import (
                            ConvDiscriminator,
                            ConvGenerator,
                            MaxoutDiscriminator,
                            MLPGenerator,
                            marginal_output_bias,
)
from gan_jax.state import GAN, GANState, PlayerState, init_state, sample_latent, set_hparams
from gan_jax.steps import (
                           apply_player,
                           d_outputs,
                           d_step,
                           ema_update,
                           estimate_collections,
                           g_step,
                           generate,
                           simultaneous_step,
                           train_step,
                           update_player,
)

__all__ = [
    "GAN", "GANState", "PlayerState", "init_state", "sample_latent", "set_hparams",
    "d_step", "g_step", "simultaneous_step", "train_step", "generate", "apply_player",
    "d_outputs", "update_player", "ema_update", "estimate_collections",
    "TrainLoop", "ArraySource", "SamplerSource", "iteration_inputs", "run_chunk",
    "kernels", "losses", "D_LOSSES", "G_LOSSES", "R1", "GradientPenalty",
    "discriminator_loss", "generator_loss", "value_function",
    "MLPGenerator", "MaxoutDiscriminator", "ConvGenerator", "ConvDiscriminator",
    "marginal_output_bias",
]
__version__ = "0.2.0"
