"""One agent's learner split over several (simulated CPU) devices, `--data-parallel D`: each device steps its share
of the agent's environments into its own replay and learns from its share of every batch, with the gradients
averaged. The same update as one device on the same batches; runs, resumes and evaluates through the command."""

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import assert_same_arrays, jaxdqn, jaxdqn_refused, stopped_at_half

FOUR_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
RUN = ["--preset", "cartpole", "--env-id", "gymnax/CartPole-v1", "--num-envs", "4", "--train-frequency", "4",
       "--learning-starts", "500", "--buffer-size", "1000", "--batch-size", "32", "--log-interval", "1000",
       "--checkpoint-interval", "1000", "--schedule-steps", "4000", "--eval-episodes", "2"]

# Runs in a process of its own with 4 simulated devices. The same batches: DQN's update on 64 transitions against 4
# devices each updating on 16 of them; PQN's whole `learn` (one minibatch per rollout, so that the minibatch is the
# same set of steps) on a rollout of 8 environments against 4 devices with 2 of them each. Prints the largest
# difference from one device and whether every device holds the same parameters.
SAME_BATCHES = textwrap.dedent("""
    import json
    from functools import partial

    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, PartitionSpec as P

    from jaxdqn.agents import resolve_agent
    from jaxdqn.agents.dqn import make_update, num_atoms
    from jaxdqn.config.build import make_config
    from jaxdqn.core.networks import make_network
    from jaxdqn.core.optim import DEVICE_AXIS, init_optimizer, make_optimizer
    from jaxdqn.core.replay import Batch
    from jaxdqn.envs import env_spec

    D, N = 4, 8
    spec = env_spec("gymnax/CartPole-v1")
    mesh = Mesh(np.array(jax.devices()[:D]), (DEVICE_AXIS,))
    shard = partial(jax.shard_map, mesh=mesh, check_vma=False)
    rng = np.random.default_rng(0)
    report = {}

    def compare(name, one, split):
        one, split = jax.tree.leaves(one), jax.tree.leaves(split)  # split: a leading device axis
        report[name] = {"max_difference": max(float(jnp.max(jnp.abs(a - b[0]))) for a, b in zip(one, split)),
                        "devices_agree": all(bool(jnp.all(b == b[0])) for b in split)}

    for variant, flags in {"dqn": {"double_q": True, "dueling": True},
                           "c51": {"distributional": "c51", "num_atoms": 11, "v_min": -10.0, "v_max": 10.0}}.items():
        cfg = make_config("cartpole", env_id="gymnax/CartPole-v1", max_grad_norm=10.0, **flags)
        settings, fns = cfg.settings, resolve_agent("dqn").build(cfg, spec)
        network = make_network(settings.network, spec.num_actions, num_atoms(settings))
        hyper = fns.hyperparameters
        params = network.init(jax.random.PRNGKey(0), jnp.zeros((1, *spec.obs_shape)))
        B = 64
        batches = [Batch(rng.normal(size=(B, 4)).astype(np.float32), rng.integers(0, 2, B).astype(np.int32),
                         rng.normal(size=B).astype(np.float32), rng.normal(size=(B, 4)).astype(np.float32),
                         rng.random(B) < 0.1, np.ones(B, np.int32)) for _ in range(5)]
        weights = [rng.uniform(0.2, 1.0, B).astype(np.float32) for _ in range(5)]

        def run(update, optimizer, batches, weights):
            p, target, opt = params, params, init_optimizer(optimizer, params, hyper)
            for batch, w in zip(batches, weights):
                p, opt, *_ = update(p, target, opt, batch, w, hyper, None)
            return p

        one = jax.jit(lambda b, w: run(make_update(settings, network), make_optimizer(settings.optim), b, w))(
            batches, weights)
        split_run = shard(lambda b, w: jax.tree.map(lambda x: x[None], run(
            make_update(settings, network, DEVICE_AXIS), make_optimizer(settings.optim, DEVICE_AXIS), b, w)),
            in_specs=(P(DEVICE_AXIS), P(DEVICE_AXIS)), out_specs=P(DEVICE_AXIS))
        compare(variant, one, jax.jit(split_run)(batches, weights))

    flat = dict(env_id="gymnax/CartPole-v1", num_envs=N, train_frequency=N * 16, num_minibatches=1, update_epochs=3)
    one_cfg, split_cfg = make_config("pqn-cartpole", **flat), make_config("pqn-cartpole", data_parallel=D, **flat)
    one_fns, split_fns = (resolve_agent("pqn").build(c, spec) for c in (one_cfg, split_cfg))
    state = one_fns.init(jax.random.PRNGKey(1), one_fns.hyperparameters)
    T = state.rollout.action.shape[0]
    done = rng.random((T, N)) < 0.05
    rollout = state.rollout._replace(
        obs=rng.normal(size=(T, N, 4)).astype(np.float32), action=rng.integers(0, 2, (T, N)).astype(np.int32),
        reward=np.ones((T, N), np.float32), terminated=done & (rng.random((T, N)) < 0.5), done=done,
        real=rng.random((T, N)) < 0.95, last_next_obs=rng.normal(size=(N, 4)).astype(np.float32))
    one = jax.jit(one_fns.learn)(state._replace(rollout=rollout), jax.random.PRNGKey(2), 20_000)[0].params
    # each device: its 2 environments' columns of the rollout
    split = lambda x, axis: np.stack(np.split(np.asarray(x), D, axis=axis))  # noqa: E731
    shares = rollout._replace(**{field: split(getattr(rollout, field), 1) for field in rollout._fields[:-1]},
                              last_next_obs=split(rollout.last_next_obs, 0))
    split_state = split_fns.init(jax.random.PRNGKey(1), split_fns.hyperparameters)
    split_learn = shard(lambda r: jax.tree.map(lambda x: x[None], split_fns.learn(
        split_state._replace(rollout=jax.tree.map(lambda x: x[0], r)), jax.random.PRNGKey(2), 20_000)[0].params),
        in_specs=P(DEVICE_AXIS), out_specs=P(DEVICE_AXIS))
    compare("pqn", one, jax.jit(split_learn)(shares))
    print(json.dumps(report))
""")


