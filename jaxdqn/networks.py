"""Q-networks (Flax linen): MLP or Nature-CNN torso, plain or dueling head."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


class MLPTorso(nn.Module):
    """Flattens the observation and applies ReLU dense layers."""

    hidden_sizes: Sequence[int]

    @nn.compact
    def __call__(self, obs):
        x = obs.reshape(obs.shape[0], -1).astype(jnp.float32)
        for width in self.hidden_sizes:
            x = nn.relu(nn.Dense(width)(x))
        return x


CONV_IMPLS = ("auto", "gemm", "xla")


def conv_impl_for_backend(conv_impl: str) -> str:
    """Resolve 'auto': 'gemm' on the CPU backend, where XLA's convolutions are slow inside loop bodies
    (jax#12868: about 10x slower inside a `lax.scan` than as a standalone jit), 'xla' elsewhere."""
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl {conv_impl!r} is not one of {', '.join(CONV_IMPLS)}")
    if conv_impl == "auto":
        return "gemm" if jax.default_backend() == "cpu" else "xla"
    return conv_impl


def space_to_depth(x, block: int):
    """(B, H, W, C) -> (B, H/block, W/block, block*block*C), features ordered (row, column, channel)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // block, block, w // block, block, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // block, w // block, block * block * c)


def kernel_space_to_depth(kernel, block: int):
    """HWIO kernel (k, k, C, O) -> (k/block, k/block, block*block*C, O), matching `space_to_depth`."""
    k, _, c, o = kernel.shape
    kernel = kernel.reshape(k // block, block, k // block, block, c, o).transpose(0, 2, 1, 3, 4, 5)
    return kernel.reshape(k // block, k // block, block * block * c, o)


def conv_valid_stride1_as_gemm(x, kernel):
    """VALID stride-1 convolution of NHWC `x` with HWIO `kernel`, expressed with matrix products only.

    Small kernels (where the output covers most of the input) use one product of every input pixel
    against all kernel taps followed by shifted sums; larger ones build the patches and use one
    product. Both avoid XLA:CPU's convolution emitter, and their gradients are products too.
    """
    b, h, w, c = x.shape
    k, _, _, o = kernel.shape
    out_h, out_w = h - k + 1, w - k + 1
    if h * w <= 1.25 * out_h * out_w:
        taps = kernel.transpose(2, 0, 1, 3).reshape(c, k * k * o)
        y = (x.reshape(b * h * w, c) @ taps).reshape(b, h, w, k, k, o)
        return sum(y[:, i:i + out_h, j:j + out_w, i, j, :] for i in range(k) for j in range(k))
    patches = jnp.concatenate([x[:, i:i + out_h, j:j + out_w, :] for i in range(k) for j in range(k)], axis=-1)
    y = patches.reshape(b * out_h * out_w, k * k * c) @ kernel.reshape(k * k * c, o)
    return y.reshape(b, out_h, out_w, o)


def conv_valid_as_gemm(x, kernel, stride: int):
    """VALID convolution with a square `stride`, via space-to-depth when the sizes allow it.

    Equal to `lax.conv_general_dilated(x, kernel, (stride, stride), 'VALID', dimension_numbers=
    ('NHWC', 'HWIO', 'NHWC'))` up to float rounding. A stride-s conv whose input size and kernel size
    are multiples of s is a stride-1 conv on the space-to-depth input with a k/s kernel.
    """
    k = kernel.shape[0]
    if stride > 1:
        if x.shape[1] % stride or x.shape[2] % stride or k % stride:
            return lax.conv_general_dilated(x, kernel, (stride, stride), "VALID",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
        x, kernel = space_to_depth(x, stride), kernel_space_to_depth(kernel, stride)
    return conv_valid_stride1_as_gemm(x, kernel)


class Conv(nn.Module):
    """A VALID, square-strided 2D convolution with the parameters of `flax.linen.Conv` (same names,
    shapes and initialisers), computed by XLA's convolution or as matrix products (`conv_impl`)."""

    features: int
    kernel_size: int
    stride: int
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (self.kernel_size, self.kernel_size, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        if conv_impl_for_backend(self.conv_impl) == "gemm":
            y = conv_valid_as_gemm(x, kernel, self.stride)
        else:
            y = lax.conv_general_dilated(x, kernel, (self.stride, self.stride), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + bias


class NatureCNNTorso(nn.Module):
    """Mnih et al. (2015) convolutional torso for uint8 frame stacks shaped (batch, frames, 84, 84).

    `conv_impl` picks how the convolutions run ('auto', 'gemm' or 'xla'; see `conv_impl_for_backend`);
    the parameters and the result are the same either way.
    """

    hidden_sizes: Sequence[int] = (512,)
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, obs):
        # Transpose while still uint8 (4x fewer bytes to move); XLA fuses it with the conversion.
        x = jnp.transpose(obs, (0, 2, 3, 1)).astype(jnp.float32) / 255.0
        for index, (features, kernel_size, stride) in enumerate(((32, 8, 4), (64, 4, 2), (64, 3, 1))):
            x = nn.relu(Conv(features, kernel_size, stride, self.conv_impl, name=f"Conv_{index}")(x))
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden_sizes:
            x = nn.relu(nn.Dense(width)(x))
        return x


class DuelingHead(nn.Module):
    """Q = V + A - agg(A), where agg is the mean or the max over actions (Wang et al. 2016)."""

    num_actions: int
    aggregation: str = "mean"
    hidden: int = 0

    @nn.compact
    def __call__(self, features):
        value_in, advantage_in = features, features
        if self.hidden:
            value_in = nn.relu(nn.Dense(self.hidden)(features))
            advantage_in = nn.relu(nn.Dense(self.hidden)(features))
        value = nn.Dense(1)(value_in)
        advantage = nn.Dense(self.num_actions)(advantage_in)
        if self.aggregation == "mean":
            centre = advantage.mean(axis=-1, keepdims=True)
        else:
            centre = advantage.max(axis=-1, keepdims=True)
        return value + advantage - centre


class QNetwork(nn.Module):
    """Maps a batch of observations to Q-values of shape (batch, num_actions)."""

    num_actions: int
    torso: str = "mlp"
    hidden_sizes: Sequence[int] = (120, 84)
    dueling: bool = False
    dueling_aggregation: str = "mean"
    dueling_hidden: int = 0
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, obs):
        if self.torso == "nature_cnn":
            features = NatureCNNTorso(self.hidden_sizes, self.conv_impl)(obs)
        else:
            features = MLPTorso(self.hidden_sizes)(obs)
        if self.dueling:
            return DuelingHead(self.num_actions, self.dueling_aggregation, self.dueling_hidden)(features)
        return nn.Dense(self.num_actions)(features)


def make_network(cfg, num_actions: int):
    """Build the Q-network that `cfg` describes (for the tabular agent, a Q-table lookup with the same `apply`)."""
    if cfg.agent == "tabular":
        from jaxdqn.tabular import QTable

        return QTable(num_actions)
    return QNetwork(
        num_actions=num_actions,
        torso=cfg.torso,
        hidden_sizes=tuple(cfg.hidden_sizes),
        dueling=cfg.dueling,
        dueling_aggregation=cfg.dueling_aggregation,
        dueling_hidden=cfg.dueling_hidden,
    )
