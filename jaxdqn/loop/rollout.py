"""The one compiled loop every agent and environment backend runs in.

One iteration acts on every environment of every agent (`AgentFns.act`, vmapped over the leading agent
axis), steps the environment backend once for the whole pool (A agents x N environments: EnvPool's ops
cannot be vmapped, so the agent axis is folded into the pool here, at the boundary), hands the step to
`AgentFns.observe` and records episodes. One *period* is `plan.iters_per_period` iterations followed, once
learning has started, by one `AgentFns.learn`. A chunk is a `fori_loop` over a number of periods given at
run time, so one compiled chunk serves every log interval and the final remainder.

With `env_overlap` (EnvPool's XLA op), an iteration is receive -> act -> send -> observe: the chunk opens by
sending the first actions, each iteration receives the step sent before it, chooses and sends the next
actions, then observes and records the step received; the chunk's last iteration sends nothing, so no step is
left in flight between chunks (checkpoints and resume see the same state as without overlap). EnvPool's
threads step the environments while the agent observes and, at the end of each period, learns.

The loop's leading axis holds *slots*, each one agent's share of its environments: the A agents themselves, or
with `data_parallel` D, D shares of each agent, shard-major (slot s * A + a is agent a's s-th share of N / D
environments), sharded over D devices so that device s holds share s of every agent. The shares of an agent
start from the same state and average their gradients (`core.optim.average_gradients`), so they stay one agent;
its episode statistics are kept whole on every device from the shares' steps gathered at each iteration.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxdqn.agents.base import AgentFns, Step
from jaxdqn.compile_cache import PreparedProgram, once_compiler_options, prepare_program
from jaxdqn.config.schema import ConfigError, Plan, plan
from jaxdqn.config.validate import agent_devices
from jaxdqn.core.optim import DEVICE_AXIS
from jaxdqn.loop.episodes import (EpisodeLog, EpisodeStats, empty_episode_log, init_episode_stats, log_episode_ends,
                                  update_episode_stats)


class LoopState(NamedTuple):
    """The whole training state carried from chunk to chunk (arrays with a leading slot axis S: the A agents, or
    with data_parallel D their D * A shares, each with N / D environments)."""

    agents: Any
    env_state: Any
    obs: chex.Array  # (S, N / D, *obs_shape)
    done: chex.Array  # (S, N / D): the last step ended an episode, so the next one is the auto-reset step
    stats: EpisodeStats  # per agent (A, ...), whole environments
    keys: chex.Array  # (S, 2): each slot's loop key; act and learn keys are folded from it and the iteration
    iteration: chex.Array  # iterations run so far (each is N env steps per agent)


def all_true(arrays) -> jax.Array:
    """Whether every element of every array in `arrays` is true."""
    return jnp.all(jnp.stack([jnp.all(x) for x in arrays]))


def all_finite(tree) -> jax.Array:
    """Whether every element of every leaf of `tree` is finite."""
    return all_true([jnp.isfinite(leaf) for leaf in jax.tree.leaves(tree)])


class ChunkOutput(NamedTuple):
    """What one chunk hands the host: per-agent sums of the learn metrics, how many periods learned, the
    actions sent to the pool (row i: the chunk's i-th iteration), the episodes that finished, and, at the chunk's
    end, the agents' reports, whether their parameters are finite and whether the shares of each agent hold the
    same parameters, and a copy of its episode statistics (which the host reads while the next chunk, given the
    state, runs). (Checked in the chunk rather than by programs of their own, which a process would compile when
    its first chunk ends.)"""

    metric_sums: dict  # name -> (A,)
    learn_calls: chex.Array
    actions: chex.Array  # (action_log_length, S * N / D): the pool's order
    finished: EpisodeLog
    report: dict | None = None  # name -> (A,): `AgentFns.report` at the chunk's last step
    params_finite: chex.Array | None = None  # (A,) bool
    replicas_agree: chex.Array | None = None  # bool: True unless a data-parallel agent's shares differ
    stats: EpisodeStats | None = None  # the state's at the chunk's end


class Rollout(NamedTuple):
    """A built training loop: `init(key) -> LoopState`, `run_chunk(state, n_periods, learn_after) -> (state,
    ChunkOutput)`, and what the driver, checkpoints and resume need to know."""

    fns: AgentFns
    env: Any
    plan: Plan
    num_agents: int
    init: Callable
    start: Callable  # start(key, program_key) -> init(key), compiled; program_key(name, args) keys `compile_program`
    prepare_start: Callable  # prepare_start(key, program_key) -> (PreparedProgram, args) of `start`, not compiled yet
    run_chunk: Callable
    cut_episodes: Callable  # cut_episodes(state) -> state, jitted (see make_rollout)
    action_log_length: int
    action_dtype: Any
    reset: tuple  # (env_state, obs) of the pool right after its reset
    seed_indices: tuple  # each agent's seed index (`AgentAxis`)
    devices: int  # local devices the agents (or with data_parallel, their shares) are sharded over
    place: Callable  # place(state) -> the LoopState split over those devices (see `agent_specs`)
    whole_agents: Callable  # whole_agents(agents) -> the A agents' states (with data_parallel, their first shares)


class AgentAxis(NamedTuple):
    """Who the A agents of a run are: agent a has the hyperparameters at index a of `hyperparameters` (a pytree
    of arrays with a leading A axis) and seed index `seed_indices[a]`, from which its keys and its environments'
    seeds derive (as seed k of `jaxdqn train --num-seeds`), so that an agent of a sweep is the same agent as the
    one trained alone with its values and seed."""

    hyperparameters: Any
    seed_indices: tuple


def seeds_axis(hyperparameters, num_seeds: int) -> AgentAxis:
    """The agents of a plain run: `num_seeds` seeds of one set of hyperparameters."""
    return stacked_axis([hyperparameters], num_seeds)


def stacked_axis(hyperparameters: list, num_seeds: int) -> AgentAxis:
    """The agents of a sweep group: `num_seeds` seeds of each set of hyperparameters in turn (configuration-major)."""
    # numpy, not jax.numpy: built on the host, without compiling a program for each stack
    stacked = jax.tree.map(lambda *values: np.stack([np.asarray(v) for v in values for _ in range(num_seeds)]),
                           *hyperparameters)
    return AgentAxis(stacked, tuple(seed for _ in hyperparameters for seed in range(num_seeds)))


def agent_specs(tree):
    """How a pytree of the loop is split over the device mesh: every array along its leading axis (the slots'
    state, observations, statistics and keys have the slots there; a JAX environment pool has its environments
    there, slot-major), so that each device holds whole slots; scalars (the iteration counter) on every device."""
    from jax.sharding import PartitionSpec

    return jax.tree.map(lambda leaf: PartitionSpec(DEVICE_AXIS) if jnp.ndim(leaf) else PartitionSpec(), tree)


def pool_order(seeds, num_agents: int, shards: int):
    """Per-environment values in agent-major order (A agents x N environments) in the pool's slot order: with
    `shards` > 1 (data_parallel), share-major, so that slot s * A + a holds agent a's environments s * N / D ..."""
    seeds = np.asarray(seeds)
    return seeds.reshape(num_agents, shards, -1).swapaxes(0, 1).reshape(-1) if shards > 1 else seeds


def action_log_dtype(num_actions: int):
    """The narrowest dtype that holds every action index."""
    return np.uint8 if num_actions <= 256 else np.int32


class ChunkAgents(NamedTuple):
    """One device's agents as the chunk carries them: `act(agents, obs, keys, step)`, `observe(agents, step,
    env_steps, learning)` and `learn(agents, keys, env_steps)` over them, every other per-agent value (observations,
    keys, steps, actions, metrics) with the leading agent axis; `carried(agents)` / `stacked(agents)` turn the
    stacked agents (the LoopState's) into the carried ones and back."""

    act: Callable
    observe: Callable
    learn: Callable
    carried: Callable
    stacked: Callable


def chunk_agents(fns: AgentFns, num_agents: int) -> ChunkAgents:
    """The agents' functions vmapped over the agent axis; for a single agent, its state is carried without that
    axis (taken off once a chunk) and its functions called as they are, the axis dropped from their other
    arguments and put back on their per-agent outputs. Carried with the axis, the reshapes around each call kept
    XLA from updating the parameters, the target and Adam's moments in place: it copied them at every update
    (and XLA:CPU runs the batched forms of the update, batched matmuls, gathers and scatters, about 10% slower
    than the plain ones even when the batch is 1)."""
    if num_agents > 1:
        def identity(agents):
            return agents

        return ChunkAgents(jax.vmap(fns.act, in_axes=(0, 0, 0, None)),
                           jax.vmap(fns.observe, in_axes=(0, 0, None, None)),
                           jax.vmap(fns.learn, in_axes=(0, 0, None)), identity, identity)

    def first(tree):
        return jax.tree.map(lambda x: x[0], tree)

    def stacked(tree):
        return jax.tree.map(lambda x: x[None], tree)

    def act(agents, obs, keys, step):
        return stacked(fns.act(agents, first(obs), first(keys), step))

    def observe(agents, step, env_steps, learning):
        return fns.observe(agents, first(step), env_steps, learning)

    def learn(agents, keys, env_steps):
        agents, metrics = fns.learn(agents, first(keys), env_steps)
        return agents, stacked(metrics)

    return ChunkAgents(act, observe, learn, first, stacked)


def make_rollout(cfg, fns: AgentFns, env, agents: AgentAxis | None = None, one_loop: bool | None = None) -> Rollout:
    """The compiled loop of `fns` (one agent's functions) over the agents `agents` (default: `cfg.loop.num_seeds`
    seeds of `fns.hyperparameters`) on the pool `env` (A x N environments, agent-major).

    `one_loop`: whether the chunk's periods that only act and those that learn are one loop with a branch (the
    default on CPU) or two loops (elsewhere); both compute the same."""
    the_plan = plan(cfg)
    # jitted, so that the trace that finds its metrics' shapes (`metric_shapes`) is the one the chunk calls
    fns = fns._replace(learn=jax.jit(fns.learn))
    agents = agents if agents is not None else seeds_axis(fns.hyperparameters, cfg.loop.num_seeds)
    num_agents, num_envs = len(agents.seed_indices), cfg.env.num_envs
    shards = cfg.loop.data_parallel
    slots, slot_envs = num_agents * shards, num_envs // shards
    # With several devices the chunk is written for one device's slots (`local`) and run on every device by
    # shard_map: each device runs the very program a run of `local` agents runs, with no traffic between devices
    # unless the slots are shares of agents (data_parallel), so the agents' results do not depend on how they
    # are split.
    devices = agent_devices(cfg, num_agents)
    local = slots // devices
    # jax.devices(): this process's devices, or, with several processes, every process's (each owns its share)
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:devices]), (DEVICE_AXIS,)) if devices > 1 else None
    # On CPU the periods that only act (at a run's start) and those that learn are one loop, with `learn` behind a
    # `lax.cond`, so that the acting iteration is compiled once: `cartpole` on gymnax, the chunk's XLA compile
    # 2.2 -> 1.7 s; the branch costs about 1 us a period (its run at 1 environment 0.05-0.1 s longer, at 10 within
    # the noise). Elsewhere two loops: a branch costs a device-host sync on a GPU.
    one_loop = jax.devices()[0].platform == "cpu" if one_loop is None else one_loop

    def loop_specs(state: LoopState):
        specs = agent_specs(state)
        return specs._replace(stats=jax.tree.map(replicated, specs.stats)) if shards > 1 else specs

    def place(state):
        if mesh is None:
            return state
        shardings = jax.tree.map(lambda spec: jax.sharding.NamedSharding(mesh, spec), loop_specs(state))
        if jax.process_count() == 1 and mesh.devices.flat[0].platform != "cpu":
            return jax.device_put(state, shardings)
        # every process holds the whole state and places its own devices' shares; the shares of other processes'
        # EnvPool pools are stand-ins (envs.DevicePools), so the processes' whole states differ there. On a CPU the
        # host's copy costs nothing, where device_put from one device compiles a slicing program per leaf shape
        return jax.tree.map(lambda x, sharding: jax.make_array_from_callback(np.shape(x), sharding,
                                                                             lambda index: x[index]),
                            jax.device_get(state), shardings)

    seed_indices, agent_hypers = np.asarray(agents.seed_indices, np.int32), agents.hyperparameters
    spec = env.spec
    slot_axis, local_axis = (slots, slot_envs), (local, slot_envs)
    action_log_length = the_plan.log_periods * the_plan.iters_per_period
    action_dtype = action_log_dtype(spec.num_actions)
    env_state0, obs0 = env.reset()
    first_obs = np.asarray(obs0).reshape(*slot_axis, *spec.obs_shape)
    solved_return = cfg.loop.solved_return
    overlap = cfg.env.env_overlap
    if overlap and not env.can_overlap:  # EnvPool built without its CUDA op, found only once the pool exists
        raise ConfigError(f"env_overlap: needs EnvPool's XLA step, which this pool of {spec.env_id} does not have "
                          "(it steps through a host callback); allowed here: False (got True)")
    # the chunk's functions see one device's agents; cut_episodes runs over all of them
    chunk_fns = chunk_agents(fns, local)
    observe_all = jax.vmap(fns.observe, in_axes=(0, 0, None, None))
    fold = jax.vmap(jax.random.fold_in, in_axes=(0, None))

    def init_from(key, seeds, hypers, env_state, obs) -> LoopState:
        agent_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, seeds)
        agents, loop_keys = jax.vmap(fns.init)(fold(agent_keys, 0), hypers), fold(agent_keys, 1)
        if shards > 1:  # an agent's shares start from its one initial state and explore with keys of their own
            agents = jax.tree.map(lambda x: jnp.concatenate([x] * shards), agents)
            loop_keys = jnp.concatenate([fold(loop_keys, share) for share in range(shards)])
        return LoopState(agents, env_state, obs, jnp.zeros(slot_axis, bool),
                         init_episode_stats(num_agents, num_envs), loop_keys, jnp.zeros((), jnp.int32))

    def init(key) -> LoopState:
        return init_from(key, seed_indices, agent_hypers, env_state0, first_obs)

    # The seeds, hyperparameters and the pool's reset state go in as arguments, not as constants of the program,
    # so that the persistent compile cache serves other seeds and settings, and EnvPool runs at all: the state of
    # an EnvPool pool holds the address of this process's pool.
    def prepare_start(key, program_key: Callable = lambda name, args: None) -> tuple[PreparedProgram, tuple]:
        args = (key, seed_indices, agent_hypers, env_state0, first_obs)
        options = once_compiler_options()
        return prepare_program(init_from, args, program_key("init", args), compiler_options=options), args

    def start(key, program_key: Callable = lambda name, args: None) -> LoopState:
        prepared, args = prepare_start(key, program_key)
        return prepared.compile()(*args)

    def choose(agents, obs, keys, iteration):
        # the actions of the pool's step number `iteration`: its key and its epsilon, with or without overlap
        return chunk_fns.act(agents, obs, fold(keys, 2 * iteration), iteration * num_envs)

    def send(env_state, actions):
        return env.send(env_state, actions.reshape(local * slot_envs))

    def whole(reward, real, over):
        """(local, N / D) -> (local, N): every share's environments of each agent, on every device. One
        collective for the three (as float32: exact for the flags), not one each: across processes every
        collective is a round trip."""
        if shards == 1:
            return reward, real, over
        gathered = jax.lax.all_gather(jnp.stack([reward, real.astype(reward.dtype), over.astype(reward.dtype)]),
                                      DEVICE_AXIS, axis=2, tiled=True)
        return gathered[0], gathered[1].astype(bool), gathered[2].astype(bool)

    def iterate(carry, _):
        state, action_log, first_iteration, learn_after, pending, end_iteration = carry
        env_steps = state.iteration * num_envs
        if overlap:  # the step sent before this iteration; send the next one before observing this one
            actions = pending
            env_state, out = env.recv(state.env_state)
            next_obs = out.obs.reshape(*local_axis, *spec.obs_shape)
            pending = choose(state.agents, next_obs, state.keys, state.iteration + 1)
            env_state = jax.lax.cond(state.iteration + 1 < end_iteration, send, lambda e, _: e, env_state, pending)
            env_state, out = jax.lax.optimization_barrier((env_state, out))  # observe after the send
        else:
            actions = choose(state.agents, state.obs, state.keys, state.iteration)
            env_state, out = env.step(state.env_state, actions.reshape(local * slot_envs))
            next_obs = out.obs.reshape(*local_axis, *spec.obs_shape)
        action_log = action_log.at[state.iteration - first_iteration].set(
            actions.reshape(local * slot_envs).astype(action_dtype), mode="drop")
        reward, terminated, truncated, game_reward, game_over = (
            x.reshape(local_axis) for x in (out.reward, out.terminated, out.truncated, out.game_reward, out.game_over))
        real = ~state.done
        step = Step(state.obs, actions, reward, terminated, truncated, next_obs, real)
        agents = chunk_fns.observe(state.agents, step, env_steps, env_steps >= learn_after)
        # reported episodes are whole games with raw rewards, not the clipped, life-by-life training signal
        stats, ends = update_episode_stats(state.stats, *whole(game_reward, real, game_over & real),
                                           env_steps + num_envs, solved_return)
        state = LoopState(agents, env_state, next_obs, (terminated | truncated) & real, stats, state.keys,
                          state.iteration + 1)
        return (state, action_log, first_iteration, learn_after, pending, end_iteration), ends

    def period(learns):
        """One period's body for `fori_loop`: its iterations, then one `learn` if `learns` is True, none if it is
        False, or, given a (traced) period number, one in the periods from that number on (`lax.cond`)."""

        def body(i, carry):
            state, output, first_iteration, learn_after, pending, end_iteration = carry
            (state, action_log, _, _, pending, _), ends = jax.lax.scan(
                iterate, (state, output.actions, first_iteration, learn_after, pending, end_iteration), None,
                length=the_plan.iters_per_period)
            output = output._replace(actions=action_log, finished=log_episode_ends(output.finished, ends))

            def learned(agents, metric_sums, learn_calls):
                env_steps = state.iteration * num_envs
                agents, metrics = chunk_fns.learn(agents, fold(state.keys, 2 * state.iteration + 1), env_steps)
                if shards > 1:  # the whole batch's
                    metrics = jax.lax.pmean(metrics, DEVICE_AXIS)
                return agents, jax.tree.map(jnp.add, metric_sums, metrics), learn_calls + 1

            operands = (state.agents, output.metric_sums, output.learn_calls)
            if learns is True:
                agents, sums, calls = learned(*operands)
            elif learns is False:
                agents, sums, calls = operands
            else:
                agents, sums, calls = jax.lax.cond(i >= learns, learned, lambda *a: a, *operands)
            state = state._replace(agents=agents)
            output = output._replace(metric_sums=sums, learn_calls=calls)
            return state, output, first_iteration, learn_after, pending, end_iteration

        return body

    # learn, with the mesh axis that a data-parallel learner averages over bound (by a vmap of size 1)
    bound_learn = jax.vmap(jax.vmap(fns.learn, in_axes=(0, 0, None)), in_axes=(None, None, None), axis_size=1,
                           axis_name=DEVICE_AXIS)

    @functools.cache
    def metric_shapes():  # traced when first asked for: a chunk loaded from the program cache never asks
        """One agent's metrics, as `ShapeDtypeStruct`s."""
        agents = jax.eval_shape(init, jax.random.PRNGKey(0)).agents
        if shards > 1:  # its learn averages over the mesh axis: bound here by a vmap
            return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape[2:], s.dtype), jax.eval_shape(
                bound_learn, agents, jax.ShapeDtypeStruct((slots, 2), jnp.uint32), jnp.int32(0))[1])
        # the very arguments the chunk's learn gets, so that the chunk's trace finds this one in jit's cache
        one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), agents)
        return jax.eval_shape(fns.learn, one, jax.ShapeDtypeStruct((2,), jnp.uint32), jnp.int32(0))[1]

    def report_shapes():
        return jax.eval_shape(lambda agents: jax.vmap(fns.report, in_axes=(0, None))(agents, 0),
                              jax.eval_shape(init, jax.random.PRNGKey(0)).agents)

    def zero_metrics():
        return jax.tree.map(lambda s: jnp.zeros((local, *s.shape), s.dtype), metric_shapes())

    def run_chunk(state: LoopState, n_periods, learn_after):
        output = ChunkOutput(zero_metrics(), jnp.zeros((), jnp.int32),
                             jnp.zeros((action_log_length, local * slot_envs), action_dtype),
                             empty_episode_log(local, the_plan.episode_log_capacity))
        end_iteration = state.iteration + n_periods * the_plan.iters_per_period
        pending = jnp.zeros(local_axis, jnp.int32)
        state = state._replace(agents=chunk_fns.carried(state.agents))
        if overlap:  # open the chunk with its first step in flight
            pending = choose(state.agents, state.obs, state.keys, state.iteration)
            state = state._replace(env_state=jax.lax.cond(n_periods > 0, send, lambda e, _: e, state.env_state,
                                                          pending))
        # A period learns when it ends past learn_after: on CPU a branch in every period, elsewhere the periods
        # before that (at the start of a run) in a loop of their own (see `one_loop`).
        learn_after = jnp.asarray(learn_after, jnp.int32)
        acting_only = jnp.clip((learn_after - state.iteration * num_envs) // the_plan.steps_per_period, 0, n_periods)
        carry = (state, output, state.iteration, learn_after, pending, end_iteration)
        if one_loop:
            state, output, _, _, _, _ = jax.lax.fori_loop(0, n_periods, period(learns=acting_only), carry)
        else:
            carry = jax.lax.fori_loop(0, acting_only, period(learns=False), carry)
            state, output, _, _, _, _ = jax.lax.fori_loop(acting_only, n_periods, period(learns=True), carry)
        agents = chunk_fns.stacked(state.agents)
        policies = fns.policy(agents)
        output = output._replace(
            report=jax.vmap(fns.report, in_axes=(0, None))(agents, state.iteration * num_envs),
            params_finite=jax.vmap(all_finite)(policies),
            # a data-parallel agent's shares are on different devices, one of each agent on every device
            replicas_agree=all_true([jax.lax.pmax(x, DEVICE_AXIS) == jax.lax.pmin(x, DEVICE_AXIS)
                                     for x in jax.tree.leaves(policies)]) if shards > 1 else jnp.asarray(True),
            stats=state.stats)
        return state._replace(agents=agents), output

    if mesh is not None:
        from jax.sharding import PartitionSpec

        state_specs = loop_specs(jax.eval_shape(init, jax.random.PRNGKey(0)))
        per_agent = replicated if shards > 1 else (lambda _: PartitionSpec(DEVICE_AXIS))
        output_specs = ChunkOutput(jax.tree.map(per_agent, metric_shapes()), PartitionSpec(),
                                   PartitionSpec(None, DEVICE_AXIS), jax.tree.map(per_agent, empty_episode_log(1, 1)),
                                   jax.tree.map(per_agent, report_shapes()), per_agent(None), PartitionSpec(),
                                   state_specs.stats)
        # the iteration counter and the count of learning periods are computed alike on every device
        run_chunk = jax.shard_map(run_chunk, mesh=mesh, in_specs=(state_specs, PartitionSpec(), PartitionSpec()),
                                  out_specs=(state_specs, output_specs), check_vma=False)

    def cut_episodes(state: LoopState) -> LoopState:
        """Cut every environment's episode where it stands, before the loop goes on with a freshly reset pool:
        the agents observe the current observations as a step that is not a transition (as EnvPool's auto-reset
        step), so the last stored step gets its next observation and nothing joins it to the new episodes
        (no transition, frame stack or n-step sequence crosses the cut); the cut episodes are not reported."""
        zeros = jnp.zeros(slot_axis, bool)
        step = Step(state.obs, jnp.zeros(slot_axis, jnp.int32), jnp.zeros(slot_axis, jnp.float32), zeros, zeros,
                    state.obs, zeros)
        agents = observe_all(state.agents, step, state.iteration * num_envs, jnp.asarray(False))
        stats = state.stats._replace(running_return=jnp.zeros_like(state.stats.running_return),
                                     running_length=jnp.zeros_like(state.stats.running_length))
        return state._replace(agents=agents, stats=stats, done=zeros)

    def whole_agents(agent_states):
        return jax.tree.map(lambda x: x[:num_agents], agent_states) if shards > 1 else agent_states

    return Rollout(fns, env, the_plan, num_agents, init, start, prepare_start, run_chunk, jax.jit(cut_episodes),
                   action_log_length, action_dtype, (env_state0, obs0), tuple(agents.seed_indices), devices, place,
                   whole_agents)


def replicated(_):
    """The PartitionSpec of an array every device holds whole."""
    from jax.sharding import PartitionSpec

    return PartitionSpec()
