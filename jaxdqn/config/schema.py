"""Typed, frozen configuration sections, the values derived from them (`plan`), and conversions.

Every field carries a docstring; `jaxdqn train --help` shows them. Step counts are environment steps *per
seed* unless a field says otherwise. Each section checks its own values when it is built and raises a
one-line ConfigError "field: what is allowed (got X)"; the checks that need the environment or the agent
are in `jaxdqn.config.validate`. Every leaf field name is unique in a Config tree, so a field can be named
flat (`learning_rate`) wherever it lives (`cfg.settings.optim.learning_rate`).

This module imports nothing from jaxdqn.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Generic, Literal, NamedTuple, TypeVar

INT32_MAX = 2**31 - 1
"""Step counters, seeds and EnvPool's environment seeds are int32 inside the compiled loop."""

FORMAT = 2
"""Version of the dict `to_dict` writes (config.json); 1 is the flat dict of jaxdqn before the sections."""

WANDB_PROJECT_FORBIDDEN = "/\\#?%:"
"""Characters a Weights & Biases project name cannot contain."""


class ConfigError(ValueError):
    """A configuration value is invalid; the one-line message names the field and what is allowed."""


def require(condition: bool, field_name: str, allowed: str, value) -> None:
    """Raise ConfigError("field_name: allowed (got value)") unless `condition` holds."""
    if not condition:
        raise ConfigError(f"{field_name}: {allowed} (got {value!r})")


# The CLI parser builds sections before it can report their errors itself, so it turns checks off while
# parsing and runs them afterwards with `checked`.
_CHECKING = contextvars.ContextVar("jaxdqn_config_checking", default=True)


@contextlib.contextmanager
def unchecked():
    """Build sections without running their checks inside this block; run them later with `checked`."""
    token = _CHECKING.set(False)
    try:
        yield
    finally:
        _CHECKING.reset(token)


def checked(cfg: Config) -> Config:
    """`cfg` built again with every section's checks on (for a Config built inside `unchecked`)."""
    return from_flat(flat_dict(cfg), type(cfg.settings))


def _is_section(value) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _check_type(name: str, hint, value) -> None:
    """The checks every field of a given annotation shares: type, literal choices and the int32 range."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        require(value in args, name, f"must be one of {', '.join(map(str, args))}", value)
    elif hint is bool:
        require(isinstance(value, bool), name, "must be True or False", value)
    elif hint is int:
        require(isinstance(value, int) and not isinstance(value, bool), name, "must be an integer", value)
        require(value <= INT32_MAX, name, f"must be at most {INT32_MAX} (int32)", value)
    elif hint is float:
        require(isinstance(value, (int, float)) and not isinstance(value, bool), name, "must be a number", value)
    elif hint is str:
        require(isinstance(value, str) and value != "", name, "must be a non-empty string", value)
    elif origin is tuple:
        require(isinstance(value, tuple), name, "must be a sequence", value)
        for item in value:
            _check_type(name, args[0], item)
    elif origin in (typing.Union, types.UnionType):
        if value is not None:
            _check_type(name, next(a for a in args if a is not type(None)), value)
    elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
        require(isinstance(value, hint), name, f"must be a {hint.__name__}", value)


def _finite_positive(section, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        require(math.isfinite(value) and value > 0, name, "must be a finite number > 0", value)


def _positive_ints(section, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        require(value > 0, name, "must be an integer > 0", value)


def _in_unit_interval(section, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        require(0 <= value <= 1, name, "must be in [0, 1]", value)


def _check_discount(gamma: float) -> None:
    require(0 < gamma <= 1, "gamma", "must be in (0, 1]", gamma)


class Section:
    """Base of the config sections (an agent's settings too): when built, lists become tuples, then the
    checks run (unless `unchecked`): the type, choices and int32 range of every annotated field, then
    `_check_values`, which a section overrides to check its values."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if isinstance(getattr(self, f.name), list):
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))
        if _CHECKING.get():
            self._check()

    def _check(self) -> None:
        for name, hint in _hints(type(self)).items():
            if not isinstance(hint, TypeVar):
                _check_type(name, hint, getattr(self, name))
        self._check_values()

    def _check_values(self) -> None:
        """Checks of this section's values beyond their types (overridden by sections that have some)."""


