"""Architectures as plain functions of the input shape and class count.

Every model starts with ``Rescaling(1/255)``: it takes raw 0-255 pixels, like the MLPerf Tiny reference, so
the preprocessing travels inside the model (and its TFLite file) instead of living in every caller.
"""

from __future__ import annotations

from edgecv._tf import keras
from edgecv.config import PATCHNET_WIDTHS, Arch
from edgecv.errors import ConfigError


def build(arch: Arch | str, input_shape: tuple[int, ...], num_classes: int, widths: tuple[int, ...] = (),
          late_pool: int = 0, separable: int = 0):
    """``widths``, ``late_pool`` and ``separable`` lay out patchnet (empty and 0: its defaults); TrainConfig
    refuses them for the other architectures."""
    builders = {Arch.SEED_CNN: seed_cnn, Arch.RESNET8: resnet8, Arch.DSCNN: dscnn}
    arch = Arch(arch)
    if arch is Arch.PATCHNET:
        return patchnet(tuple(input_shape), num_classes, tuple(widths) or PATCHNET_WIDTHS, late_pool, separable)
    return builders[arch](tuple(input_shape), num_classes)


def seed_cnn(input_shape: tuple[int, ...] = (32, 32, 3), num_classes: int = 10):
    """The classic Keras CIFAR-10 CNN: Conv32-Pool-Conv64-Pool-Flatten-Dense128-Dense(n)."""
    if min(input_shape[:2]) < 14:
        raise ConfigError(f"seed-cnn needs images of at least 14x14 pixels, got {input_shape[0]}x{input_shape[1]}")
    L = keras().layers
    return keras().Sequential(
        [
            keras().Input(shape=input_shape, name="pixels"),
            L.Rescaling(1.0 / 255, name="rescale"),
            L.Conv2D(32, (3, 3), activation="relu", name="conv1"),
            L.MaxPooling2D((2, 2), name="pool1"),
            L.Conv2D(64, (3, 3), activation="relu", name="conv2"),
            L.MaxPooling2D((2, 2), name="pool2"),
            L.Flatten(name="flatten"),
            L.Dense(128, activation="relu", name="fc1"),
            L.Dense(num_classes, activation="softmax", name="classifier"),
        ],
        name="seed_cnn",
    )


def resnet8(input_shape: tuple[int, ...] = (32, 32, 3), num_classes: int = 10):
    """MLPerf Tiny's ResNet-8 (``resnet_v1_eembc``): a 16-filter stem and three residual stacks of 16, 32 and
    64 filters (the last two halve the resolution, with a 1x1 projection on the shortcut), global average
    pooling, one dense layer. Same layers and weight shapes as the reference ``.h5``, plus the rescaling."""
    k = keras()
    L = k.layers
    regularizer = k.regularizers.l2(1e-4)

    def conv(filters, size, strides, name):
        return L.Conv2D(filters, size, strides=strides, padding="same", kernel_initializer="he_normal",
                        kernel_regularizer=regularizer, name=name)

    inputs = k.Input(shape=input_shape, name="pixels")
    x = L.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = L.Activation("relu", name="stem_relu")(L.BatchNormalization(name="stem_bn")(conv(16, 3, 1, "stem")(x)))
    for stack, filters in enumerate((16, 32, 64), start=1):
        strides = 1 if stack == 1 else 2
        y = conv(filters, 3, strides, f"s{stack}_conv1")(x)
        y = L.Activation("relu", name=f"s{stack}_relu1")(L.BatchNormalization(name=f"s{stack}_bn1")(y))
        y = L.BatchNormalization(name=f"s{stack}_bn2")(conv(filters, 3, 1, f"s{stack}_conv2")(y))
        if stack > 1:
            x = conv(filters, 1, strides, f"s{stack}_shortcut")(x)
        x = L.Activation("relu", name=f"s{stack}_relu")(L.Add(name=f"s{stack}_add")([x, y]))
    x = L.AveragePooling2D(pool_size=min(x.shape[1:3]), name="pool")(x)
    outputs = L.Dense(num_classes, activation="softmax", kernel_initializer="he_normal",
                      name="classifier")(L.Flatten(name="flatten")(x))
    return k.Model(inputs, outputs, name="resnet8")


DSCNN_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1))  # (pointwise filters, depthwise stride)


