"""unieditkit: data and training toolkit for reference-guided image editing."""

__version__ = "0.1.0"
