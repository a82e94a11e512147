"""Q-networks (Flax linen): MLP or Nature-CNN torso (with or without LayerNorm), plain or dueling head, one Q-value
or a distribution per action, plain or noisy dense layers."""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


class MLPTorso(nn.Module):
    """Flattens the observation and applies ReLU dense layers."""

    hidden_sizes: Sequence[int]
    layer_norm: bool = False
    noisy: bool = False
    noisy_sigma0: float = 0.5

    @nn.compact
    def __call__(self, obs):
        x = obs.reshape(obs.shape[0], -1).astype(jnp.float32)
        for width in self.hidden_sizes:
            x = nn.relu(normalized(dense(width, self.noisy, self.noisy_sigma0)(x), self.layer_norm))
        return x


def normalized(x, layer_norm: bool):
    """`x` (batch, ...) layer-normalised over all of its non-batch axes when `layer_norm`, else `x` itself.

    A convolution's output (batch, H, W, C) is normalised over H, W and C together, with a scale and offset per
    element, as `torch.nn.LayerNorm([C, H, W])` in PQN's Atari network."""
    if not layer_norm:
        return x
    axes = tuple(range(1, x.ndim))
    return nn.LayerNorm(reduction_axes=axes, feature_axes=axes)(x)


CONV_IMPLS = ("auto", "xla", "gemm", "gemm_grad")
"""How the Nature-CNN convolutions run: 'xla' is `lax.conv_general_dilated` forward and backward; 'gemm'
is matrix products forward and backward (`conv_valid_as_gemm`); 'gemm_grad' is XLA's convolution
forward and matrix products for the gradients; 'auto' is 'gemm_grad' on CPU and 'xla' elsewhere."""


def conv_impl_for_backend(conv_impl: str) -> str:
    """Resolve 'auto': 'gemm_grad' on the CPU backend, 'xla' elsewhere.

    Why: inside a loop body (our train step always runs inside a `lax.scan`), XLA:CPU leaves the
    gradient convolutions with non-canonical dimension labels and runs them about 10x slower than in a
    standalone jit (jax#12868); its forward convolutions stay fast. See benchmarks/nature_cnn.py.
    """
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl {conv_impl!r} is not one of {', '.join(CONV_IMPLS)}")
    if conv_impl == "auto":
        return "gemm_grad" if jax.default_backend() == "cpu" else "xla"
    return conv_impl