def test_the_data_parallel_update_is_the_one_device_update_on_the_same_batches():
    """DQN (double Q, dueling, clipped by global norm, importance weights) and C51 over 5 updates, and PQN's learn
    over 3 epochs of a rollout: 4 devices with a quarter of the batch each end with the parameters of one device
    with the whole batch (to float tolerance: the sums run in another order), the same on every device."""
    result = subprocess.run([sys.executable, "-c", SAME_BATCHES], capture_output=True, text=True,
                            env={**__import__("os").environ, **FOUR_DEVICES})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(report) == ["c51", "dqn", "pqn"]
    for variant, outcome in report.items():
        assert outcome["devices_agree"], variant
        assert 0 <= outcome["max_difference"] < 1e-5, (variant, outcome)


@pytest.mark.long
def test_a_data_parallel_run_trains_evaluates_and_resumes_exactly(tmp_path):
    """`jaxdqn train --data-parallel 2` on EnvPool (one pool per device, each with its share of every agent's
    environments; prioritized replay: importance weights over both devices' batches) runs to the end on 2 of 4
    simulated devices, checks that both devices hold the same parameters at every log point, and writes one set
    of outputs that `jaxdqn evaluate` plays. Two processes of one device each (jaxdqn launch, the gradients
    averaged through gloo) train the same agents bit for bit, and, stopped halfway, resume --exact to the same
    arrays."""
    # 2,000 steps (375 updates), not 4,000: across processes every collective is a gloo round trip of 2-3 ms here
    shorter = {"--log-interval": "500", "--checkpoint-interval": "500"}
    run = [item for flag, value in zip(RUN[::2], RUN[1::2]) for item in (flag, shorter.get(flag, value))]
    args = [*run, "--env-id", "CartPole-v1", "--data-parallel", "2",
            "--prioritized", "True", "--num-seeds", "2", "--total-steps", 2000, "--replay-in-every-checkpoint", "True"]
    whole, launched, half = (tmp_path / name for name in ("whole", "launched", "half"))
    result = jaxdqn("train", *args, "--out", whole, env=FOUR_DEVICES)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 agent(s), each split over 2 devices (data parallel: 2 of its 4 environments on each)" in result.stdout
    summary = json.loads((whole / "summary.json").read_text())
    assert (summary["data_parallel"], summary["devices"], summary["num_agents"]) == (2, 2, 2)
    assert len(summary["eval_return_mean"]) == 2 and summary["updates"] == 375
    assert len((whole / "metrics.jsonl").read_text().splitlines()) == 4
    evaluated = jaxdqn("evaluate", whole, "--episodes", 2)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "seed 1: return" in evaluated.stdout

    two_processes = ["launch", "--processes", 2, "--", "train"]
    result = jaxdqn(*two_processes, *args, "--out", launched)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("each split over 2 devices") == 1 and result.stderr == ""
    assert_same_arrays(launched, whole)
    stopped_at_half(launched, half, total_steps=2000, interval=500)
    result = jaxdqn(*two_processes, "--resume", half, "--total-steps", 2000, "--exact")
    assert result.returncode == 0, result.stderr[-2000:]
    assert_same_arrays(half, launched)


