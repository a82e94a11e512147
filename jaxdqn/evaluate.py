"""Evaluation of trained parameters on a fresh pool, optionally recording one episode as video.

Runs on the host after training: one pool of A x episodes environments (seeded from the evaluation
stream, never seen in training), each playing exactly one episode with the policy of its agent, through
the agent's `evaluate_act` (greedy at epsilon 0) and the environment backend's jitted step.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdqn.agents import resolve_agent
from jaxdqn.compile_cache import compile_program, config_settings, enable_compile_cache, program_key
from jaxdqn.envs import EVAL_STREAM, backend_name, env_seeds, env_spec, make_env
from jaxdqn.files import check_output_path

VIDEO_EXTENSIONS = (".mp4", ".gif")
"""Video formats `evaluate_policy` writes, chosen by the file's extension."""

DEFAULT_VIDEO_FPS = 30
"""Frames per second of a video of an environment whose own rate is unknown (one frame per step)."""
EVAL_STEPS_PER_CALL = 1_000
"""Steps a JAX environment's evaluation plays in one compiled call (`stop` is asked between calls)."""


class EvaluationError(ValueError):
    """An evaluation request that cannot be carried out; the message is one line."""


class EvalResult(NamedTuple):
    """Returns and lengths of every evaluation episode, shape (S, episodes); frames written to the video."""

    returns: np.ndarray
    lengths: np.ndarray
    video_frames: int | None
    video_fps: float | None
    complete: bool = True
    """False when `stop` ended the evaluation before every episode finished (the returns are then partial)."""


def check_video_path(path: str | os.PathLike) -> Path:
    """Return `path` as a Path if a video can be written there, else raise EvaluationError (one line)."""
    return check_output_path(path, "--video", VIDEO_EXTENSIONS, EvaluationError)


class _VideoWriter:
    """Streams RGB frames to an mp4 (ffmpeg, bundled by imageio-ffmpeg) or a looping gif."""

    def __init__(self, path: Path, fps: int):
        import imageio.v2 as imageio

        if path.suffix.lower() == ".mp4":
            # macro_block_size=2: pad to even sizes (yuv420p needs them) rather than resize to multiples of 16.
            self._writer = imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                              macro_block_size=2, ffmpeg_log_level="error")
        else:
            # Pillow merges identical consecutive frames into one longer frame, so a gif may hold fewer.
            self._writer = imageio.get_writer(path, format="GIF", mode="I", duration=1000 / fps, loop=0)
        self.frames = 0

    def append(self, frame: np.ndarray) -> None:
        with warnings.catch_warnings():
            # The first frame starts ffmpeg; JAX warns on any fork, but the subprocess execs at once (safe).
            warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
            self._writer.append_data(np.asarray(frame, np.uint8))
        self.frames += 1

    def close(self, quietly: bool = False) -> None:
        """Finish the file (once; later calls do nothing); `quietly` ignores errors, after a failed write."""
        writer, self._writer = self._writer, None
        try:
            if writer is not None:
                writer.close()
        except Exception:
            if not quietly:
                raise


