"""DCGAN's 4×4 stride-2 convolutions as one matrix product over 2×2 pixel blocks.

Why: XLA's CPU convolution runs a layer with a single image channel — the critic's
input convolution and the generator's output convolution on grey images — at about
10 GFLOP/s, against 80–100 for the 32→64-channel layer next to it, because there is
no channel axis to vectorise over. Padded by one pixel and cut into 2×2 blocks, the
image is a (h/2 + 1)² grid of 4·C-vectors, and a SAME 4×4 stride-2 convolution is a
stride-1 2×2 convolution on that grid: the 16 taps, each a strided view of the padded
image, stacked and contracted with the kernel (K = 16·C), which XLA compiles into one
dot plus copies. The transposed
convolution is the same product read backwards (one dot, then an overlap-add of the
four shifted block grids). Autodiff through reshapes, slices and the dot gives the
gradients and the WGAN-GP double backward, equal to the stock convolution's to float
rounding. Measured (docs/performance.md, "Training step"): −10% per default MNIST
iteration with XLA, but +15% without XLA and no gain for 3-channel 32×32 images, so
:func:`wgan.models.build_models` uses these layers only for single-channel images under
an XLA-compiled step.

Saved models carry the stock layers (:func:`with_stock_layers`): the weights have the
same shapes and meaning, so ``generator.keras`` loads in plain Keras.
"""

from __future__ import annotations

import keras
from keras import layers, ops

__all__ = ["block_conv2d", "block_conv2d_transpose", "BlockConv2D", "BlockConv2DTranspose",
           "with_stock_layers"]


def _check_even(height: int, width: int) -> None:
    if height % 2 or width % 2:
        raise ValueError(f"block convolution needs even image sides, got {height}×{width}")


def block_conv2d(x, kernel):
    """SAME 4×4 stride-2 convolution of ``x`` [b, h, w, c] (h, w even) by ``kernel`` [4, 4, c, f].

    Input row 2i − 1 + k feeds output row i through kernel row k; with one pixel of
    padding that is block row i + k // 2, row k % 2 inside the block. The kernel enters
    the product as it is (no reshape): the WGAN-GP step runs the penalty's forward pass
    off the outer tape (:mod:`wgan.steps`) and relies on every backward op taking the
    weights themselves.
    """
    _, h, w, c = x.shape
    _check_even(h, w)
    oh, ow = h // 2, w // 2
    padded = ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    grid = ops.reshape(padded, [-1, oh + 1, 2, ow + 1, 2, c])  # b, i, d_r, j, d_c, c
    taps = ops.stack([grid[:, k_r // 2:k_r // 2 + oh, k_r % 2, k_c // 2:k_c // 2 + ow, k_c % 2]
                      for k_r in range(4) for k_c in range(4)], axis=3)
    taps = ops.reshape(taps, [-1, oh, ow, 4, 4, c])
    return ops.einsum("bijklc,klcf->bijf", taps, kernel)


def block_conv2d_transpose(x, kernel):
    """SAME 4×4 stride-2 transposed convolution of ``x`` [b, h, w, c] by ``kernel`` [4, 4, f, c].

    Input pixel i adds ``x[i] · kernel[k]`` to output row 2i − 1 + k: every pixel's
    4×4 contribution comes from one product, and the contributions of neighbouring
    pixels overlap by two rows and columns, i.e. land in shifted 2×2-block grids.
    """
    _, h, w, _ = x.shape
    filters = kernel.shape[2]
    patches = ops.einsum("bijc,klfc->bijklf", x, kernel)
    # k = 2a + d: b, i, j, a_r, d_r, a_c, d_c, f
    patches = ops.reshape(patches, [-1, h, w, 2, 2, 2, 2, filters])
    blocks = sum(ops.pad(patches[:, :, :, a_r, :, a_c],
                         [[0, 0], [a_r, 1 - a_r], [a_c, 1 - a_c], [0, 0], [0, 0], [0, 0]])
                 for a_r in (0, 1) for a_c in (0, 1))  # b, i, j, d_r, d_c, f
    image = ops.reshape(ops.transpose(blocks, [0, 1, 3, 2, 4, 5]),
                        [-1, 2 * h + 2, 2 * w + 2, filters])
    return image[:, 1:-1, 1:-1]


def _check_shape(layer: layers.Layer) -> None:
    if (tuple(layer.kernel_size) != (4, 4) or tuple(layer.strides) != (2, 2)
            or layer.padding != "same" or tuple(layer.dilation_rate) != (1, 1)
            or layer.data_format != "channels_last" or getattr(layer, "groups", 1) != 1
            or getattr(layer, "output_padding", None) is not None):
        raise ValueError(f"{type(layer).__name__} computes only SAME 4×4 stride-2 channels-last "
                         "convolutions; use the stock Keras layer for anything else")


class BlockConv2D(layers.Conv2D):
    """``Conv2D(filters, 4, 2, padding="same")`` computed by :func:`block_conv2d`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _check_shape(self)

    def convolution_op(self, inputs, kernel):
        return block_conv2d(inputs, kernel)


class BlockConv2DTranspose(layers.Conv2DTranspose):
    """``Conv2DTranspose(filters, 4, 2, padding="same")`` by :func:`block_conv2d_transpose`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _check_shape(self)

    def call(self, inputs):
        outputs = block_conv2d_transpose(inputs, self.kernel)
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs)


_STOCK = {BlockConv2D: layers.Conv2D, BlockConv2DTranspose: layers.Conv2DTranspose}


def with_stock_layers(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with the stock Keras class for every block layer, same weights.

    What gets saved: the file then loads with ``keras.models.load_model`` alone. A model
    without block layers is returned as it is.
    """
    if not any(type(layer) in _STOCK for layer in model.layers):
        return model

    def stock(layer: layers.Layer) -> layers.Layer:
        return _STOCK.get(type(layer), type(layer)).from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=stock)
    copy.set_weights(model.get_weights())
    return copy
