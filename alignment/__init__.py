"""Neuron-level alignment of vision-language models with brain activity during movie watching."""

from alignment._compat import ensure_torchvision_importable

__version__ = "0.1.0"

ensure_torchvision_importable()