@dataclass(frozen=True)
class EnvConfig(Section):
    """The environments: which task and how many copies per seed."""

    env_id: str = "CartPole-v1"
    """EnvPool task id (for example CartPole-v1, LunarLander-v3), a Gymnasium id EnvPool lacks (slower path), a
    gymnax id (gymnax/CartPole-v1: a JAX environment on the device) or a JAX environment's import path
    (module:attribute, see jaxdqn/envs/jax_env.py); its action space must be discrete."""
    num_envs: int = 1
    """Environments stepped in parallel for each seed."""
    env_threads: int = 0
    """EnvPool worker threads for the whole pool; 0 lets jaxdqn choose (min of pool size and CPU count)."""
    episodic_life: bool = True
    """Atari only: during training an episode ends (for the TD target) at each lost life; reported returns,
    the solved criterion and evaluation always use whole games."""
    reward_clip: bool = True
    """Atari only: train on rewards clipped to their sign; reported returns and evaluation are unclipped."""
    repeat_action_probability: float = 0.0
    """Atari only: sticky actions, the chance that each frame repeats the previous action instead of the chosen
    one, in training and evaluation alike: 0.25 in Machado et al. (2018) and Dopamine, 0 in the Nature DQN."""
    env_overlap: bool = False
    """EnvPool (XLA step) only: send the next actions before learning and receive their step after, so that
    EnvPool's threads step the environments while the agent learns. The action that opens a period (the
    first after an update) is then chosen before that update, one update behind, except at the start of each
    log interval; and each action is chosen before the agent observes the step just received."""

    def _check_values(self) -> None:
        _positive_ints(self, "num_envs")
        _in_unit_interval(self, "repeat_action_probability")
        require(self.env_threads >= 0, "env_threads", "must be >= 0", self.env_threads)


@dataclass(frozen=True)
class LoopConfig(Section):
    """The training loop: seeds, length, training periods, logging, evaluation and the solved criterion."""

    seed: int = 0
    """Base random seed; seed k of a multi-seed run derives its keys from (seed, k)."""
    num_seeds: int = 1
    """Independent agents trained at once, each with its own initialisation, exploration and replay."""
    total_steps: int = 500_000
    """Environment steps per seed (summed over that seed's environments); rounded up to a whole training period."""
    learning_starts: int = 10_000
    """Environment steps per seed collected before the first gradient update."""
    train_frequency: int = 10
    """Environment steps per seed between training phases (must divide num_envs or be a multiple of it)."""
    gradient_steps: int = 1
    """Gradient updates in each training phase."""
    log_interval: int = 10_000
    """Environment steps per seed between log points (one compiled chunk each)."""
    eval_episodes: int = 10
    """Evaluation episodes per seed at the end of training (whole games, at eval_epsilon)."""
    eval_epsilon: float = 0.0
    """Epsilon of the evaluation policy: 0 is greedy; the Nature DQN evaluated Atari at 0.05."""
    schedule_steps: int | None = None
    """Length of the schedules that span the run (beta annealed to 1, the tabular alpha decay,
    exploration_fraction), in environment steps per seed; None: the run's total_steps. Resuming with a larger
    total_steps sets it to the run's first length, so those schedules keep their course."""
    solved_return: float | None = None
    """Mean return over the last 100 training episodes that counts as solving the task; None for none."""
    stop_when_solved: bool = False
    """End training the first time every seed has reached solved_return."""
    devices: int | None = None
    """Local devices (GPUs, or simulated CPU devices) the agents (seeds, and a sweep's configurations) are sharded
    over: each device trains its share, with no traffic between devices in the training loop; needs a JAX
    environment (gymnax/... or an import path), split over the devices, or an EnvPool one, one pool per device
    (built by the process that owns it). None: every local device when the agents divide evenly among them, else
    the most that do (1 with Gymnasium environments). On a CPU, `--cpu-devices N` makes N devices of it."""
    data_parallel: int = 1
    """Devices each agent's learner is split over: each device steps num_envs / data_parallel of the agent's
    environments into its own share of the replay, samples batch_size / data_parallel transitions from it (pqn:
    that share of every minibatch), and the gradients are averaged over the devices, so the parameters stay the
    same on all of them. 1: off (the devices, if several, split the agents instead; see devices). Pays off for
    large minibatches only; needs a JAX or EnvPool environment (one pool per device); with several processes,
    every process's devices."""

    def _check_values(self) -> None:
        require(self.seed >= 0, "seed", "must be an integer >= 0", self.seed)
        _positive_ints(self, "num_seeds", "total_steps", "train_frequency", "gradient_steps", "eval_episodes",
                       "log_interval")
        require(self.learning_starts >= 0, "learning_starts", "must be >= 0", self.learning_starts)
        require(self.learning_starts < self.total_steps, "learning_starts",
                f"must be below total_steps ({self.total_steps}) or no update ever runs", self.learning_starts)
        _in_unit_interval(self, "eval_epsilon")
        if self.schedule_steps is not None:
            _positive_ints(self, "schedule_steps")
        if self.solved_return is not None:
            require(math.isfinite(self.solved_return), "solved_return", "must be a finite number or None",
                    self.solved_return)
        require(not self.stop_when_solved or self.solved_return is not None, "stop_when_solved",
                "needs solved_return to be set", self.stop_when_solved)
        if self.devices is not None:
            _positive_ints(self, "devices")
        _positive_ints(self, "data_parallel")


