"""Typed, frozen configuration, the named presets, and validation with clear errors.

Every field carries a docstring; the `jaxdqn train` command turns them into `--help`.
Step counts are environment steps *per seed* unless a field says otherwise.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Literal


INT32_MAX = 2**31 - 1
"""Step counters, seeds and EnvPool's environment seeds are int32 inside the compiled loop."""

EVAL_SEED_OFFSET = 1_000_003
"""The greedy evaluation after training uses environment seeds from cfg.seed + this, unseen in training."""

NATURE_CNN_MIN_SIZE = 36
"""The smallest image side the Nature CNN's three VALID convolutions (8/4, 4/2, 3/1) leave a pixel of."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what is allowed."""


@dataclass(frozen=True)
class Config:
    """Everything that defines a DQN (or tabular Q-learning) training run."""

    env_id: str = "CartPole-v1"
    """EnvPool task id (for example CartPole-v1, LunarLander-v3), or a Gymnasium id EnvPool lacks (slower path);
    its action space must be discrete."""
    agent: Literal["dqn", "tabular"] = "dqn"
    """dqn: a Q-network with replay, for Box observations; tabular: a Q-table, for Discrete observations
    (FrozenLake-v1, Taxi-v3, CliffWalking-v0), updated online from every real transition."""
    seed: int = 0
    """Base random seed; seed k of a multi-seed run derives its keys from (seed, k)."""
    num_seeds: int = 1
    """Independent agents trained at once, each with its own initialisation, exploration and replay."""
    num_envs: int = 1
    """Environments stepped in parallel for each seed."""
    env_threads: int = 0
    """EnvPool worker threads for the whole pool; 0 lets jaxdqn choose (min of pool size and CPU count)."""
    episodic_life: bool = True
    """Atari only: during training an episode ends (for the TD target) at each lost life; reported returns,
    the solved criterion and evaluation always use whole games."""
    reward_clip: bool = True
    """Atari only: train on rewards clipped to their sign; reported returns and evaluation are unclipped."""
    total_steps: int = 500_000
    """Environment steps per seed (summed over that seed's environments); rounded up to a whole training period."""
    learning_starts: int = 10_000
    """Environment steps per seed collected before the first gradient update."""
    train_frequency: int = 10
    """Environment steps per seed between training phases (must divide num_envs or be a multiple of it)."""
    gradient_steps: int = 1
    """Gradient updates in each training phase."""
    buffer_size: int = 10_000
    """Replay capacity in transitions, per seed."""
    batch_size: int = 128
    """Transitions sampled for each gradient update."""
    gamma: float = 0.99
    """Discount factor, in (0, 1]."""
    learning_rate: float = 2.5e-4
    """Adam step size, > 0."""
    tabular_alpha: float = 0.1
    """Tabular agent: blending rate, Q[s,a] <- (1 - alpha) Q[s,a] + alpha (r + gamma max Q[s']), in (0, 1]."""
    tabular_alpha_end: float | None = None
    """Tabular agent: if set, alpha goes linearly from tabular_alpha to this value over total_steps; None keeps it
    constant. A decaying alpha lets the table converge on stochastic tasks, so the greedy policy stops flickering."""
    adam_eps: float = 1e-8
    """Adam epsilon, > 0."""
    max_grad_norm: float = 0.0
    """Clip gradients to this global norm; 0 disables."""
    clip_grad_value: float = 0.0
    """Clip each gradient element to [-v, v]; 0 disables."""
    target_update_period: int = 50
    """Gradient updates between target-network updates."""
    target_tau: float = 1.0
    """Target update rate: 1 copies the online network (hard update), below 1 is a Polyak average."""
    double_q: bool = False
    """Use the double Q-learning target (online network picks the action, target network values it)."""
    prioritized: bool = False
    """Use proportional prioritized replay (sum tree) instead of uniform replay."""
    priority_alpha: float = 0.6
    """Prioritization exponent: P(i) is proportional to (|td| + priority_eps)^alpha; 0 is uniform."""
    priority_beta0: float = 0.4
    """Initial importance-weight exponent, annealed linearly to 1 over training."""
    priority_eps: float = 1e-6
    """Added to |td| so that no transition gets zero priority, > 0."""
    dueling: bool = False
    """Use a dueling head (separate value and advantage streams)."""
    dueling_aggregation: Literal["mean", "max"] = "mean"
    """How the dueling head centres advantages: subtract their mean or their max."""
    dueling_hidden: int = 0
    """Width of a hidden layer in each dueling stream; 0 for none."""
    torso: Literal["mlp", "nature_cnn"] = "mlp"
    """Feature extractor: an MLP, or the Nature DQN CNN for uint8 image stacks."""
    hidden_sizes: tuple[int, ...] = (120, 84)
    """Hidden layer widths of the MLP torso, or of the dense layers after the Nature CNN (may be empty there)."""
    loss: Literal["l2", "huber"] = "l2"
    """TD loss: l2 is 0.5 * td^2 (mean squared error up to a factor), huber is smooth-L1."""
    huber_delta: float = 1.0
    """Huber loss threshold, > 0."""
    epsilon_schedule: Literal["constant", "linear", "exponential", "piecewise"] = "linear"
    """Exploration schedule over environment steps."""
    epsilon_start: float = 1.0
    """Initial epsilon (constant: the value used throughout), in [0, 1]."""
    epsilon_end: float = 0.05
    """Final epsilon, in [0, 1]."""
    epsilon_decay_steps: int = 250_000
    """Environment steps to go from epsilon_start to epsilon_end (linear or geometric)."""
    epsilon_boundaries: tuple[int, ...] = ()
    """Piecewise schedule: step numbers (increasing) at which epsilon_values hold."""
    epsilon_values: tuple[float, ...] = ()
    """Piecewise schedule: epsilon at each boundary, linear in between, constant after the last."""
    eval_episodes: int = 10
    """Greedy evaluation episodes per seed at the end of training."""
    eval_epsilon: float = 0.0
    """Epsilon used during evaluation."""
    log_interval: int = 10_000
    """Environment steps per seed between log points (one compiled chunk each)."""
    solved_return: float | None = None
    """Mean return over the last 100 training episodes that counts as solving the task; None for none."""
    stop_when_solved: bool = False
    """End training the first time every seed has reached solved_return."""

    # Checkpoints (see jaxdqn/checkpoint.py); they never change what is trained.
    checkpoint_interval: int = 100_000
    """Environment steps per seed between checkpoints, rounded up to whole log chunks; 0 saves only at the end."""
    keep_checkpoints: int = 3
    """Complete checkpoints kept in the run directory (older ones are deleted), >= 1."""
    checkpoint_replay: bool = True
    """Save the replay (and priorities) in checkpoints; False: small files, resume refills it first (not bit-exact)."""


