"""Inference of what is inside the volume from reconstructed scatters."""

from mutomo.inference.x0 import HighlandX0Inferrer, X0Estimate, highland_inverse

__all__ = ["HighlandX0Inferrer", "X0Estimate", "highland_inverse"]