@dataclass(frozen=True)
class CheckpointConfig(Section):
    """Checkpoints (see jaxdqn/checkpoint.py); they never change what is trained."""

    checkpoint_interval: int = 100_000
    """Environment steps per seed between checkpoints, rounded up to whole log chunks; 0 saves only at the end."""
    keep_checkpoints: int = 3
    """Complete checkpoints kept in the run directory (older ones are deleted), >= 1."""
    checkpoint_replay: bool = True
    """Save the replay (and priorities) in checkpoints; False: small files, resume refills it first (not bit-exact)."""
    replay_in_every_checkpoint: bool = False
    """Keep the replay in every kept checkpoint; False keeps it in the newest only (an older one resumes by
    refilling it), so a large replay is on disk once."""

    def _check_values(self) -> None:
        require(self.checkpoint_interval >= 0, "checkpoint_interval",
                "must be an integer >= 0 (0 saves only at the end)", self.checkpoint_interval)
        require(self.keep_checkpoints >= 1, "keep_checkpoints", "must be an integer >= 1", self.keep_checkpoints)


@dataclass(frozen=True)
class TrackingConfig(Section):
    """Experiment tracking with Weights & Biases; it never changes what is trained."""

    track: bool = False
    """Log the run to Weights & Biases (pip install 'jaxdqn[wandb]'); WANDB_MODE=offline writes it locally."""
    wandb_project: str = "jaxdqn"
    """W&B project the run is logged to."""
    wandb_entity: str | None = None
    """W&B user or team that owns the project; None: the logged-in user's default entity."""
    wandb_group: str | None = None
    """W&B group that gathers related runs (for example the seeds of one experiment); None for none."""

    def _check_values(self) -> None:
        # W&B's own rule for project names, checked here so that a bad name fails before anything compiles
        require(len(self.wandb_project) <= 128 and not set(self.wandb_project) & set(WANDB_PROJECT_FORBIDDEN),
                "wandb_project", f"must be at most 128 characters, none of {WANDB_PROJECT_FORBIDDEN}",
                self.wandb_project)