def xla_conv(x, kernel, stride: int):
    """VALID NHWC/HWIO convolution by `lax.conv_general_dilated`."""
    return lax.conv_general_dilated(x, kernel, (stride, stride), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_with_gemm_gradients(x, kernel, stride: int):
    """`xla_conv` forward, with gradients computed as matrix products (the VJP of `conv_valid_as_gemm`)."""
    return xla_conv(x, kernel, stride)


def _conv_with_gemm_gradients_fwd(x, kernel, stride):
    return xla_conv(x, kernel, stride), (x, kernel)


def _conv_with_gemm_gradients_bwd(stride, residuals, cotangent):
    # A convolution is bilinear, so its VJP needs only the inputs; XLA drops the unused forward products.
    _, vjp = jax.vjp(lambda x, kernel: conv_valid_as_gemm(x, kernel, stride), *residuals)
    return vjp(cotangent)


conv_with_gemm_gradients.defvjp(_conv_with_gemm_gradients_fwd, _conv_with_gemm_gradients_bwd)


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
            return xla_conv(x, kernel, stride)
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
        conv = {"xla": xla_conv, "gemm": conv_valid_as_gemm,
                "gemm_grad": conv_with_gemm_gradients}[conv_impl_for_backend(self.conv_impl)]
        return conv(x, kernel, self.stride) + bias


class CNNTorso(nn.Module):
    """The settings of a convolutional torso: the dense layers after the convolutions, how the convolutions run
    (`conv_impl`, one of `CONV_IMPLS`; see `conv_impl_for_backend`; the parameters and the result are the same
    either way), LayerNorm, and noisy dense layers."""

    hidden_sizes: Sequence[int] = (512,)
    conv_impl: str = "auto"
    layer_norm: bool = False
    noisy: bool = False
    noisy_sigma0: float = 0.5


class NatureCNNTorso(CNNTorso):
    """Mnih et al. (2015) convolutional torso for uint8 frame stacks shaped (batch, frames, 84, 84)."""

    @nn.compact
    def __call__(self, obs):
        # Transpose while still uint8 (4x fewer bytes to move); XLA fuses it with the conversion.
        x = jnp.transpose(obs, (0, 2, 3, 1)).astype(jnp.float32) / 255.0
        for index, (features, kernel_size, stride) in enumerate(((32, 8, 4), (64, 4, 2), (64, 3, 1))):
            x = nn.relu(normalized(Conv(features, kernel_size, stride, self.conv_impl, name=f"Conv_{index}")(x),
                                   self.layer_norm))
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden_sizes:
            x = nn.relu(normalized(dense(width, self.noisy, self.noisy_sigma0)(x), self.layer_norm))
        return x


class MinAtarTorso(CNNTorso):
    """Young & Tian (2019)'s MinAtar torso for small images shaped (batch, height, width, channels): one VALID 3x3
    convolution of 16 filters with stride 1, then ReLU dense layers (128 in the paper)."""

    @nn.compact
    def __call__(self, obs):
        x = nn.relu(normalized(Conv(16, 3, 1, self.conv_impl)(obs.astype(jnp.float32)), self.layer_norm))
        return MLPTorso(self.hidden_sizes, self.layer_norm, self.noisy, self.noisy_sigma0)(x)


class NoisyDense(nn.Module):
    """A dense layer with factorised Gaussian noise on its weights (Fortunato et al. 2017).

    w = mu_w + sigma_w * (f(e_in) f(e_out)^T), b = mu_b + sigma_b * f(e_out), f(e) = sign(e) sqrt(|e|), with
    e_in, e_out standard normal, drawn afresh at each call from the 'noise' random stream (one draw for the whole
    batch); without that stream (`apply` with no `rngs={"noise": key}`) the layer is its mean, mu. Initialised
    as in the paper: mu uniform in +-1/sqrt(inputs), sigma = sigma0 / sqrt(inputs)."""

    features: int
    sigma0: float = 0.5

    @nn.compact
    def __call__(self, x):
        inputs = x.shape[-1]
        bound = inputs ** -0.5

        def uniform(key, shape, dtype=jnp.float32):
            return jax.random.uniform(key, shape, dtype, -bound, bound)

        kernel = self.param("kernel", uniform, (inputs, self.features))
        bias = self.param("bias", uniform, (self.features,))
        sigma = nn.initializers.constant(self.sigma0 * bound)
        sigma_kernel = self.param("sigma_kernel", sigma, (inputs, self.features))
        sigma_bias = self.param("sigma_bias", sigma, (self.features,))
        if not self.has_rng("noise"):
            return x @ kernel + bias
        key_in, key_out = jax.random.split(self.make_rng("noise"))
        noise_in = signed_sqrt(jax.random.normal(key_in, (inputs,)))
        noise_out = signed_sqrt(jax.random.normal(key_out, (self.features,)))
        # The noisy weights are built (inputs x features elementwise) and applied in one product: applying the
        # factors instead, x @ kernel + ((x * noise_in) @ sigma_kernel) * noise_out, costs a second product forward
        # and two more backward: 3 noisy 128x128 layers at batch 128, forward and backward, took 2.5x the time of
        # plain dense layers on a CPU core that way, 1.3x this way.
        return x @ (kernel + sigma_kernel * jnp.outer(noise_in, noise_out)) + (bias + sigma_bias * noise_out)


def signed_sqrt(x):
    """sign(x) * sqrt(|x|): the scaling of factorised noise."""
    return jnp.sign(x) * jnp.sqrt(jnp.abs(x))


NARROW_WIDTH = 32
"""A dense layer whose kernel has a side at most this wide (a Q-head's actions, a small observation) takes its
kernel's gradient through `matmul_with_copied_transpose_grad` on CPU."""


@jax.custom_vjp
def matmul_with_copied_transpose_grad(x, kernel):
    """`x @ kernel` (2-D), whose kernel gradient x^T g is a product of a transposed copy of `x` with g.

    Why: XLA:CPU runs x^T g as one product that contracts the batch axis of both operands, slowly when a side is
    narrow; the copy makes it a plain product. Alone, one CPU core (us, product against copy and product):
    (128 x 84)^T (128 x 2) 8.4 -> 5.6, (128 x 4)^T (128 x 120) 2.6 -> 1.7, (32 x 512)^T (32 x 4) 23.9 -> 7.3,
    (32 x 512)^T (32 x 18) 26.7 -> 14.2, (128 x 256)^T (128 x 2) 49.0 -> 13.9; but 128 x 120 x 84, the `cartpole`
    preset's middle layer, 30.8 -> 32.5. The gradient's sums run in another order, so its last bits differ."""
    return x @ kernel


def _matmul_fwd(x, kernel):
    return x @ kernel, (x, kernel)


def _matmul_bwd(residuals, cotangent):
    x, kernel = residuals
    # the barrier keeps XLA from folding the transpose back into the product
    return cotangent @ kernel.T, lax.optimization_barrier(x.T) @ cotangent


matmul_with_copied_transpose_grad.defvjp(_matmul_fwd, _matmul_bwd)


def cpu_dense_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """`lax.dot_general` for Flax's `Dense` on CPU: a 2-D input times a kernel with a side of at most
    `NARROW_WIDTH` goes through `matmul_with_copied_transpose_grad` (the same forward pass)."""
    plain = (((lhs.ndim - 1,), (0,)), ((), ()))
    if (lhs.ndim == 2 and dimension_numbers == plain and min(rhs.shape) <= NARROW_WIDTH and lhs.dtype == rhs.dtype
            and preferred_element_type in (None, lhs.dtype)):
        return matmul_with_copied_transpose_grad(lhs, rhs)
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                           preferred_element_type=preferred_element_type)


