"""Declarative CNNs trained and served on the GPU (CuPy) and the CPU (NumPy) with one implementation.

spec: pydantic model definitions with shape inference (``ModelSpec``, validated from a suite's ``models:``);
layers / network: forward and backward on the array module; optim: SGD with momentum, Adam;
data: synthetic, scikit-learn digits, MNIST IDX files; workloads: ``inference``, ``train_step``,
``train_to_accuracy``; profile: per-layer forward/backward times (``accelbench profile``).
"""

from .spec import ModelSpec

__all__ = ["ModelSpec"]
