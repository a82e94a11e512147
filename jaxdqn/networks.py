"""Q-networks (Flax linen): MLP or Nature-CNN torso, plain or dueling head."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLPTorso(nn.Module):
    """Flattens the observation and applies ReLU dense layers."""

    hidden_sizes: Sequence[int]

    @nn.compact
    def __call__(self, obs):
        x = obs.reshape(obs.shape[0], -1).astype(jnp.float32)
        for width in self.hidden_sizes:
            x = nn.relu(nn.Dense(width)(x))
        return x


class NatureCNNTorso(nn.Module):
    """Mnih et al. (2015) convolutional torso for uint8 frame stacks shaped (batch, frames, 84, 84)."""

    hidden_sizes: Sequence[int] = (512,)

    @nn.compact
    def __call__(self, obs):
        x = jnp.transpose(obs, (0, 2, 3, 1)).astype(jnp.float32) / 255.0
        x = nn.relu(nn.Conv(32, (8, 8), strides=(4, 4), padding="VALID")(x))
        x = nn.relu(nn.Conv(64, (4, 4), strides=(2, 2), padding="VALID")(x))
        x = nn.relu(nn.Conv(64, (3, 3), strides=(1, 1), padding="VALID")(x))
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

    @nn.compact
    def __call__(self, obs):
        if self.torso == "nature_cnn":
            features = NatureCNNTorso(self.hidden_sizes)(obs)
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