def test_pqn_trains_data_parallel_from_the_command_line(tmp_path):
    """PQN's rollout and minibatches split over 2 devices through `jaxdqn train`."""
    out = tmp_path / "pqn"
    result = jaxdqn("train", "--preset", "pqn-cartpole", "--env-id", "gymnax/CartPole-v1", "--num-envs", "8",
                    "--train-frequency", "64", "--num-minibatches", "4", "--total-steps", "2048", "--log-interval",
                    "1024", "--eval-episodes", "2", "--data-parallel", "2", "--out", out, env=FOUR_DEVICES)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1 agent(s), each split over 2 devices (data parallel: 4 of its 8 environments on each)" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data_parallel"] == 2 and summary["updates"] > 0 and len(summary["eval_return_mean"]) == 1


LEARNER_REFUSALS = [
    (["--num-envs", "6", "--train-frequency", "6"],
     "num_envs: must split evenly over the data_parallel devices (4) (got 6)"),
    (["--batch-size", "30"], "batch_size: must split evenly over the data_parallel devices (4) (got 30)"),
    (["--devices", "2"], "devices: with data_parallel 4 the agents are split over 4 devices; allowed here: 4 (got 2)"),
    (["--data-parallel", "8", "--num-envs", "8", "--train-frequency", "8"],
     "data_parallel: this process has 4 local cpu device(s) (got 8)"),
    (["--preset", "frozenlake"], "data_parallel: tabular learns from every step as it comes, with no minibatch "
     "to split over devices; allowed: 1 (got 4)"),
]


def test_a_learner_that_cannot_be_split_is_one_line(tmp_path):
    """Each refused in one line before anything is written (one process runs the command for each)."""
    outs = [tmp_path / f"run{i}" for i in range(len(LEARNER_REFUSALS))]
    runs = [["train", *([] if "frozenlake" in args else RUN), "--data-parallel", "4", *args, "--out", out]
            for (args, _), out in zip(LEARNER_REFUSALS, outs)]
    for (_, message), outcome in zip(LEARNER_REFUSALS, jaxdqn_refused(runs, env=FOUR_DEVICES)):
        assert outcome == (2, f"jaxdqn: error: {message}\n")
    assert not [out for out in outs if out.exists()]


SHARES_DIFFER = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jaxdqn.config.build import make_config
    from jaxdqn.run.driver import build_rollout

    cfg = make_config("cartpole", env_id="gymnax/CartPole-v1", num_envs=4, num_seeds=2, data_parallel=2,
                      buffer_size=1000, learning_starts=1000)
    rollout = build_rollout(cfg)
    state = jax.jit(rollout.init)(jax.random.PRNGKey(0))  # slots: the agents' first shares, then their second
    chunk = jax.jit(rollout.run_chunk)
    agree = []
    for nudge in (0.0, 1e-3):
        params = jax.tree.map(lambda x: x.at[2].add(nudge), state.agents.params)  # agent 0's second share
        placed = rollout.place(state._replace(agents=state.agents._replace(params=params)))
        _, output = chunk(placed, jnp.int32(1), jnp.int32(10**6))
        agree.append(bool(output.replicas_agree))
    print(json.dumps({"agree": agree, "finite": np.asarray(output.params_finite).tolist()}))
""")


def test_a_chunk_says_whether_the_shares_of_each_agent_hold_the_same_parameters():
    """The check behind exit code 5, done in the chunk (the shares are on different devices): two agents split over
    2 devices agree as initialised, and not once one share of one agent is nudged."""
    result = subprocess.run([sys.executable, "-c", SHARES_DIFFER], capture_output=True, text=True,
                            env={**__import__("os").environ, **FOUR_DEVICES})
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"agree": [True, False], "finite": [True, True]}
