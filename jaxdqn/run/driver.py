"""The driver: builds a run (agent, environment backend, compiled loop) and orchestrates it chunk by chunk:
recorder, checkpoints, signals, the final evaluation and summary.json."""

from __future__ import annotations

import concurrent.futures
import functools
import json
import time
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdqn.agents import resolve_agent
from jaxdqn.config.schema import plan as plan_of
from jaxdqn.config.schema import to_dict, with_derived
from jaxdqn.compile_cache import compile_program, config_settings, enable_compile_cache, program_key
from jaxdqn.config.validate import agent_devices, validate
from jaxdqn.core import threefry
from jaxdqn.envs import GYMNASIUM_NOTE, backend_name, env_seeds, env_spec, make_env, training_stream
from jaxdqn.evaluate import evaluate_policy
from jaxdqn.loop.episodes import recent_means
from jaxdqn.loop.rollout import LoopState, Rollout, make_rollout, pool_order, stacked_axis
from jaxdqn.run.checkpoint import Checkpoint, CheckpointSaveError, CheckpointWriter
from jaxdqn.run.distributed import any_process, is_main, to_host
from jaxdqn.run.recorder import Recorder, remove_run
from jaxdqn.run.resume import pool_start_step, resume_state
from jaxdqn.run.signals import StopSignals

NON_FINITE_EXIT_CODE = 3
SAVE_FAILED_EXIT_CODE = 4
REPLICAS_DIFFER_EXIT_CODE = 5


CPU_CHUNK_OPTIONS = {"xla_cpu_copy_insertion_use_region_analysis": True}
"""XLA's options for the training loop's chunk on CPU: its copy insertion with region analysis (off by default),
which finds that the loop updates its replay, parameters and Adam's moments in place where the default analysis
copied them at each step: 18 copies left in the chunk of one agent at one environment, against 47."""


def chunk_compiler_options() -> dict | None:
    """The XLA options the training loop's chunk is compiled with on the default backend (`CPU_CHUNK_OPTIONS`)."""
    return CPU_CHUNK_OPTIONS if jax.default_backend() == "cpu" else None


class TrainingStopped(Exception):
    """Training ended before its budget: a signal (after saving a checkpoint), non-finite values, or a
    data-parallel agent whose shares no longer hold the same parameters.

    `exit_code` is what the `jaxdqn` command exits with (128 + signal number, 3 for non-finite values, 4 for a
    checkpoint that could not be written, 5 for shares that differ).
    """

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def build_rollout(cfg, pool_start_step: int = 0, configs=None, one_loop: bool | None = None) -> Rollout:
    """The agent's functions, the environment pool (agent-major, hashed per-environment seeds of the training
    stream of a pool started at `pool_start_step`) and the loop.

    `configs` (a sweep group: configs that differ from `cfg` only in their agent's run-time values) trains
    `cfg.loop.num_seeds` seeds of each of them as one program; None trains `cfg` alone. `one_loop`: see
    `make_rollout`."""
    spec = env_spec(cfg.env.env_id)
    agent = resolve_agent(cfg.agent)
    fns = agent.build(cfg, spec)
    hypers = [fns.hyperparameters if c is cfg else agent.build(c, spec).hyperparameters for c in configs or [cfg]]
    agents = stacked_axis(hypers, cfg.loop.num_seeds)
    seeds = pool_order(env_seeds(cfg.loop.seed, agents.seed_indices, cfg.env.num_envs,
                                 training_stream(pool_start_step)), len(agents.seed_indices), cfg.loop.data_parallel)
    env = make_env(cfg.env.env_id, seeds, cfg.env.env_threads, cfg.env.episodic_life, cfg.env.reward_clip,
                   repeat_action_probability=cfg.env.repeat_action_probability,
                   devices=agent_devices(cfg, len(agents.seed_indices)))
    return make_rollout(cfg, fns, env, agents, one_loop)