@dataclass(frozen=True)
class ExplorationConfig(Section):
    """The epsilon-greedy exploration schedule during training."""

    epsilon_schedule: Literal["constant", "linear", "exponential", "piecewise"] = "linear"
    """Exploration schedule over environment steps."""
    epsilon_start: float = 1.0
    """Initial epsilon (constant: the value used throughout), in [0, 1]."""
    epsilon_end: float = 0.05
    """Final epsilon, in [0, 1]."""
    epsilon_decay_steps: int = 250_000
    """Environment steps to go from epsilon_start to epsilon_end (linear or geometric); unused when
    exploration_fraction is set."""
    exploration_fraction: float | None = None
    """If set, the decay lasts this fraction of the run (of schedule_steps, by default total_steps), so it scales
    with --total-steps (CleanRL's exploration_fraction); None: epsilon_decay_steps. Giving epsilon_decay_steps
    alone clears it."""
    epsilon_boundaries: tuple[int, ...] = ()
    """Piecewise schedule: step numbers (increasing) at which epsilon_values hold."""
    epsilon_values: tuple[float, ...] = ()
    """Piecewise schedule: epsilon at each boundary, linear in between, constant after the last."""

    def _check_values(self) -> None:
        _positive_ints(self, "epsilon_decay_steps")
        if self.exploration_fraction is not None:
            require(0 < self.exploration_fraction <= 1, "exploration_fraction", "must be in (0, 1] or None",
                    self.exploration_fraction)
        _in_unit_interval(self, "epsilon_start", "epsilon_end")
        if self.epsilon_schedule == "exponential":
            require(self.epsilon_end > 0, "epsilon_end", "must be > 0 for the exponential schedule",
                    self.epsilon_end)
            require(self.epsilon_start > 0, "epsilon_start", "must be > 0 for the exponential schedule",
                    self.epsilon_start)
        if self.epsilon_schedule == "piecewise":
            bounds, values = self.epsilon_boundaries, self.epsilon_values
            require(len(bounds) >= 1, "epsilon_boundaries", "needs at least one step for the piecewise schedule",
                    bounds)
            require(len(values) == len(bounds), "epsilon_values",
                    f"needs one value per boundary ({len(bounds)})", values)
            require(all(b >= 0 for b in bounds) and all(a < b for a, b in zip(bounds, bounds[1:])),
                    "epsilon_boundaries", "must be increasing steps >= 0", bounds)
            require(all(0 <= v <= 1 for v in values), "epsilon_values", "must all be in [0, 1]", values)


@dataclass(frozen=True)
class NetworkConfig(Section):
    """The Q-network: torso and head."""

    torso: Literal["mlp", "nature_cnn", "minatar_cnn"] = "mlp"
    """Feature extractor: an MLP; the Nature DQN CNN for uint8 image stacks (frames, height, width); or Young & Tian
    (2019)'s MinAtar CNN (one 3x3 convolution of 16 filters) for small images (height, width, channels)."""
    hidden_sizes: tuple[int, ...] = (120, 84)
    """Hidden layer widths of the MLP torso, or of the dense layers after a CNN (may be empty there)."""
    dueling: bool = False
    """Use a dueling head (separate value and advantage streams)."""
    dueling_aggregation: Literal["mean", "max"] = "mean"
    """How the dueling head centres advantages: subtract their mean or their max."""
    dueling_hidden: int = 0
    """Width of a hidden layer in each dueling stream; 0 for none."""
    layer_norm: bool = False
    """Layer normalisation before each ReLU of the torso (each convolution's output is normalised over all of
    its features, as in PQN's Atari network)."""
    noisy: bool = False
    """Noisy networks (Fortunato et al. 2017): every dense layer gets factorised Gaussian noise on its weights,
    drawn afresh at each step and each update, and exploration comes from it (the epsilon schedule must be 0);
    evaluation uses the mean weights."""
    noisy_sigma0: float = 0.5
    """Initial noise scale of the noisy layers: sigma = noisy_sigma0 / sqrt(inputs), > 0."""

    def _check_values(self) -> None:
        if self.torso != "mlp":
            require(all(h > 0 for h in self.hidden_sizes), "hidden_sizes", "must be widths > 0", self.hidden_sizes)
        else:
            require(len(self.hidden_sizes) >= 1 and all(h > 0 for h in self.hidden_sizes), "hidden_sizes",
                    "must be one or more widths > 0", self.hidden_sizes)
        require(self.dueling_hidden >= 0, "dueling_hidden", "must be >= 0", self.dueling_hidden)
        _finite_positive(self, "noisy_sigma0")