def dense(features: int, noisy: bool, sigma0: float):
    """A `NoisyDense` layer when `noisy`, else Flax's `Dense` (on CPU with `cpu_dense_dot_general`)."""
    if noisy:
        return NoisyDense(features, sigma0)
    return nn.Dense(features, dot_general=cpu_dense_dot_general if jax.default_backend() == "cpu" else None)


class DuelingHead(nn.Module):
    """Q = V + A - agg(A), where agg is the mean or the max over actions (Wang et al. 2016).

    With `num_atoms` > 0 each action has `num_atoms` outputs (a distribution's logits or quantiles), shaped
    (batch, num_actions, num_atoms), and the streams combine atom by atom."""

    num_actions: int
    aggregation: str = "mean"
    hidden: int = 0
    num_atoms: int = 0
    noisy: bool = False
    noisy_sigma0: float = 0.5

    @nn.compact
    def __call__(self, features):
        value_in, advantage_in = features, features
        if self.hidden:
            value_in = nn.relu(dense(self.hidden, self.noisy, self.noisy_sigma0)(features))
            advantage_in = nn.relu(dense(self.hidden, self.noisy, self.noisy_sigma0)(features))
        atoms = max(self.num_atoms, 1)
        value = dense(atoms, self.noisy, self.noisy_sigma0)(value_in)
        advantage = dense(self.num_actions * atoms, self.noisy, self.noisy_sigma0)(advantage_in)
        if self.num_atoms:
            value = value.reshape(-1, 1, atoms)
            advantage = advantage.reshape(-1, self.num_actions, atoms)
        if self.aggregation == "mean":
            centre = advantage.mean(axis=1, keepdims=True)
        else:
            centre = advantage.max(axis=1, keepdims=True)
        return value + advantage - centre


class QNetwork(nn.Module):
    """Maps a batch of observations to Q-values (batch, num_actions), or with `num_atoms` > 0 to each action's
    distribution outputs (batch, num_actions, num_atoms): C51's logits or QR-DQN's quantiles."""

    num_actions: int
    torso: str = "mlp"
    hidden_sizes: Sequence[int] = (120, 84)
    dueling: bool = False
    dueling_aggregation: str = "mean"
    dueling_hidden: int = 0
    conv_impl: str = "auto"
    layer_norm: bool = False
    num_atoms: int = 0
    noisy: bool = False
    noisy_sigma0: float = 0.5

    @nn.compact
    def __call__(self, obs):
        if self.torso == "nature_cnn":
            features = NatureCNNTorso(self.hidden_sizes, self.conv_impl, self.layer_norm, self.noisy,
                                      self.noisy_sigma0)(obs)
        elif self.torso == "minatar_cnn":
            features = MinAtarTorso(self.hidden_sizes, self.conv_impl, self.layer_norm, self.noisy,
                                    self.noisy_sigma0)(obs)
        else:
            features = MLPTorso(self.hidden_sizes, self.layer_norm, self.noisy, self.noisy_sigma0)(obs)
        if self.dueling:
            return DuelingHead(self.num_actions, self.dueling_aggregation, self.dueling_hidden, self.num_atoms,
                               self.noisy, self.noisy_sigma0)(features)
        outputs = dense(self.num_actions * max(self.num_atoms, 1), self.noisy, self.noisy_sigma0)(features)
        return outputs.reshape(-1, self.num_actions, self.num_atoms) if self.num_atoms else outputs


def make_network(network, num_actions: int, num_atoms: int = 0) -> QNetwork:
    """The Q-network that a network section (`NetworkConfig`) describes, with `num_atoms` outputs per action
    (0: one Q-value each)."""
    return QNetwork(num_actions=num_actions, torso=network.torso, hidden_sizes=tuple(network.hidden_sizes),
                    dueling=network.dueling, dueling_aggregation=network.dueling_aggregation,
                    dueling_hidden=network.dueling_hidden, layer_norm=network.layer_norm, num_atoms=num_atoms,
                    noisy=network.noisy, noisy_sigma0=network.noisy_sigma0)