class Progress:
    """Host-side counters of a run (saved in checkpoints), the log of actions sent to the pool, and what has
    been announced."""

    def __init__(self, resume_from: Checkpoint | None, learning_starts: int, plan, exact: bool = False):
        fresh = resume_from is None
        self.plan = plan
        self.periods_done = 0 if fresh else resume_from.periods_done
        self.updates = 0 if fresh else resume_from.updates
        self.learn_after = learning_starts if fresh else resume_from.learn_after
        self.pool_start_step = 0 if fresh else pool_start_step(resume_from, exact)
        self.action_log = [resume_from.action_log] if not fresh and exact else []  # since the pool started
        if not fresh and not resume_from.has_replay:  # refill the replay before learning again
            self.learn_after = resume_from.env_steps + learning_starts
        self.solved_reported: set = set()
        self.updates_per_learn = plan.updates_per_period  # the agent may say otherwise (`AgentFns.updates_per_learn`)

    @property
    def env_steps(self) -> int:
        """Environment steps per agent done so far."""
        return self.periods_done * self.plan.steps_per_period

    def advance(self, n_periods: int, output) -> None:
        """Count a chunk of `n_periods` periods and keep its actions."""
        self.periods_done += n_periods
        self.updates += int(output.learn_calls) * self.updates_per_learn
        self.action_log.append(np.asarray(output.actions[:n_periods * self.plan.iters_per_period]))

    def counters(self) -> dict:
        """What a checkpoint's meta.json keeps (the action log is joined into one array first)."""
        self.action_log = [np.concatenate(self.action_log)]
        return {"env_steps": self.env_steps, "periods_done": self.periods_done, "updates": self.updates,
                "learn_after": self.learn_after, "pool_start_step": self.pool_start_step,
                "processes": jax.process_count()}

    def check_finite(self, output, previous_steps: int, writer) -> None:
        """Raise TrainingStopped if the chunk's learn metrics or the parameters are not finite, or if the shares of
        a data-parallel agent hold different parameters."""
        finite = (all(np.isfinite(np.asarray(v)).all() for v in output.metric_sums.values())
                  and bool(np.all(output.params_finite)))
        if finite and bool(output.replicas_agree):
            return
        last = writer.wait() if writer is not None else None
        kept = f"the last good checkpoint {last} is kept" if last else "no checkpoint was saved"
        what = ("non-finite loss or parameters" if not finite
                else "the devices' shares of a data-parallel agent hold different parameters")
        raise TrainingStopped(f"{what} at env step {self.env_steps} (in the chunk of steps {previous_steps + 1}-"
                              f"{self.env_steps}); stopped without saving this state; {kept}",
                              NON_FINITE_EXIT_CODE if not finite else REPLICAS_DIFFER_EXIT_CODE)

    def newly_solved(self, solved_step: np.ndarray) -> list[int]:
        """Agents whose solved step is set and was not announced yet."""
        new = [int(a) for a in np.flatnonzero(solved_step >= 0) if a not in self.solved_reported]
        self.solved_reported.update(new)
        return new


def chunk_record(rollout: Rollout, output, env_steps: int, updates: int, sps: float, wall: float) -> dict:
    """The metrics.jsonl record of one chunk: learn metrics averaged per agent, episode means, agent report.
    `output` is the chunk's, gathered (`to_host`)."""
    calls = int(output.learn_calls)
    record = {"env_steps": env_steps, "updates": updates, "wall_seconds": wall, "sps": sps}
    record.update({f"{k}": float(np.mean(v)) for k, v in output.report.items()})
    for name, sums in output.metric_sums.items():
        record[name] = [float(v) / calls if calls else None for v in np.asarray(sums)]
    record.setdefault("loss", [None] * rollout.num_agents)
    record.setdefault("q_mean", [None] * rollout.num_agents)
    stats = output.stats
    record["episodes"] = np.asarray(stats.episodes).tolist()
    record["return_mean_100"] = recent_means(stats.recent_returns, stats.episodes)
    record["length_mean_100"] = recent_means(stats.recent_lengths, stats.episodes)
    return record


def host_view(state: LoopState) -> LoopState:
    """`state` with the episode statistics the host reads gathered from every process (`to_host`; a collective
    with several processes); the rest stays where it is."""
    return state._replace(stats=to_host(state.stats))


class Group(NamedTuple):
    """Configurations that `run_training` trains together as one compiled program (a sweep group): they differ
    from the run's config only in their agent's run-time values (`Agent.run_time_fields`)."""

    configs: tuple
    """Each configuration; `cfg.loop.num_seeds` agents train each, configuration-major."""
    labels: tuple
    """One name per configuration, for messages, TensorBoard (its run: RUN/tensorboard/LABEL) and W&B (its run is
    named GROUP_DIR/LABEL)."""
    resume_command: str
    """What a stopped group tells the user to run."""

    def agent_name(self, agent: int, num_seeds: int) -> str:
        """How messages name agent `agent`."""
        return f"{self.labels[agent // num_seeds]} seed {agent % num_seeds}"

    def configurations(self, num_seeds: int) -> list:
        """(label, agent indices, Config) of each configuration."""
        return [(label, list(range(i * num_seeds, (i + 1) * num_seeds)), config)
                for i, (label, config) in enumerate(zip(self.labels, self.configs))]