@dataclass(frozen=True)
class ReplayConfig(Section):
    """The replay buffer, uniform or prioritized."""

    buffer_size: int = 10_000
    """Replay capacity in transitions, per seed."""
    batch_size: int = 128
    """Transitions sampled for each gradient update."""
    prioritized: bool = False
    """Use proportional prioritized replay (sum tree) instead of uniform replay."""
    priority_alpha: float = 0.6
    """Prioritization exponent: P(i) is proportional to (|td| + priority_eps)^alpha; 0 is uniform."""
    priority_beta0: float = 0.4
    """Initial importance-weight exponent, annealed linearly to 1 over training."""
    priority_eps: float = 1e-6
    """Added to |td| so that no transition gets zero priority, > 0."""

    def _check_values(self) -> None:
        _positive_ints(self, "buffer_size", "batch_size")
        require(self.batch_size <= self.buffer_size, "batch_size", f"must be <= buffer_size ({self.buffer_size})",
                self.batch_size)
        require(self.priority_alpha >= 0, "priority_alpha", "must be >= 0", self.priority_alpha)
        _in_unit_interval(self, "priority_beta0")
        _finite_positive(self, "priority_eps")


@dataclass(frozen=True)
class OptimConfig(Section):
    """The optimizer: Adam with optional gradient clipping."""

    optimizer: Literal["adam", "radam"] = "adam"
    """adam, or radam (Rectified Adam, Liu et al. 2020: PQN's optimiser in CleanRL)."""
    learning_rate: float = 2.5e-4
    """Step size, > 0."""
    adam_eps: float = 1e-8
    """Adam's (or RAdam's) epsilon, > 0."""
    max_grad_norm: float = 0.0
    """Clip gradients to this global norm; 0 disables."""
    clip_grad_value: float = 0.0
    """Clip each gradient element to [-v, v]; 0 disables."""

    def _check_values(self) -> None:
        _finite_positive(self, "learning_rate", "adam_eps")
        for name in ("max_grad_norm", "clip_grad_value"):
            value = getattr(self, name)
            require(math.isfinite(value) and value >= 0, name, "must be >= 0 (0 disables)", value)


