"""Inference of what is inside the volume from reconstructed scatters."""

from mutomo.inference.x0 import HighlandX0Inferrer, PocaX0, X0Estimate, X0Inferrer, highland_inverse

__all__ = ["HighlandX0Inferrer", "PocaX0", "X0Estimate", "X0Inferrer", "highland_inverse"]