def has_noisy_layers(cfg) -> bool:
    """Whether `cfg`'s network has noisy layers (whose noise is drawn in every forward pass of an update)."""
    return bool(getattr(getattr(cfg.settings, "network", None), "noisy", False))


def run_program_key(cfg, group: Group | None, rollout: Rollout, progress: Progress, name: str, args) -> str | None:
    """The key of the run's program `name` (its loop's start or chunk) for `args` in the program cache
    (`compile_program`), or None where the program depends on more than jaxdqn's code and the configs can say
    (see `config_settings`). A run over several devices of one process is keyed by its device count too."""
    settings = config_settings(group.configs if group is not None else (cfg,))
    if settings is None:
        return None
    return program_key(name, {"configs": settings, "pool_start_step": progress.pool_start_step,
                              "devices": rollout.devices}, args)


def run_training(cfg, out_dir=None, log: Callable[[str], None] = print, resume_from: Checkpoint | None = None,
                 progress_bar: bool = False, exact_resume: bool = False, overwrite: bool = False,
                 group: Group | None = None) -> dict:
    """Train `cfg` (validated here) to its step budget; write config, metrics, episodes, TensorBoard events,
    checkpoints and summary to `out_dir` (None: write nothing), and log to W&B when `cfg.tracking.track` is set.

    `resume_from` (see `checkpoint.load_latest`) continues the run in `out_dir`: with a fresh pool from the
    checkpoint on, or, with `exact_resume`, by replaying the pool's logged actions (see resume.py).
    One process on one device hands each chunk the state before it reads the chunk before, unless a checkpoint
    is due after that one or the run stops when solved. SIGINT/SIGTERM stop after the chunks already handed the
    state with a checkpoint (saved in the background, see
    `CheckpointWriter`); they and non-finite values raise `TrainingStopped`. Nothing is
    written before validation (and the checkpoint's checks) pass, the pool is built and the chunk compiled.
    `overwrite` removes a run already in `out_dir` at that point. `group` trains several configurations at once
    (a sweep group; `cfg` is its first). Returns the summary dict.
    """
    cfg = with_derived(validate(cfg))
    enable_compile_cache()
    writes = out_dir is not None  # known to every process; with several, process 0 alone writes and prints
    if not is_main():
        out_dir, log, progress_bar = None, lambda line: None, False
    if backend_name(cfg.env.env_id) == "gymnasium":
        log(GYMNASIUM_NOTE.format(env_id=cfg.env.env_id))
    out = Path(out_dir) if out_dir is not None else None
    start = time.perf_counter()
    progress = Progress(resume_from, cfg.loop.learning_starts, plan_of(cfg), exact_resume)
    rollout, key, recorder, writer = (build_rollout(cfg, progress.pool_start_step, group and group.configs),
                                      jax.random.PRNGKey(cfg.loop.seed), None, None)
    resume_command = group.resume_command if group is not None else f"jaxdqn train --resume {out}"
    num_seeds = cfg.loop.num_seeds
    agent_name = group.agent_name if group is not None else lambda agent, _: f"seed {agent}"
    plan = rollout.plan
    if cfg.loop.data_parallel > 1:
        log(f"{rollout.num_agents} agent(s), each split over {rollout.devices} devices (data parallel: "
            f"{cfg.env.num_envs // rollout.devices} of its {cfg.env.num_envs} environments on each)")
    elif rollout.devices > 1:
        log(f"{rollout.num_agents} agents sharded over {rollout.devices} devices "
            f"({rollout.num_agents // rollout.devices} on each)")
    progress.updates_per_learn = rollout.fns.updates_per_learn or plan.updates_per_period
    in_flight = []  # (periods, output) of the chunks handed to the device and not read yet
    try:
        key_of = functools.partial(run_program_key, cfg, group, rollout, progress)
        started = None
        # one device: the start compiles and runs on a thread while the chunk is traced for its outputs
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxdqn-start") as starting:
            if resume_from is not None:
                state = rollout.place(resume_state(rollout, resume_from, key, exact_resume))
            elif rollout.devices > 1:
                state = rollout.place(rollout.start(key, key_of))
            else:
                prepared, start_args = rollout.prepare_start(key, key_of)
                started = starting.submit(lambda: prepared.compile()(*start_args))
                state = prepared.out_info
            chunk_args = (state, jnp.int32(plan.log_periods), jnp.int32(progress.learn_after))
            # its random numbers are drawn at every step, unrolled but for noisy layers' (see jaxdqn.core.threefry)
            with threefry.unrolled(not any(has_noisy_layers(c) for c in (group.configs if group else (cfg,)))):
                chunk = compile_program(rollout.run_chunk, chunk_args, key_of("chunk", chunk_args),
                                        donate_argnums=(0,), compiler_options=chunk_compiler_options())
            if started is not None:
                state = started.result()
        # from `start`: building the pool compiles (or loads) a program too, a JAX environment's reset, and the
        # backend starts there
        compile_seconds = time.perf_counter() - start
        start_steps = progress.env_steps
        if out is not None:  # a resumed run's config.json gets its raised total_steps
            if overwrite and resume_from is None:
                remove_run(out)
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
        if out is not None and resume_from is not None:
            log(f"resumed from {resume_from.path} at step {start_steps} ("
                + ("exact: the pool's logged actions replayed)" if exact_resume
                   else "a fresh pool of environments from here; the running episodes were cut)"))
            if not resume_from.has_replay:
                log(f"checkpoint holds no replay: refilling it, learning resumes after step {progress.learn_after}")
        recorder = Recorder(out, rollout.num_agents, plan.total_env_steps, start_steps, resume_from is not None, log,
                            progress_bar, cfg, group and group.configurations(num_seeds))
        writer = (CheckpointWriter(out, cfg, rollout.fns.optional_fields, resume_from and resume_from.path)
                  if out is not None else None)
        progress.newly_solved(np.asarray(host_view(state).stats.solved_step))  # announced before the checkpoint
        last_time = time.perf_counter()
        # The next chunk is handed the state before the host reads this chunk's output, so that the host's
        # records overlap the device's work; not where this chunk's state must stay readable (a checkpoint is due
        # after it, the run may stop when solved) nor over several devices or processes (whose collectives must
        # not queue up).
        look_ahead = rollout.devices == 1 and jax.process_count() == 1 and not cfg.loop.stop_when_solved
        interval = cfg.checkpoint.checkpoint_interval
        dispatched = progress.periods_done

        def dispatch():
            nonlocal state, dispatched
            n = min(plan.log_periods, plan.total_periods - dispatched)
            state, output = chunk(state, jnp.int32(n), jnp.int32(progress.learn_after))
            dispatched += n
            return n, output

        with StopSignals() as stop:
            if progress.periods_done < plan.total_periods:
                in_flight.append(dispatch())
            while in_flight:
                n, output = in_flight.pop()
                previous_steps = progress.env_steps
                env_steps = previous_steps + n * plan.steps_per_period
                due = interval > 0 and env_steps // interval > previous_steps // interval
                last = dispatched == plan.total_periods
                if look_ahead and not (due or last or stop.received):
                    in_flight.append(dispatch())
                # numpy from here on: np.all or np.mean of a jax.Array runs a jax op, queued behind the next chunk
                output = jax.device_get(to_host(output))
                progress.advance(n, output)
                progress.check_finite(output, previous_steps, writer)
                now = time.perf_counter()
                sps = (env_steps - previous_steps) * rollout.num_agents / max(now - last_time, 1e-9)
                last_time = now
                recorder.write(chunk_record(rollout, output, env_steps, progress.updates, sps, now - start),
                               output.finished)
                solved = np.asarray(output.stats.solved_step)
                for agent in progress.newly_solved(solved):
                    recorder.say(f"{agent_name(agent, num_seeds)}: solved at step {int(solved[agent])} "
                                 f"(100-episode mean >= {cfg.loop.solved_return})")
                if in_flight:  # `state` is the next chunk's
                    continue
                all_solved = cfg.loop.stop_when_solved and (solved >= 0).all()
                stopping = any_process(bool(stop.received))  # every process stops after the same chunk
                if writes and (due or stopping or all_solved or last):
                    counters = progress.counters()  # joins the action log into one array first
                    saved = to_host(state) if jax.process_count() > 1 else state  # process 0 writes every process's part
                    if writer is not None:
                        writer.save(saved, progress.action_log[0], counters)  # written in the background
                if stopping:
                    where = (f"saved a checkpoint at step {env_steps} ({writer.wait()}); resume with: {resume_command}"
                             if writer else f"stopped at step {env_steps} (no run directory)")
                    raise TrainingStopped(f"interrupted by {stop.name}: {where}", 128 + stop.number)
                if all_solved:
                    recorder.say(f"all seeds solved; stopping at step {env_steps}")
                    break
                if not last:
                    in_flight.append(dispatch())
            recorder.close()
            return finish(cfg, out, rollout, state, progress, resume_from, start_steps, time.perf_counter() - start,
                          compile_seconds, log, writer, stop)
    except CheckpointSaveError as error:
        raise TrainingStopped(f"{error}; resume with: {resume_command}", SAVE_FAILED_EXIT_CODE) from None
    finally:
        if recorder is not None:
            recorder.close(failed=True)  # does nothing when the run closed it after its last chunk
        if in_flight:  # a chunk still stepping the pool (the run stopped on the chunk before it)
            jax.block_until_ready(state)
        rollout.env.close()
        if writer is not None:
            writer.close()


