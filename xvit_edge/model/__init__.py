"""The X-ViT model: mixing, attention, heads, the full network, and weight import."""

from .xvit import XViT, create_model

__all__ = ["XViT", "create_model"]
