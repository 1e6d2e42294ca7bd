"""trainwise: train neural networks cheaper, with evidence."""

__version__ = "0.1.0"
