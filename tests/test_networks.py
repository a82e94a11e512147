"""Network shapes and the dueling-head identities."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn.networks import DuelingHead, QNetwork


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
