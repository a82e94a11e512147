"""Network shapes, the dueling-head identities, and the Nature CNN against flax.linen.Conv."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn.core.networks import (DuelingHead, NatureCNNTorso, QNetwork, conv_impl_for_backend, conv_valid_as_gemm,
                                  NARROW_WIDTH, cpu_dense_dot_general)


@pytest.mark.parametrize("aggregation", ["mean", "max"])
def test_dueling_advantages_are_centred(aggregation):
    head = DuelingHead(num_actions=5, aggregation=aggregation, hidden=8)
    features = jax.random.normal(jax.random.PRNGKey(0), (16, 12))
    params = head.init(jax.random.PRNGKey(1), features)
    q = head.apply(params, features)
    # Q - V is the centred advantage; recover V from the value stream.
    value = jax.nn.relu(features @ params["params"]["Dense_0"]["kernel"] + params["params"]["Dense_0"]["bias"])
    value = value @ params["params"]["Dense_2"]["kernel"] + params["params"]["Dense_2"]["bias"]
    centred = q - value
    if aggregation == "mean":
        np.testing.assert_allclose(centred.mean(axis=-1), 0.0, atol=1e-5)
    else:
        np.testing.assert_allclose(centred.max(axis=-1), 0.0, atol=1e-5)


def test_dueling_q_differs_only_by_action_independent_shift_from_advantage():
    head = DuelingHead(num_actions=3, aggregation="mean")
    features = jax.random.normal(jax.random.PRNGKey(0), (4, 6))
    params = head.init(jax.random.PRNGKey(1), features)
    q = head.apply(params, features)
    advantage = features @ params["params"]["Dense_1"]["kernel"] + params["params"]["Dense_1"]["bias"]
    shift = q - advantage
    np.testing.assert_allclose(shift, shift[:, :1].repeat(3, axis=1), atol=1e-5)


def test_mlp_q_network_shape():
    net = QNetwork(num_actions=2, hidden_sizes=(120, 84))
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
    assert net.apply(params, jnp.ones((7, 4))).shape == (7, 2)


def test_nature_cnn_takes_uint8_stacks_and_scales_inside():
    net = QNetwork(num_actions=6, torso="nature_cnn", hidden_sizes=(512,), dueling=True)
    frames = jnp.full((2, 4, 84, 84), 255, jnp.uint8)
    params = net.init(jax.random.PRNGKey(0), frames)
    q = net.apply(params, frames)
    assert q.shape == (2, 6)
    conv_kernel = params["params"]["NatureCNNTorso_0"]["Conv_0"]["kernel"]
    assert conv_kernel.shape == (8, 8, 4, 32)
    # uint8 255 is scaled to 1.0 inside: same output as float input of ones
    np.testing.assert_allclose(q, net.apply(params, jnp.ones((2, 4, 84, 84), jnp.float32) * 255), rtol=1e-5)


@pytest.mark.parametrize("conv_impl", ["xla", "gemm_grad"])
def test_minatar_cnn_is_young_and_tians_network(conv_impl):
    """One VALID 3x3 convolution of 16 filters with stride 1 on (height, width, channels), ReLU, a 128-wide ReLU
    layer and the Q-values, computed here from the parameters with lax.conv."""
    net = QNetwork(num_actions=3, torso="minatar_cnn", hidden_sizes=(128,), conv_impl=conv_impl)
    obs = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, (5, 10, 10, 4)).astype(jnp.float32)
    params = net.init(jax.random.PRNGKey(0), obs)
    torso = params["params"]["MinAtarTorso_0"]
    conv, hidden, head = torso["Conv_0"], torso["MLPTorso_0"]["Dense_0"], params["params"]["Dense_0"]
    assert (conv["kernel"].shape, hidden["kernel"].shape, head["kernel"].shape) == ((3, 3, 4, 16), (1024, 128),
                                                                                      (128, 3))
    x = jax.lax.conv_general_dilated(obs, conv["kernel"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    x = jax.nn.relu(x + conv["bias"]).reshape(5, -1)  # (5, 8, 8, 16)
    x = jax.nn.relu(x @ hidden["kernel"] + hidden["bias"])
    np.testing.assert_allclose(net.apply(params, obs), x @ head["kernel"] + head["bias"], rtol=1e-5, atol=1e-6)


class _FlaxConvNatureCNN(nn.Module):
    """The Nature-CNN torso written with flax.linen.Conv: the reference for the matrix-product paths."""

    @nn.compact
    def __call__(self, obs):
        x = jnp.transpose(obs, (0, 2, 3, 1)).astype(jnp.float32) / 255.0
        x = nn.relu(nn.Conv(32, (8, 8), strides=(4, 4), padding="VALID")(x))
        x = nn.relu(nn.Conv(64, (4, 4), strides=(2, 2), padding="VALID")(x))
        x = nn.relu(nn.Conv(64, (3, 3), strides=(1, 1), padding="VALID")(x))
        x = x.reshape(x.shape[0], -1)
        return nn.relu(nn.Dense(512)(x))


@pytest.mark.parametrize("conv_impl", ["gemm", "gemm_grad"])
def test_nature_cnn_matches_flax_conv_in_params_outputs_and_gradients(conv_impl):
    frames = jax.random.randint(jax.random.PRNGKey(3), (3, 4, 84, 84), 0, 256).astype(jnp.uint8)
    reference = _FlaxConvNatureCNN()
    torso = NatureCNNTorso((512,), conv_impl=conv_impl)
    ref_params = jax.jit(reference.init)(jax.random.PRNGKey(0), frames[:1])
    params = jax.jit(torso.init)(jax.random.PRNGKey(0), frames[:1])
    # Same tree, same shapes and the same initial values from the same key.
    assert jax.tree.structure(params) == jax.tree.structure(ref_params)
    jax.tree.map(np.testing.assert_array_equal, params, ref_params)

    np.testing.assert_allclose(jax.jit(torso.apply)(params, frames), jax.jit(reference.apply)(params, frames),
                               rtol=1e-4, atol=1e-5)

    def grads(module):
        return jax.jit(jax.grad(lambda p: jnp.sum(module.apply(p, frames) ** 2)))(params)

    got, want = grads(torso), grads(reference)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4 * float(jnp.abs(w).max())),
                 got, want)


@pytest.mark.parametrize("shape, kernel_size, stride", [((2, 84, 84, 4), 8, 4), ((2, 20, 20, 32), 4, 2),
                                                         ((2, 11, 11, 3), 4, 3)])
def test_conv_as_gemm_equals_xla_convolution(shape, kernel_size, stride):
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    kernel = jax.random.normal(jax.random.PRNGKey(1), (kernel_size, kernel_size, shape[-1], 16))
    want = jax.jit(jax.lax.conv_general_dilated, static_argnums=(2, 3, 6))(
        x, kernel, (stride, stride), "VALID", None, None, ("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(jax.jit(conv_valid_as_gemm, static_argnums=2)(x, kernel, stride), want, rtol=1e-4, atol=1e-4)


def test_unknown_conv_impl_is_refused():
    with pytest.raises(ValueError, match="conv_impl 'cudnn' is not one of auto, xla, gemm, gemm_grad"):
        conv_impl_for_backend("cudnn")


@pytest.mark.parametrize("inputs, features", [(84, 2), (4, 120), (120, 84), (512, 18)])
def test_cpu_dense_layers_compute_the_same_outputs_and_gradients(inputs, features):
    """Flax's `Dense` with `cpu_dense_dot_general` (a narrow kernel's gradient through a transposed copy, a wide one
    as XLA does it): the same outputs, bit for bit, and the same gradients of the input and the kernel up to the
    order of their sums."""
    x = jax.random.normal(jax.random.PRNGKey(0), (32, inputs))
    plain, ours = nn.Dense(features), nn.Dense(features, dot_general=cpu_dense_dot_general)
    params = plain.init(jax.random.PRNGKey(1), x)
    weights = jax.random.normal(jax.random.PRNGKey(2), (32, features))

    def loss(layer):
        return lambda p, x: jnp.sum(jnp.tanh(layer.apply(p, x)) * weights)

    np.testing.assert_array_equal(ours.apply(params, x), plain.apply(params, x))
    routed = [eqn.primitive.name for eqn in jax.make_jaxpr(ours.apply)(params, x).jaxpr.eqns]
    assert ("custom_vjp_call" in routed) == (min(inputs, features) <= NARROW_WIDTH), routed
    (ours_params, ours_x), (plain_params, plain_x) = (jax.grad(loss(layer), argnums=(0, 1))(params, x)
                                                      for layer in (ours, plain))
    np.testing.assert_allclose(ours_x, plain_x, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(ours_params), jax.tree.leaves(plain_params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