PRESETS: dict[str, Config] = {
    "cartpole": Config(solved_return=475.0),
    "lunarlander": Config(
        env_id="LunarLander-v3", total_steps=400_000, num_envs=4, train_frequency=4, gradient_steps=2,
        learning_starts=5_000, buffer_size=50_000, batch_size=128, learning_rate=2.5e-4, gamma=0.99,
        target_update_period=250, hidden_sizes=(128, 128), loss="l2", clip_grad_value=100.0,
        epsilon_schedule="exponential", epsilon_start=1.0, epsilon_end=0.01, epsilon_decay_steps=100_000,
        solved_return=200.0, log_interval=20_000, eval_episodes=100),
    "lunarlander-per": Config(
        env_id="LunarLander-v3", total_steps=400_000, num_envs=4, train_frequency=4, gradient_steps=2,
        learning_starts=5_000, buffer_size=100_000, batch_size=128, learning_rate=2.5e-4, gamma=0.99,
        target_update_period=250, hidden_sizes=(128, 128), loss="huber", max_grad_norm=10.0,
        double_q=True, dueling=True, prioritized=True, priority_alpha=0.5, priority_beta0=0.4,
        epsilon_schedule="exponential", epsilon_start=1.0, epsilon_end=0.01, epsilon_decay_steps=100_000,
        solved_return=200.0, log_interval=20_000, eval_episodes=100),
    "highway": Config(
        env_id="highway-fast-v0", total_steps=10_000, num_envs=1, train_frequency=1, gradient_steps=1,
        learning_starts=64, buffer_size=15_000, batch_size=64, learning_rate=1e-3, gamma=0.8,
        target_update_period=50, hidden_sizes=(128,), dueling=True, dueling_hidden=128, loss="huber",
        max_grad_norm=10.0, epsilon_schedule="linear", epsilon_start=1.0, epsilon_end=0.1,
        epsilon_decay_steps=4_064, log_interval=1_000, eval_episodes=100),
    "frozenlake": Config(
        env_id="FrozenLake-v1", agent="tabular", tabular_alpha=0.2, tabular_alpha_end=0.0, gamma=0.99,
        total_steps=100_000, num_envs=8, learning_starts=0, epsilon_schedule="constant", epsilon_start=1.0,
        log_interval=10_000, eval_episodes=1_000),
    "pong": Config(
        env_id="Pong-v5", torso="nature_cnn", hidden_sizes=(512,), total_steps=2_000_000, num_envs=1,
        train_frequency=1, gradient_steps=1, learning_starts=10_000, buffer_size=10_000, batch_size=32,
        learning_rate=1e-4, gamma=0.99, target_update_period=1_000, loss="l2", epsilon_schedule="linear",
        epsilon_start=1.0, epsilon_end=0.01, epsilon_decay_steps=150_000, solved_return=19.0,
        stop_when_solved=True, log_interval=10_000, eval_episodes=10),
    "breakout": Config(
        env_id="Breakout-v5", torso="nature_cnn", hidden_sizes=(512,), dueling=True, dueling_hidden=256,
        double_q=True, prioritized=True, buffer_size=2**14, priority_alpha=0.6, priority_beta0=0.4,
        num_envs=8, train_frequency=32, gradient_steps=8, batch_size=32, target_update_period=2_000,
        learning_starts=2**14, epsilon_schedule="piecewise", epsilon_boundaries=(0, 800_000, 5_000_000),
        epsilon_values=(1.0, 0.1, 0.01), learning_rate=2.5e-4, max_grad_norm=0.5, loss="huber", gamma=0.99,
        total_steps=10_000_000, log_interval=50_000, eval_episodes=10, eval_epsilon=0.05),
    "atlantis": Config(
        env_id="Atlantis-v5", torso="nature_cnn", hidden_sizes=(), dueling=True, dueling_hidden=512,
        double_q=True, prioritized=True, priority_alpha=0.5, priority_beta0=0.4, buffer_size=1_000_000,
        batch_size=64, num_envs=4, train_frequency=4, gradient_steps=1, learning_rate=1e-4, gamma=0.99,
        target_update_period=2_500, loss="huber", max_grad_norm=10.0, epsilon_schedule="exponential",
        epsilon_start=1.0, epsilon_end=0.01, epsilon_decay_steps=1_000_000, learning_starts=50_000,
        total_steps=10_000_000, log_interval=50_000, eval_episodes=10, eval_epsilon=0.05),
}
"""Named configurations; `jaxdqn presets` lists them."""

