"""l0enc: learned l0 sparse encoders in JAX and Flax NNX."""

__version__ = '0.1.0'