def finish(cfg, out, rollout: Rollout, state: LoopState, progress: Progress, resume_from, start_steps: int,
           wall_seconds: float, compile_seconds: float, log, writer=None, stop: StopSignals | None = None) -> dict:
    """Evaluate the final policy (while the final checkpoint is written), write summary.json and print the
    closing line; return the summary. A signal during the evaluation ends it early: summary.json is written
    without it, then TrainingStopped."""
    env_steps = progress.env_steps
    state = host_view(state)
    policy = rollout.fns.policy(rollout.whole_agents(state.agents))
    if jax.process_count() > 1:  # process 0 evaluates every agent
        policy = to_host(policy)
    elif rollout.devices > 1:  # the evaluation pool runs on one device
        policy = jax.device_put(policy, jax.local_devices()[0])
    if not is_main():
        return {}
    evaluation = evaluate_policy(cfg, policy, cfg.loop.eval_episodes,
                                 stop=(lambda: bool(stop.received)) if stop is not None else None,
                                 seed_indices=rollout.seed_indices)
    final_checkpoint = writer.wait() if writer is not None else None
    eval_returns = evaluation.returns if evaluation.complete else None
    session_updates = progress.updates - (resume_from.updates if resume_from is not None else 0)
    summary = {
        "env_id": cfg.env.env_id, "num_seeds": cfg.loop.num_seeds, "num_agents": rollout.num_agents,
        "devices": rollout.devices, "data_parallel": cfg.loop.data_parallel,
        "num_envs": cfg.env.num_envs,
        "env_steps": env_steps, "updates": progress.updates, "wall_seconds": wall_seconds,
        "compile_seconds": compile_seconds,
        "sps": (env_steps - start_steps) * rollout.num_agents / wall_seconds,
        "updates_per_second": session_updates * rollout.num_agents / wall_seconds,
        "return_mean_100": recent_means(state.stats.recent_returns, state.stats.episodes),
        "solved_step": [int(s) if s >= 0 else None for s in np.asarray(state.stats.solved_step)],
        "eval_episodes": cfg.loop.eval_episodes, "eval_epsilon": cfg.loop.eval_epsilon,
        "eval_return_mean": eval_returns.mean(axis=1).tolist() if eval_returns is not None else None,
        "eval_return_std": eval_returns.std(axis=1).tolist() if eval_returns is not None else None,
    }
    if resume_from is not None:
        summary["resumed_from_step"] = resume_from.env_steps
    if out is not None:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if eval_returns is None:
        raise TrainingStopped(f"interrupted by {stop.name} during the final evaluation: the run is complete, its "
                              f"last checkpoint is {final_checkpoint}, and summary.json has no evaluation "
                              f"(jaxdqn evaluate {out} runs it)", 128 + stop.number)
    policy = "greedy" if cfg.loop.eval_epsilon == 0 else f"epsilon {cfg.loop.eval_epsilon}"
    unit = "seed" if rollout.num_agents == cfg.loop.num_seeds else "agent"
    agents = f"{rollout.num_agents} {unit}(s)"
    log(f"done: {env_steps} steps x {agents}, {progress.updates} updates, {wall_seconds:.1f} s "
        f"({compile_seconds:.1f} s compiling), {summary['sps']:.0f} SPS; {policy} eval return per {unit}: "
        + ", ".join(f"{r:.4g}" for r in summary["eval_return_mean"]))
    return summary