def dscnn(input_shape: tuple[int, ...] = (32, 32, 3), num_classes: int = 10, width: float = 0.5,
          blocks: tuple[tuple[int, int], ...] = DSCNN_BLOCKS):
    """MobileNet-v1 style for small images: a full 3x3 stem, then depthwise 3x3 + pointwise 1x1 blocks (each
    followed by BatchNormalization and ReLU, which fold and run on an Edge TPU), global pooling, one dense
    layer. Strides stop at 8x8 on 32x32 input: MobileNet's ImageNet strides would leave 1x1 maps.
    ``width`` scales every layer's channels, like MobileNet's alpha."""
    k = keras()
    L = k.layers
    regularizer = k.regularizers.l2(1e-4)

    def channels(n):
        return max(8, int(round(n * width / 8)) * 8)  # multiples of 8: what int8 SIMD kernels work in

    def bn_relu(x, name):
        return L.Activation("relu", name=f"{name}_relu")(L.BatchNormalization(name=f"{name}_bn")(x))

    inputs = k.Input(shape=input_shape, name="pixels")
    x = L.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = bn_relu(L.Conv2D(channels(32), 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                         kernel_regularizer=regularizer, name="stem")(x), "stem")
    for i, (filters, strides) in enumerate(blocks, start=1):
        x = bn_relu(L.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False, name=f"b{i}_dw")(x),
                    f"b{i}_dw")
        x = bn_relu(L.Conv2D(channels(filters), 1, use_bias=False, kernel_initializer="he_normal",
                             kernel_regularizer=regularizer, name=f"b{i}_pw")(x), f"b{i}_pw")
    x = L.GlobalAveragePooling2D(name="pool")(x)
    outputs = L.Dense(num_classes, activation="softmax", name="classifier")(x)
    return k.Model(inputs, outputs, name="dscnn")


def patchnet(input_shape: tuple[int, ...] = (32, 32, 3), num_classes: int = 10,
             widths: tuple[int, ...] = PATCHNET_WIDTHS, late_pool: int = 0, separable: int = 0):
    """A network laid out for int8 kernels, after airbench's: one cheap layer at full resolution (a 2x2
    stride-2 patch stem, which ``recipe.whiten_stem`` can set to whiten the patches), then blocks of
    conv3x3-BN-ReLU, max-pool 2x2, conv3x3-BN-ReLU, so that the convolutions run at 16x16, 8x8 and 4x4
    instead of 32x32 (XNNPACK pays per output pixel). Global pooling is a MEAN, which XNNPACK runs in int8 (an
    AVERAGE_POOL_2D would leave it for the reference kernel). Convolutions carry no bias: BN follows each.
    ``late_pool``: the first this many blocks pool after both convolutions instead of between them, which
    spends latency (the second convolution runs at 4x the pixels) without a single parameter. ``separable``:
    the last this many blocks make each convolution depthwise-separable (3x3 depthwise, then 1x1, each
    BN-ReLU): about a ninth of a full 3x3's parameters, so about 3x the channels for the same."""
    if min(input_shape[:2]) < 2 ** len(widths):
        raise ConfigError(f"patchnet with {len(widths) - 1} blocks needs images of at least {2 ** len(widths)} "
                          f"pixels a side, got {input_shape[0]}x{input_shape[1]}")
    k = keras()
    L = k.layers

    def conv_bn_relu(x, filters, size, name, strides=1):
        x = L.Conv2D(filters, size, strides=strides, padding="same", use_bias=False,
                     kernel_initializer="he_normal", name=name)(x)
        return L.Activation("relu", name=f"{name}_relu")(L.BatchNormalization(name=f"{name}_bn")(x))

    def conv3x3(x, filters, name, split):
        if not split:
            return conv_bn_relu(x, filters, 3, name)
        x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")(x)
        x = L.Activation("relu", name=f"{name}_dw_relu")(L.BatchNormalization(name=f"{name}_dw_bn")(x))
        return conv_bn_relu(x, filters, 1, name)

    inputs = k.Input(shape=input_shape, name="pixels")
    x = L.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = conv_bn_relu(x, widths[0], 2, "stem", strides=2)
    for i, filters in enumerate(widths[1:], start=1):
        split = i > len(widths) - 1 - separable
        x = conv3x3(x, filters, f"b{i}_conv1", split)
        if i > late_pool:
            x = L.MaxPooling2D(2, name=f"b{i}_pool")(x)
        x = conv3x3(x, filters, f"b{i}_conv2", split)
        if i <= late_pool:
            x = L.MaxPooling2D(2, name=f"b{i}_pool")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    outputs = L.Dense(num_classes, activation="softmax", name="classifier")(x)
    return k.Model(inputs, outputs, name="patchnet")