PRESET_DOCS: dict[str, str] = {
    "cartpole": (
        "CartPole-v1, CleanRL dqn_jax.py defaults: 500k steps, buffer 10k, batch 128, Adam 2.5e-4, "
        "target copied every 500 steps, eps 1->0.05 over 250k, L2, MLP 120-84"
    ),
    "lunarlander": (
        "LunarLander-v3, seed 003's DQN (MLP 128-128, L2, clip by value 100, exponential eps to 0.01); "
        "4 envs, 2 updates per 4 steps (seed: 1 per step, slow), lr 2.5e-4, buffer 50k, target every 250 updates; "
        "400k steps; greedy eval over 100 episodes"
    ),
    "lunarlander-per": (
        "LunarLander-v3, seed 001's agent: Double DQN + dueling + prioritized replay (alpha 0.5, beta 0.4->1), "
        "Huber, grad norm 10, exponential eps, buffer 100k (seed: 1M); 4 envs, 400k steps, greedy eval over 100 "
        "episodes. Changed from the seed: Adam 2.5e-4, batch 128, 2 updates per 4 steps, target every 250 "
        "updates; the seed's Adam 1e-3 / batch 64 reaches 200 in training but its final greedy policy fell "
        "below 200 in 2 of 6 runs (173, 180), these settings gave 243-271 in 3 of 3"
    ),
    "highway": (
        "highway-fast-v0, seed 000's Dueling DQN as in the seed: MLP 128 then 128-wide value and advantage streams, "
        "gamma 0.8, batch 64, buffer 15k, Adam 1e-3 (PyTorch default), hard target copy every 50 updates, "
        "smooth-L1, grad norm 10, 1 env, 1 update per step from step 64, eps 1.0->0.1 linear over 4,064 steps "
        "(the seed's 4k updates), 10k steps; greedy eval over 100 episodes"
    ),
    "frozenlake": (
        "FrozenLake-v1 (slippery), seed 002's tabular Q-learning with random exploration (eps 1); solved when the "
        "greedy success rate (= mean eval return) over 1,000 test episodes exceeds 0.7. Changed from the seed: "
        "gamma 0.99 (seed 0.9) and alpha 0.2 decaying linearly to 0 (seed: constant 0.2), 8 envs, 100k steps. "
        "The best policy succeeds 0.74 of the time within the 100-step limit, so > 0.7 needs it almost exactly; "
        "with constant alpha 0.2 the table stays noisy: over 8 seeds of 200k steps the greedy policy scored 0.11-0.72 "
        "(gamma 0.9) or 0.45-0.75 (gamma 0.99), and gamma 0.9 with the decay still gave 0.37-0.73 (its best actions "
        "at the start state differ by 0.002 in value); these settings gave 0.725-0.755 in 16 of 16 seeds "
        "(jaxdqn train --preset frozenlake --num-seeds 16)"
    ),
    "pong": (
        "Pong-v5, seed 002's DQN: Nature CNN (512), 84x84 grey, skip 4 with max pooling, stack 4, fire reset; "
        "1 update per step, batch 32, buffer 10k, start 10k, Adam 1e-4, target every 1k updates, "
        "eps 1->0.01 linear over 150k, MSE (L2); stops when the 100-episode mean reaches 19 (at most 2M steps). "
        "Changed from the seed: up to 30 no-op starts (EnvPool's standard preprocessing)"
    ),
    "breakout": (
        "Breakout-v5, seed 004 (labml): Nature CNN, dueling 512->256->V/A, double Q, PER 2^14 alpha 0.6 "
        "beta 0.4->1, 8 envs x 4 steps per update with 8 epochs of batch 32 (target every 250 updates = "
        "2000 gradient steps), eps 1->0.1 (25k updates = 800k steps)->0.01 (half of training), Adam 2.5e-4, "
        "grad norm 0.5, Huber, learning from a full buffer; episodic life, clipped rewards. 10M steps "
        "(seed: 1M updates = 32M steps; its eps points are taken in steps). Greedy eval at eps 0.05 "
        "(Nature DQN's), since a policy that never presses FIRE would stall a game until its time limit"
    ),
    "atlantis": (
        "Atlantis-v5, seed 001's agent: double DQN + PER (alpha 0.5, beta 0.4->1) + dueling (separate 512 "
        "streams on the Nature CNN features), buffer 1M (about 7.1 GB with the frame replay), batch 64, "
        "1 update per 4 steps (4 envs), exponential eps 1->0.01 over 1M steps, 10M steps. Changed from the "
        "seed: a target network copied every 2500 updates (the seed syncs it every update, which makes "
        "double Q a no-op), Adam 1e-4 (the seed's 1e-3 is tuned for LunarLander's MLP), Huber with grad "
        "norm 10, learning from 50k steps, episodic life and clipped rewards, beta linear rather than "
        "1-exp(-0.01 episode), the Nature CNN's 3x3 last conv (seed 2x2); greedy eval at eps 0.05"
    ),
}


