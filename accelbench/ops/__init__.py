"""Array-module (NumPy / CuPy) primitives shared by kernel workloads and model layers."""

from .conv import (
    ConvGeometry,
    ConvWorkspace,
    array_module,
    col2im,
    conv2d_backward,
    conv2d_forward,
    conv_geometry,
    im2col,
)

__all__ = [
    "ConvGeometry",
    "ConvWorkspace",
    "array_module",
    "col2im",
    "conv2d_backward",
    "conv2d_forward",
    "conv_geometry",
    "im2col",
]
