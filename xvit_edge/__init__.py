"""xvit_edge: on-device video action recognition with X-ViT (space-time mixing attention)."""

from .config import PRESETS, Preprocessing, XViTConfig, get_config
from .model import XViT, create_model

__version__ = "0.1.0"
__all__ = ["PRESETS", "Preprocessing", "XViT", "XViTConfig", "create_model", "get_config", "__version__"]
