"""Environments EnvPool lacks run through a Gymnasium vector env stepped by a host callback inside jit,
with the same auto-reset semantics as EnvPool's, so the same "skip the step after done" logic holds."""

import json

import jax
import numpy as np
import pytest

from jaxdqn.envs import is_envpool_env, make_gymnasium_pool, make_pool, make_xla_step
from tests.conftest import jaxdqn


@pytest.mark.parametrize("backend", ["envpool", "gymnasium"])
def test_step_after_done_is_a_reset_with_no_reward(backend):
    """CartPole through both backends: valid transitions obey x' = x + 0.02 x_dot, the step after an
    episode ends returns a start state with reward 0 and not done, exactly as train.py assumes."""
    num_envs, steps = 4, 300
    make = make_pool if backend == "envpool" else make_gymnasium_pool
    env, obs = make("CartPole-v1", num_envs, 0)
    handle, step = make_xla_step(env)
    actions = jax.random.randint(jax.random.PRNGKey(0), (steps, num_envs), 0, 2)

    def body(handle, action):
        handle, out = step(handle, action)
        return handle, out

    _, (next_obs, reward, terminated, truncated) = jax.jit(lambda h: jax.lax.scan(body, h, actions))(handle)
    obs_seq = np.concatenate([np.asarray(obs)[None], np.asarray(next_obs)[:-1]])
    next_obs, reward = np.asarray(next_obs), np.asarray(reward)
    done = np.asarray(terminated) | np.asarray(truncated)
    after_done = np.concatenate([np.zeros((1, num_envs), bool), done[:-1]])
    assert after_done.sum() > 10
    valid = ~after_done
    np.testing.assert_allclose(next_obs[valid][:, 0], obs_seq[valid][:, 0] + 0.02 * obs_seq[valid][:, 1], atol=1e-4)
    assert (reward[after_done] == 0).all() and not done[after_done].any()
    assert (np.abs(next_obs[after_done][:, :4]) <= 0.05).all()  # CartPole starts within +-0.05
    env.close()


def test_gymnasium_only_env_trains_through_the_cli_with_a_note(tmp_path):
    assert not is_envpool_env("Taxi-v4")  # Gymnasium 1.x only; EnvPool has Taxi-v3
    out = tmp_path / "taxi"
    result = jaxdqn("train", "--env-id", "Taxi-v4", "--agent", "tabular", "--total-steps", "2000",
                    "--num-envs", "4", "--learning-starts", "0", "--log-interval", "1000", "--eval-episodes", "2",
                    "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "EnvPool has no 'Taxi-v4'" in result.stdout and "a slower path" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_id"] == "Taxi-v4" and summary["env_steps"] == 2000
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["episodes"][0] > 0 and record["loss"][0] > 0  # Taxi pays -1 per step: the table moved