def evaluate_policy(cfg, params, episodes: int, seed: int | None = None,
                    video_path: str | os.PathLike | None = None, stop: Callable[[], bool] | None = None,
                    seed_indices=None) -> EvalResult:
    """Play `episodes` episodes per agent with the evaluation policy of `params` (leading agent axis) at
    `cfg.loop.eval_epsilon` (0: greedy).

    Episodes are whole games (Atari: all lives, unclipped rewards). The pool's environments are seeded from
    (`seed`, default the run's seed; the evaluation stream; agent; episode). With `video_path` (.mp4 or .gif),
    the first episode of agent 0 is recorded from the environment's own render (EnvPool's raw frame, e.g. the
    full-colour Atari screen) at the environment's own rate: one frame after reset plus one per step, so an
    mp4 has length + 1 frames
    (a gif can have fewer: identical consecutive frames are merged, keeping the timing). An environment
    that cannot render raises EvaluationError before any file is written. `stop() -> True`, asked after every
    step (with a JAX environment, every `EVAL_STEPS_PER_CALL` steps: they run as one compiled loop), ends the
    evaluation early (`complete` False). `seed_indices` gives each agent's seed index (a sweep's
    agents: see `AgentAxis`); default 0, 1, ... in order.
    """
    if episodes < 1:
        raise EvaluationError(f"episodes: must be an integer > 0 (got {episodes!r})")
    video = check_video_path(video_path) if video_path is not None else None
    enable_compile_cache()
    seed = cfg.loop.seed if seed is None else seed
    spec = env_spec(cfg.env.env_id)
    fns = resolve_agent(cfg.agent).build(cfg, spec)
    num_agents = jax.tree.leaves(params)[0].shape[0]
    seed_indices = range(num_agents) if seed_indices is None else seed_indices
    env = make_env(cfg.env.env_id, env_seeds(seed, seed_indices, episodes, EVAL_STREAM), cfg.env.env_threads,
                   render=video is not None, repeat_action_probability=cfg.env.repeat_action_probability)
    pool_size = num_agents * episodes
    act = jax.vmap(fns.evaluate_act, in_axes=(0, 0, 0, None))
    # a JAX environment plays many steps per call; others one, so that each step can be rendered or EnvPool's
    # pool (whose programs are compiled in every process) is stepped by the smallest program
    steps_per_call = EVAL_STEPS_PER_CALL if backend_name(cfg.env.env_id) == "jax" and video is None else 1

    def play_step(carry):
        agent_params, env_state, obs, key, returns, lengths, finished, steps = carry
        key, act_key = jax.random.split(key)
        actions = act(agent_params, obs.reshape(num_agents, episodes, *spec.obs_shape),
                      jax.random.split(act_key, num_agents), cfg.loop.eval_epsilon)
        env_state, out = env.step(env_state, actions.reshape(pool_size))
        return (agent_params, env_state, out.obs, key, returns + jnp.where(finished, 0.0, out.game_reward),
                lengths + ~finished, finished | out.game_over, steps + 1)

    def playing(carry):
        return (carry[-1] < steps_per_call) & ~carry[6].all()

    # The parameters are an argument, not constants of the program: the same program for every run of these
    # shapes, which the program cache then serves (and a large network is not folded into the program).
    def play(agent_params, *state):
        """`steps_per_call` steps of the pool (fewer once every episode is over)."""
        carry = (agent_params, *state, jnp.int32(0))
        if steps_per_call == 1:
            return play_step(carry)[1:-1]
        return jax.lax.while_loop(playing, play_step, carry)[1:-1]

    writer = None
    try:
        env_state, obs = env.reset()
        if video is not None:
            try:
                first_frame = env.render()
            except (RuntimeError, NotImplementedError, ImportError) as error:  # before any file is written
                raise EvaluationError(f"--video: {cfg.env.env_id} cannot be rendered ({error})") from None
            fps = env.render_fps or DEFAULT_VIDEO_FPS
            writer = _VideoWriter(video, fps)
            writer.append(first_frame)
        state = (env_state, np.asarray(obs), jax.random.PRNGKey(seed), np.zeros(pool_size, np.float32),
                 np.zeros(pool_size, np.int32), np.zeros(pool_size, bool))  # numpy: no program compiled for them
        finished = np.zeros(pool_size, bool)
        settings = config_settings((cfg,))
        args = (params, *state)
        play = compile_program(play, args, settings and program_key("play", {"configs": settings,
                                                                             "steps_per_call": steps_per_call}, args))
        while not finished.all():
            if stop is not None and stop():
                break
            recording = writer is not None and not finished[0]
            state = play(params, *state)
            if recording:  # EnvPool resets on the step after an episode ends, so this still shows its last state.
                writer.append(env.render())
            finished = np.asarray(state[5])
        returns, lengths = np.asarray(state[3], np.float64), np.asarray(state[4], np.int64)
        if writer is not None:
            writer.close()
    except OSError as error:  # the video could not be written (a full disk, a file-size limit)
        if video is None:
            raise
        if writer is not None:
            writer.close(quietly=True)
        video.unlink(missing_ok=True)
        raise EvaluationError(f"--video: could not write {video} ({error.strerror or error})") from None
    finally:
        if writer is not None:
            writer.close(quietly=True)
        env.close()
    return EvalResult(returns.reshape(num_agents, episodes), lengths.reshape(num_agents, episodes),
                      *((writer.frames, fps) if writer is not None else (None, None)), bool(finished.all()))


def format_returns(result: EvalResult) -> list[str]:
    """Lines of mean ± std return (and mean length) per seed and over all seeds, for the terminal."""
    lines = []
    for seed_index, (seed_returns, seed_lengths) in enumerate(zip(result.returns, result.lengths)):
        lines.append(f"seed {seed_index}: return {seed_returns.mean():.2f} ± {seed_returns.std():.2f} "
                     f"over {seed_returns.size} episodes (mean length {seed_lengths.mean():.1f})")
    lines.append(f"all seeds: return {result.returns.mean():.2f} ± {result.returns.std():.2f} "
                 f"over {result.returns.size} episodes")
    return lines