@dataclass(frozen=True)
class DQNSettings(Section):
    """The dqn agent: a Q-network trained from replay against a target network."""

    gamma: float = 0.99
    """Discount factor, in (0, 1]."""
    n_step: int = 1
    """Steps of each replayed transition's return: r_t + ... + gamma^(k-1) r_{t+k-1}, bootstrapped with gamma^k,
    where k <= n_step stops early at an episode's end (a termination does not bootstrap, a truncation does)."""
    double_q: bool = False
    """Use the double Q-learning target (online network picks the action, target network values it)."""
    loss: Literal["l2", "huber"] = "l2"
    """TD loss of the one-value head (distributional off): l2 is 0.5 * td^2 (mean squared error up to a factor),
    huber is smooth-L1."""
    huber_delta: float = 1.0
    """Huber loss threshold (QR-DQN's kappa), > 0."""
    distributional: Literal["off", "c51", "qr"] = "off"
    """off: one Q-value per action; c51: a categorical return distribution on num_atoms atoms from v_min to v_max,
    trained by cross-entropy to the projected target (Bellemare et al. 2017; prioritized replay uses the
    cross-entropy as priority); qr: num_atoms quantiles trained with the quantile Huber loss (Dabney et al. 2017)."""
    num_atoms: int = 51
    """c51: atoms of the support; qr: quantiles; >= 2."""
    v_min: float = -10.0
    """c51: the smallest return of the support."""
    v_max: float = 10.0
    """c51: the largest return of the support, > v_min."""
    target_update_period: int = 50
    """Gradient updates between target-network updates."""
    target_tau: float = 1.0
    """Target update rate: 1 copies the online network (hard update), below 1 is a Polyak average."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    """The Q-network."""
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    """The replay buffer."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """The optimizer."""

    def _check_values(self) -> None:
        _check_discount(self.gamma)
        _positive_ints(self, "n_step")
        _finite_positive(self, "huber_delta")
        if self.distributional != "off":
            require(self.num_atoms >= 2, "num_atoms", f"must be >= 2 for {self.distributional}", self.num_atoms)
        if self.distributional == "c51":
            require(math.isfinite(self.v_min) and math.isfinite(self.v_max) and self.v_min < self.v_max, "v_min",
                    f"must be finite and below v_max ({self.v_max})", self.v_min)
        _positive_ints(self, "target_update_period")
        require(0 < self.target_tau <= 1, "target_tau", "must be in (0, 1]", self.target_tau)


@dataclass(frozen=True)
class TabularSettings(Section):
    """The tabular agent: a Q-table updated online from every real transition."""

    gamma: float = 0.99
    """Discount factor, in (0, 1]."""
    tabular_alpha: float = 0.1
    """Tabular agent: blending rate, Q[s,a] <- (1 - alpha) Q[s,a] + alpha (r + gamma max Q[s']), in (0, 1]."""
    tabular_alpha_end: float | None = None
    """Tabular agent: if set, alpha goes linearly from tabular_alpha to this value over total_steps; None keeps it
    constant. A decaying alpha lets the table converge on stochastic tasks, so the greedy policy stops flickering."""

    def _check_values(self) -> None:
        _check_discount(self.gamma)
        require(0 < self.tabular_alpha <= 1, "tabular_alpha", "must be in (0, 1]", self.tabular_alpha)
        if self.tabular_alpha_end is not None:
            require(0 <= self.tabular_alpha_end <= 1, "tabular_alpha_end", "must be in [0, 1] or None",
                    self.tabular_alpha_end)


@dataclass(frozen=True)
class PQNSettings(Section):
    """The pqn agent (Gallici et al. 2024): no replay and no target network; a LayerNorm Q-network trained on
    Q(lambda) returns of each rollout, several epochs of minibatches per rollout.

    A rollout is one training period: train_frequency / num_envs steps of every environment (train_frequency
    must be a multiple of num_envs)."""

    gamma: float = 0.99
    """Discount factor, in (0, 1]."""
    q_lambda: float = 0.65
    """lambda of the Q(lambda) returns, in [0, 1]: 0 is the one-step target, 1 the Monte Carlo return."""
    update_epochs: int = 4
    """Passes over each rollout, each in num_minibatches shuffled minibatches."""
    num_minibatches: int = 4
    """Minibatches per epoch; they must split the rollout's steps (train_frequency) evenly."""
    anneal_lr: bool = True
    """Anneal the learning rate linearly to 0 over the run (over schedule_steps)."""
    network: NetworkConfig = field(default_factory=lambda: NetworkConfig(layer_norm=True))
    """The Q-network (LayerNorm on by default)."""
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(optimizer="radam", max_grad_norm=10.0))
    """The optimizer (RAdam, gradient norm clipped at 10, by default)."""

    def _check_values(self) -> None:
        _check_discount(self.gamma)
        _in_unit_interval(self, "q_lambda")
        _positive_ints(self, "update_epochs", "num_minibatches")


SettingsT = TypeVar("SettingsT")


@dataclass(frozen=True)
class Config(Section, Generic[SettingsT]):
    """Everything that defines a training run: the agent, its settings section and the shared sections."""

    agent: str = "dqn"
    """dqn: a Q-network with replay, for Box observations; pqn: a Q-network trained on each rollout's Q(lambda)
    returns, without replay or target network; tabular: a Q-table, for Discrete observations (FrozenLake-v1,
    Taxi-v3, CliffWalking-v0), updated online from every real transition; or an agent given by import path
    module:attribute."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """The environments."""
    loop: LoopConfig = field(default_factory=LoopConfig)
    """The training loop."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoints."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """Experiment tracking (Weights & Biases)."""
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    """Exploration."""
    settings: SettingsT = field(default_factory=DQNSettings)
    """The agent's own section: DQNSettings for dqn, PQNSettings for pqn, TabularSettings for tabular."""

    def _check_values(self) -> None:
        require(_is_section(self.settings), "settings", "must be the agent's settings dataclass", self.settings)
        leaf_paths(type(self.settings))  # the flat names must stay unique with this settings type
        loop = self.loop
        p = plan(self)
        require(p.total_env_steps + p.steps_per_period * p.log_periods <= INT32_MAX, "total_steps",
                f"must leave the step counter within int32 ({INT32_MAX}) after rounding up to whole periods of "
                f"{p.steps_per_period} steps", loop.total_steps)


class Plan(NamedTuple):
    """The values derived from a Config, computed once by `plan`."""

    iters_per_period: int
    """Loop iterations per training period; one iteration steps all num_envs environments of every seed once."""
    updates_per_period: int
    """Gradient updates in each training period."""
    steps_per_period: int
    """Environment steps per seed in one training period (iters_per_period * num_envs)."""
    total_periods: int
    """Training periods in the run: total_steps rounded up to whole periods."""
    total_env_steps: int
    """Environment steps per seed the run takes: total_periods * steps_per_period >= total_steps."""
    log_periods: int
    """Training periods in one compiled chunk: one log interval, rounded to whole periods (at least 1)."""
    episode_log_capacity: int
    """Episodes a chunk's environments can finish per seed: each one takes a step plus the reset step."""
    schedule_env_steps: int
    """Length of the run-long schedules: schedule_steps, or total_env_steps when it is None."""
    epsilon_decay_steps: int
    """The decay of the epsilon schedule: exploration_fraction of schedule_env_steps (at least 1), else the
    exploration section's epsilon_decay_steps."""


def plan(cfg: Config) -> Plan:
    """The derived values of `cfg`: training periods, totals and the size of a compiled chunk."""
    num_envs, loop = cfg.env.num_envs, cfg.loop
    if loop.train_frequency >= num_envs:
        iters, updates = loop.train_frequency // num_envs, loop.gradient_steps
    else:
        iters, updates = 1, (num_envs // loop.train_frequency) * loop.gradient_steps
    steps_per_period = iters * num_envs
    total_periods = math.ceil(loop.total_steps / steps_per_period)
    log_periods = max(1, round(loop.log_interval / steps_per_period))
    total_env_steps = total_periods * steps_per_period
    schedule_env_steps = loop.schedule_steps or total_env_steps
    fraction = cfg.exploration.exploration_fraction
    decay = max(1, round(fraction * schedule_env_steps)) if fraction else cfg.exploration.epsilon_decay_steps
    return Plan(iters, updates, steps_per_period, total_periods, total_env_steps, log_periods,
                num_envs * math.ceil(log_periods * iters / 2), schedule_env_steps, decay)


def with_derived(cfg: Config) -> Config:
    """`cfg` with the epsilon decay it runs with written into `epsilon_decay_steps` when `exploration_fraction`
    derives it, as config.json records it (the fraction stays, so the value is derived again the same way)."""
    decay = plan(cfg).epsilon_decay_steps
    return cfg if decay == cfg.exploration.epsilon_decay_steps else replace(cfg, epsilon_decay_steps=decay)


@functools.cache
def leaf_paths(settings_type: type) -> dict[str, tuple[str, ...]]:
    """Flat name -> attribute path of every leaf field of a Config whose settings are `settings_type`."""
    paths: dict[str, tuple[str, ...]] = {}

    def walk(cls, prefix):
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            hint = settings_type if isinstance(hints[f.name], TypeVar) else hints[f.name]
            if isinstance(hint, type) and dataclasses.is_dataclass(hint):
                walk(hint, prefix + (f.name,))
            elif f.name in paths:
                raise ConfigError(f"{f.name}: {settings_type.__name__} repeats the field name of "
                                  f"{'.'.join(paths[f.name])}; field names must be unique across sections")
            else:
                paths[f.name] = prefix + (f.name,)

    walk(Config, ())
    return paths


def unknown_field(names, known, settings_type: type) -> ConfigError:
    """The ConfigError for the first of `names` that is not among the `known` flat names, with the closest ones."""
    name = sorted(names)[0]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"closest: {', '.join(close)}" if close else "see `jaxdqn train --help` for the fields"
    return ConfigError(f"{name}: not a field of a config with {settings_type.__name__}; {hint}")


def field_hint(settings_type: type, name: str):
    """The annotation of the field with flat name `name` in a Config whose settings are `settings_type`."""
    *sections, leaf = leaf_paths(settings_type)[name]
    cls = Config
    for section in sections:
        hint = _hints(cls)[section]
        cls = settings_type if isinstance(hint, TypeVar) else hint
    return _hints(cls)[leaf]


def from_flat(values: dict, settings_type: type = DQNSettings) -> Config:
    """A Config with `settings_type` settings from flat names -> values (missing ones keep their defaults)."""
    paths = leaf_paths(settings_type)
    unknown = set(values) - set(paths)
    if unknown:
        raise unknown_field(unknown, paths, settings_type)

    def build(cls, prefix, defaults=None):
        # `defaults`: the section's default as its parent declares it (PQN's network has LayerNorm on), or None
        hints, kwargs = _hints(cls), {}
        for f in dataclasses.fields(cls):
            generic = isinstance(hints[f.name], TypeVar)
            hint = settings_type if generic else hints[f.name]
            if isinstance(hint, type) and dataclasses.is_dataclass(hint):
                if defaults is not None:
                    nested = getattr(defaults, f.name)
                elif not generic and f.default_factory is not dataclasses.MISSING:
                    with unchecked():
                        nested = f.default_factory()
                else:
                    nested = None
                kwargs[f.name] = build(hint, prefix + (f.name,), nested)
            elif f.name in values:
                kwargs[f.name] = values[f.name]
            elif defaults is not None:
                kwargs[f.name] = getattr(defaults, f.name)
        return cls(**kwargs)

    return build(Config, ())


def flat_dict(cfg: Config) -> dict:
    """Flat name -> value of every leaf field of `cfg` ("agent" first)."""
    values = {}
    for name, path in leaf_paths(type(cfg.settings)).items():
        value = cfg
        for attribute in path:
            value = getattr(value, attribute)
        values[name] = value
    return values


def replace(cfg: Config, **flat) -> Config:
    """A copy of `cfg` with the fields named flat (learning_rate=..., num_envs=...) changed wherever they live."""
    values = flat_dict(cfg)
    unknown = set(flat) - set(values)
    if unknown:
        raise unknown_field(unknown, values, type(cfg.settings))
    return from_flat({**values, **flat}, type(cfg.settings))


def to_dict(cfg: Config) -> dict:
    """The config as a JSON-ready dict nested by section, with "format": 2 (what config.json holds)."""

    def plain(value):
        if _is_section(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return list(value) if isinstance(value, tuple) else value

    return {"format": FORMAT, **plain(cfg)}


FORMAT1_FIELDS = frozenset(leaf_paths(DQNSettings)) | frozenset(leaf_paths(TabularSettings))
"""The keys of a format-1 (flat) config.json: one dict held the fields of both agents."""

_FORMAT1_SETTINGS = {"dqn": DQNSettings, "tabular": TabularSettings}
# The agents of format 1, so their files load without the registry; other agents pass settings_type.


def from_dict(data: dict, settings_type: type | None = None) -> Config:
    """Rebuild a Config from `to_dict` output, or from a flat format-1 config.json of earlier versions.

    `settings_type` is the agent's settings dataclass (jaxdqn.config.build.settings_type(agent)); it may be
    left out for the dqn and tabular agents.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"config: must be a JSON object (got {type(data).__name__})")
    version = data.get("format", 1)
    agent = data.get("agent", "dqn")
    if settings_type is None:
        if agent not in _FORMAT1_SETTINGS:
            raise ConfigError(f"agent: loading a config of agent {agent!r} needs its settings type "
                              "(from_dict(data, settings_type=...))")
        settings_type = _FORMAT1_SETTINGS[agent]
    if version == 1:
        known = leaf_paths(settings_type)
        unknown = set(data) - set(known) - FORMAT1_FIELDS
        if unknown:
            raise ConfigError(f"config: unknown fields {sorted(unknown)}")
        # format 1 also held the other agent's fields, at their defaults: they are dropped
        return from_flat({k: v for k, v in data.items() if k in known}, settings_type)
    if version != FORMAT:
        raise ConfigError(f"format: this jaxdqn reads config formats 1 and {FORMAT} (got {version!r}); "
                          "a newer jaxdqn wrote it")
    flat: dict = {}

    def collect(section: dict, where: str):
        for key, value in section.items():
            if isinstance(value, dict):
                collect(value, key)
            elif key in flat:
                raise ConfigError(f"{key}: appears twice in the config (again in {where})")
            else:
                flat[key] = value

    collect({k: v for k, v in data.items() if k != "format"}, "config")
    return from_flat(flat, settings_type)
