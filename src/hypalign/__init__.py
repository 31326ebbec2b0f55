"""hypalign: hyperbolic multimodal representation learning."""

__version__ = "0.1.0"
