"""art_jax: ART (Action-Region Tracking) in JAX/Flax."""

__version__ = "0.1.0"