def get_preset(name: str) -> Config:
    """Return the preset called `name`, or raise ConfigError listing the valid names."""
    if name not in PRESETS:
        raise ConfigError(f"preset: unknown preset {name!r}; allowed: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


def periods(cfg: Config) -> tuple[int, int]:
    """Return (iterations per training period, updates per training period).

    One iteration steps all `num_envs` environments of every seed once.
    """
    if cfg.train_frequency >= cfg.num_envs:
        return cfg.train_frequency // cfg.num_envs, cfg.gradient_steps
    return 1, (cfg.num_envs // cfg.train_frequency) * cfg.gradient_steps


def _require(condition: bool, field: str, allowed: str, value) -> None:
    if not condition:
        raise ConfigError(f"{field}: {allowed} (got {value!r})")


def validate(cfg: Config) -> Config:
    """Check every field and the environment; raise one ConfigError naming the first problem.

    Runs before anything is compiled or any file is written.
    """
    positive_ints = ["num_seeds", "num_envs", "total_steps", "train_frequency", "gradient_steps",
                     "buffer_size", "batch_size", "target_update_period", "epsilon_decay_steps",
                     "eval_episodes", "log_interval"]
    for name in positive_ints:
        value = getattr(cfg, name)
        _require(isinstance(value, int) and value > 0, name, "must be an integer > 0", value)
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if isinstance(value, int) and not isinstance(value, bool):
            _require(value <= INT32_MAX, field.name, f"must be at most {INT32_MAX} (int32)", value)
    _require(isinstance(cfg.seed, int) and cfg.seed >= 0, "seed", "must be an integer >= 0", cfg.seed)
    # training seeds the pool's environments seed .. seed + S*N - 1, the final evaluation seed + offset + S*E - 1
    highest_seed = cfg.seed + EVAL_SEED_OFFSET + cfg.num_seeds * max(cfg.eval_episodes, cfg.num_envs)
    _require(highest_seed <= INT32_MAX, "seed", f"must be at most {INT32_MAX - (highest_seed - cfg.seed)} here: "
             f"environment seeds run up to seed + {highest_seed - cfg.seed} (evaluation offset {EVAL_SEED_OFFSET} "
             "+ seeds x episodes), and EnvPool takes int32 seeds", cfg.seed)
    _require(isinstance(cfg.checkpoint_interval, int) and cfg.checkpoint_interval >= 0, "checkpoint_interval",
             "must be an integer >= 0 (0 saves only at the end)", cfg.checkpoint_interval)
    _require(isinstance(cfg.keep_checkpoints, int) and cfg.keep_checkpoints >= 1, "keep_checkpoints",
             "must be an integer >= 1", cfg.keep_checkpoints)
    _require(cfg.env_threads >= 0, "env_threads", "must be >= 0", cfg.env_threads)
    _require(cfg.learning_starts >= 0, "learning_starts", "must be >= 0", cfg.learning_starts)
    for name in ["learning_rate", "adam_eps", "huber_delta", "priority_eps"]:
        value = getattr(cfg, name)
        _require(math.isfinite(value) and value > 0, name, "must be a finite number > 0", value)
    for name in ["max_grad_norm", "clip_grad_value"]:
        value = getattr(cfg, name)
        _require(math.isfinite(value) and value >= 0, name, "must be >= 0 (0 disables)", value)
    _require(0 < cfg.gamma <= 1, "gamma", "must be in (0, 1]", cfg.gamma)
    _require(cfg.priority_alpha >= 0, "priority_alpha", "must be >= 0", cfg.priority_alpha)
    _require(0 <= cfg.priority_beta0 <= 1, "priority_beta0", "must be in [0, 1]", cfg.priority_beta0)
    _require(0 < cfg.target_tau <= 1, "target_tau", "must be in (0, 1]", cfg.target_tau)
    for name in ["epsilon_start", "epsilon_end", "eval_epsilon"]:
        value = getattr(cfg, name)
        _require(0 <= value <= 1, name, "must be in [0, 1]", value)
    if cfg.epsilon_schedule == "exponential":
        _require(cfg.epsilon_end > 0, "epsilon_end", "must be > 0 for the exponential schedule", cfg.epsilon_end)
        _require(cfg.epsilon_start > 0, "epsilon_start", "must be > 0 for the exponential schedule", cfg.epsilon_start)
    if cfg.epsilon_schedule == "piecewise":
        _require(len(cfg.epsilon_boundaries) >= 1, "epsilon_boundaries",
                 "needs at least one step for the piecewise schedule", cfg.epsilon_boundaries)
        _require(len(cfg.epsilon_values) == len(cfg.epsilon_boundaries), "epsilon_values",
                 f"needs one value per boundary ({len(cfg.epsilon_boundaries)})", cfg.epsilon_values)
        _require(all(b >= 0 for b in cfg.epsilon_boundaries)
                 and all(a < b for a, b in zip(cfg.epsilon_boundaries, cfg.epsilon_boundaries[1:])),
                 "epsilon_boundaries", "must be increasing steps >= 0", cfg.epsilon_boundaries)
        _require(all(0 <= v <= 1 for v in cfg.epsilon_values), "epsilon_values",
                 "must all be in [0, 1]", cfg.epsilon_values)
    if cfg.torso == "nature_cnn":
        _require(all(h > 0 for h in cfg.hidden_sizes), "hidden_sizes", "must be widths > 0", cfg.hidden_sizes)
    else:
        _require(len(cfg.hidden_sizes) >= 1 and all(h > 0 for h in cfg.hidden_sizes), "hidden_sizes",
                 "must be one or more widths > 0", cfg.hidden_sizes)
    _require(cfg.dueling_hidden >= 0, "dueling_hidden", "must be >= 0", cfg.dueling_hidden)
    _require(0 < cfg.tabular_alpha <= 1, "tabular_alpha", "must be in (0, 1]", cfg.tabular_alpha)
    if cfg.tabular_alpha_end is not None:
        _require(0 <= cfg.tabular_alpha_end <= 1, "tabular_alpha_end", "must be in [0, 1] or None",
                 cfg.tabular_alpha_end)
    _require(cfg.learning_starts < cfg.total_steps, "learning_starts",
             f"must be below total_steps ({cfg.total_steps}) or no update ever runs", cfg.learning_starts)
    if cfg.agent == "dqn":  # the replay's constraints; the tabular agent learns from every step, without replay
        _require(cfg.train_frequency % cfg.num_envs == 0 or cfg.num_envs % cfg.train_frequency == 0,
                 "train_frequency", f"must divide num_envs ({cfg.num_envs}) or be a multiple of it",
                 cfg.train_frequency)
        _require(cfg.batch_size <= cfg.buffer_size, "batch_size",
                 f"must be <= buffer_size ({cfg.buffer_size})", cfg.batch_size)
        _require(cfg.buffer_size >= cfg.num_envs, "buffer_size",
                 f"must hold at least one step of all environments (num_envs={cfg.num_envs})", cfg.buffer_size)
        _require(cfg.learning_starts >= cfg.batch_size, "learning_starts",
                 f"must be >= batch_size ({cfg.batch_size}) so the first batch has data to sample",
                 cfg.learning_starts)
    if cfg.solved_return is not None:
        _require(math.isfinite(cfg.solved_return), "solved_return", "must be a finite number or None",
                 cfg.solved_return)
    _require(not cfg.stop_when_solved or cfg.solved_return is not None, "stop_when_solved",
             "needs solved_return to be set", cfg.stop_when_solved)
    iters_per_period, _ = periods(cfg)
    steps_per_period = iters_per_period * cfg.num_envs
    rounded_total = math.ceil(cfg.total_steps / steps_per_period) * steps_per_period
    _require(rounded_total + steps_per_period * max(1, cfg.log_interval // steps_per_period) <= INT32_MAX,
             "total_steps", f"must leave the step counter within int32 ({INT32_MAX}) after rounding up to whole "
             f"periods of {steps_per_period} steps", cfg.total_steps)
    validate_env(cfg.env_id, cfg.agent)
    if cfg.agent == "dqn" and cfg.torso == "nature_cnn":
        from jaxdqn.envs import env_info

        shape = env_info(cfg.env_id).obs_shape
        _require(len(shape) == 3 and min(shape[1:]) >= NATURE_CNN_MIN_SIZE, "torso",
                 f"nature_cnn needs image observations shaped (frames, height, width) of at least "
                 f"{NATURE_CNN_MIN_SIZE}x{NATURE_CNN_MIN_SIZE}, but {cfg.env_id} has shape {tuple(shape)}; "
                 "allowed here: mlp", cfg.torso)
    if cfg.agent == "dqn" and _stores_frames(cfg.env_id):
        slots = cfg.buffer_size // cfg.num_envs
        _require(cfg.buffer_size % cfg.num_envs == 0 and slots >= 8, "buffer_size",
                 f"must be a multiple of num_envs ({cfg.num_envs}) with at least 8 per environment for "
                 f"{cfg.env_id} (its replay keeps one frame ring per environment)", cfg.buffer_size)
    return cfg


def _stores_frames(env_id: str) -> bool:
    from jaxdqn.envs import env_info
    from jaxdqn.replay import is_frame_stack

    info = env_info(env_id)
    return is_frame_stack(info.obs_shape, info.obs_dtype)


def validate_env(env_id: str, agent: str = "dqn") -> None:
    """Raise ConfigError unless `env_id` is an EnvPool or Gymnasium task with a discrete action space
    whose observation space suits `agent` (dqn: not Discrete; tabular: Discrete)."""
    import envpool
    import gymnasium

    from jaxdqn.envs import env_spaces

    all_ids = envpool.list_all_envs()
    if env_id not in all_ids and env_id not in gymnasium.envs.registry:
        known = sorted(set(all_ids) | set(gymnasium.envs.registry))
        close = difflib.get_close_matches(env_id, known, n=5, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else "run `python -c 'import envpool; print(envpool.list_all_envs())'` for the list"
        raise ConfigError(f"env_id: {env_id!r} is not an EnvPool or Gymnasium environment; {hint}")
    try:
        obs_space, action_space, _ = env_spaces(env_id)
    except Exception as error:  # a Gymnasium id whose dependencies are missing, for example
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"env_id: {env_id!r} cannot be created: {message}") from None
    if not isinstance(action_space, gymnasium.spaces.Discrete):
        raise ConfigError(f"env_id: {env_id!r} has a {type(action_space).__name__} action space; "
                          "jaxdqn needs a discrete (Discrete) action space")
    discrete_obs = isinstance(obs_space, gymnasium.spaces.Discrete)
    if agent == "dqn" and discrete_obs:
        raise ConfigError(f"env_id: {env_id!r} has a Discrete observation space ({obs_space.n} states); "
                          "the dqn agent needs array observations: use --agent tabular")
    if agent == "tabular" and not discrete_obs:
        raise ConfigError(f"agent: tabular needs a Discrete observation space, but {env_id!r} has "
                          f"{type(obs_space).__name__}{tuple(obs_space.shape)}: use --agent dqn")


def to_dict(cfg: Config) -> dict:
    """The config as a JSON-ready dict."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def from_dict(data: dict) -> Config:
    """Rebuild a Config from `to_dict` output."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"config: unknown fields {unknown}")
    return Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
