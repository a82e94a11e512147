"""Greedy evaluation of trained parameters on a fresh EnvPool, optionally recording one episode as video.

Runs on the host between (or after) compiled training chunks: one pool of S x episodes environments,
each playing exactly one episode, with the policy of its seed.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdqn.envs import env_info, make_pool, render_first_env
from jaxdqn.exploration import epsilon_greedy
from jaxdqn.files import check_output_path
from jaxdqn.networks import make_network

VIDEO_EXTENSIONS = (".mp4", ".gif")
"""Video formats `evaluate_policy` writes, chosen by the file's extension."""

VIDEO_FPS = 30
"""Frames per second of recorded videos (one frame per environment step)."""


class EvaluationError(ValueError):
    """An evaluation request that cannot be carried out; the message is one line."""


class EvalResult(NamedTuple):
    """Returns and lengths of every evaluation episode, shape (S, episodes); frames written to the video."""

    returns: np.ndarray
    lengths: np.ndarray
    video_frames: int | None


def make_greedy_policy(cfg, network) -> Callable:
    """Jitted `policy(params, obs, key) -> actions` for params and obs with a leading seed axis.

    Acts epsilon-greedily with `cfg.eval_epsilon` (0 is purely greedy).
    """

    def policy(params, obs, key):
        q_values = jax.vmap(network.apply)(params, obs)
        keys = jax.random.split(key, obs.shape[0])
        return jax.vmap(epsilon_greedy, in_axes=(0, 0, None))(keys, q_values, cfg.eval_epsilon)

    return jax.jit(policy)


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

    def close(self) -> None:
        self._writer.close()


def evaluate_policy(cfg, params, episodes: int, seed: int, video_path: str | os.PathLike | None = None
                    ) -> EvalResult:
    """Play `episodes` episodes per seed with the greedy policy of `params` (leading seed axis).

    Episodes are whole games (Atari: all lives, unclipped rewards). Environment i of the evaluation
    pool is seeded `seed + i`. With `video_path` (.mp4 or .gif), the
    first episode of seed 0 is recorded from the environment's own render (EnvPool's raw frame, e.g. the
    full-colour Atari screen): one frame after reset plus one per step, so an mp4 has length + 1 frames
    (a gif can have fewer: identical consecutive frames are merged, keeping the timing). An environment
    that cannot render raises EvaluationError before any file is written.
    """
    if episodes < 1:
        raise EvaluationError(f"episodes: must be an integer > 0 (got {episodes!r})")
    video = check_video_path(video_path) if video_path is not None else None
    info = env_info(cfg.env_id)
    num_seeds = jax.tree.leaves(params)[0].shape[0]
    pool_size = num_seeds * episodes
    env, obs = make_pool(cfg.env_id, pool_size, seed, cfg.env_threads,
                         render_mode="rgb_array" if video is not None else None)
    policy = make_greedy_policy(cfg, make_network(cfg, info.num_actions))
    key = jax.random.PRNGKey(seed)
    returns = np.zeros(pool_size, np.float64)
    lengths = np.zeros(pool_size, np.int64)
    finished = np.zeros(pool_size, bool)
    writer = None
    try:
        if video is not None:
            try:
                first_frame = render_first_env(env)
            except (RuntimeError, NotImplementedError, ImportError) as error:  # before any file is written
                raise EvaluationError(f"--video: {cfg.env_id} cannot be rendered ({error})") from None
            writer = _VideoWriter(video, VIDEO_FPS)
            writer.append(first_frame)
        while not finished.all():
            key, act_key = jax.random.split(key)
            actions = policy(params, jnp.asarray(obs).reshape(num_seeds, episodes, *info.obs_shape), act_key)
            obs, reward, terminated, truncated, _ = env.step(np.asarray(actions).reshape(-1))
            returns += np.where(finished, 0.0, reward)
            lengths += ~finished
            if writer is not None and not finished[0]:
                # EnvPool resets on the step after an episode ends, so this still shows its last state.
                writer.append(render_first_env(env))
            finished |= terminated | truncated
    finally:
        if writer is not None:
            writer.close()
        env.close()
    return EvalResult(returns.reshape(num_seeds, episodes), lengths.reshape(num_seeds, episodes),
                      writer.frames if writer is not None else None)


def format_returns(result: EvalResult) -> list[str]:
    """Lines of mean ± std return (and mean length) per seed and over all seeds, for the terminal."""
    lines = []
    for seed_index, (seed_returns, seed_lengths) in enumerate(zip(result.returns, result.lengths)):
        lines.append(f"seed {seed_index}: return {seed_returns.mean():.2f} ± {seed_returns.std():.2f} "
                     f"over {seed_returns.size} episodes (mean length {seed_lengths.mean():.1f})")
    lines.append(f"all seeds: return {result.returns.mean():.2f} ± {result.returns.std():.2f} "
                 f"over {result.returns.size} episodes")
    return lines
