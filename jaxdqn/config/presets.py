"""The named presets: each reproduces a reference experiment; `PRESET_DOCS` says which and what differs."""

from __future__ import annotations

from jaxdqn.config.schema import Config, ConfigError, DQNSettings, PQNSettings, TabularSettings, from_flat

_SETTINGS = {"dqn": DQNSettings, "pqn": PQNSettings, "tabular": TabularSettings}
# the built-in agents' settings (the registry imports the agents, which import this module's package)


def make_config(agent: str = "dqn", **flat) -> Config:
    """A preset's Config from flat field names (only the built-in agents' settings are needed here)."""
    return from_flat({**flat, "agent": agent}, _SETTINGS[agent])


_LUNAR = dict(env_id="LunarLander-v3", total_steps=400_000, num_envs=4, train_frequency=4, gradient_steps=2,
              learning_starts=5_000, batch_size=128, learning_rate=2.5e-4, gamma=0.99, target_update_period=250,
              hidden_sizes=(128, 128), epsilon_schedule="exponential", epsilon_start=1.0, epsilon_end=0.01,
              exploration_fraction=0.25, solved_return=200.0, log_interval=20_000, eval_episodes=100)
# the two LunarLander presets share their loop, network size and exploration

PRESETS: dict[str, Config] = {
    "cartpole": make_config(solved_return=475.0, exploration_fraction=0.5),
    "lunarlander": make_config(**_LUNAR, buffer_size=50_000, loss="l2", clip_grad_value=100.0),
    "lunarlander-per": make_config(
        **_LUNAR, buffer_size=100_000, loss="huber", max_grad_norm=10.0, double_q=True, dueling=True,
        prioritized=True, priority_alpha=0.5, priority_beta0=0.4),
    "highway": make_config(
        env_id="highway-fast-v0", total_steps=10_000, num_envs=1, train_frequency=1, gradient_steps=1,
        learning_starts=64, buffer_size=15_000, batch_size=64, learning_rate=1e-3, gamma=0.8,
        target_update_period=50, hidden_sizes=(128,), dueling=True, dueling_hidden=128, loss="huber",
        max_grad_norm=10.0, epsilon_schedule="linear", epsilon_start=1.0, epsilon_end=0.1,
        exploration_fraction=0.4064, log_interval=1_000, eval_episodes=100),
    "frozenlake": make_config(
        agent="tabular", env_id="FrozenLake-v1", tabular_alpha=0.2, tabular_alpha_end=0.0, gamma=0.99,
        total_steps=100_000, num_envs=8, learning_starts=0, epsilon_schedule="constant", epsilon_start=1.0,
        log_interval=10_000, eval_episodes=1_000),
    "pong": make_config(
        env_id="Pong-v5", torso="nature_cnn", hidden_sizes=(512,), total_steps=2_000_000, num_envs=1,
        train_frequency=1, gradient_steps=1, learning_starts=10_000, buffer_size=10_000, batch_size=32,
        learning_rate=1e-4, gamma=0.99, target_update_period=1_000, loss="l2", epsilon_schedule="linear",
        epsilon_start=1.0, epsilon_end=0.01, exploration_fraction=0.075, solved_return=19.0,
        stop_when_solved=True, log_interval=10_000, eval_episodes=10, eval_epsilon=0.0,
        repeat_action_probability=0.0),
    "breakout": make_config(
        env_id="Breakout-v5", torso="nature_cnn", hidden_sizes=(512,), dueling=True, dueling_hidden=256,
        double_q=True, prioritized=True, buffer_size=2**14, priority_alpha=0.6, priority_beta0=0.4,
        num_envs=8, train_frequency=32, gradient_steps=8, batch_size=32, target_update_period=2_000,
        learning_starts=2**14, epsilon_schedule="piecewise", epsilon_boundaries=(0, 800_000, 5_000_000),
        epsilon_values=(1.0, 0.1, 0.01), learning_rate=1e-4, max_grad_norm=0.5, loss="huber", gamma=0.99,
        total_steps=10_000_000, log_interval=50_000, eval_episodes=10, eval_epsilon=0.05,
        repeat_action_probability=0.0),
    "atlantis": make_config(
        env_id="Atlantis-v5", torso="nature_cnn", hidden_sizes=(), dueling=True, dueling_hidden=512,
        double_q=True, prioritized=True, priority_alpha=0.5, priority_beta0=0.4, buffer_size=1_000_000,
        batch_size=64, num_envs=4, train_frequency=4, gradient_steps=1, learning_rate=1e-4, gamma=0.99,
        target_update_period=2_500, loss="huber", max_grad_norm=10.0, epsilon_schedule="exponential",
        epsilon_start=1.0, epsilon_end=0.01, exploration_fraction=0.1, learning_starts=50_000,
        total_steps=10_000_000, log_interval=50_000, eval_episodes=10, eval_epsilon=0.05,
        repeat_action_probability=0.25),
    "c51-cartpole": make_config(
        solved_return=475.0, exploration_fraction=0.5, distributional="c51", num_atoms=101, v_min=-100.0,
        v_max=100.0, adam_eps=0.01 / 128),
    "qrdqn-cartpole": make_config(
        distributional="qr", num_atoms=10, hidden_sizes=(256, 256), total_steps=50_000, num_envs=1,
        train_frequency=256, gradient_steps=128, learning_starts=1_000, buffer_size=100_000, batch_size=64,
        learning_rate=2.3e-3, gamma=0.99, target_update_period=128, max_grad_norm=10.0,
        epsilon_schedule="linear", epsilon_start=1.0, epsilon_end=0.04, exploration_fraction=0.16,
        solved_return=475.0, log_interval=5_000),
    "rainbow-cartpole": make_config(
        solved_return=475.0, distributional="c51", num_atoms=51, v_min=-100.0, v_max=100.0, noisy=True,
        noisy_sigma0=0.5, double_q=True, dueling=True, prioritized=True, priority_alpha=0.5, priority_beta0=0.4,
        n_step=3, adam_eps=1.5e-4, epsilon_schedule="constant", epsilon_start=0.0, epsilon_end=0.0),
    "rainbow-pong": make_config(
        env_id="Pong-v5", torso="nature_cnn", hidden_sizes=(), dueling=True, dueling_hidden=512, double_q=True,
        distributional="c51", num_atoms=51, v_min=-10.0, v_max=10.0, noisy=True, noisy_sigma0=0.5, n_step=3,
        prioritized=True, priority_alpha=0.5, priority_beta0=0.4, buffer_size=1_000_000, batch_size=32,
        num_envs=4, train_frequency=4, gradient_steps=1, learning_starts=20_000, target_update_period=2_000,
        learning_rate=6.25e-5, adam_eps=1.5e-4, gamma=0.99, epsilon_schedule="constant", epsilon_start=0.0,
        epsilon_end=0.0, total_steps=10_000_000, solved_return=19.0, log_interval=50_000, eval_episodes=10,
        eval_epsilon=0.0, repeat_action_probability=0.0),
    "pqn-cartpole": make_config(
        agent="pqn", total_steps=500_000, num_envs=4, train_frequency=512, learning_starts=0, update_epochs=4,
        num_minibatches=4, learning_rate=2.5e-4, anneal_lr=True, gamma=0.99, q_lambda=0.65, max_grad_norm=10.0,
        epsilon_schedule="linear", epsilon_start=1.0, epsilon_end=0.05, exploration_fraction=0.5,
        solved_return=475.0, log_interval=10_240),
    "pqn-breakout": make_config(
        agent="pqn", env_id="Breakout-v5", torso="nature_cnn", hidden_sizes=(512,), total_steps=10_000_000,
        num_envs=8, train_frequency=1024, learning_starts=0, update_epochs=4, num_minibatches=4,
        learning_rate=2.5e-4, anneal_lr=True, gamma=0.99, q_lambda=0.65, max_grad_norm=10.0,
        epsilon_schedule="linear", epsilon_start=1.0, epsilon_end=0.01, exploration_fraction=0.1,
        log_interval=51_200, eval_episodes=10, eval_epsilon=0.0, repeat_action_probability=0.0),
}
"""Named configurations; `jaxdqn presets` lists them."""

PRESET_TITLES: dict[str, str] = {
    "cartpole": "CleanRL's dqn_jax.py defaults",
    "lunarlander": "seed 003's DQN (MLP 128-128, L2, clip by value)",
    "lunarlander-per": "seed 001's double DQN + dueling + prioritized replay",
    "highway": "seed 000's dueling DQN (gamma 0.8, smooth-L1)",
    "frozenlake": "seed 002's tabular Q-learning, random exploration",
    "pong": "seed 002's Nature DQN; stops at a 100-game mean of 19",
    "breakout": "seed 004: Nature CNN, dueling, double Q, prioritized",
    "atlantis": "seed 001's double + prioritized + dueling DQN, 1M buffer",
    "c51-cartpole": "C51 with CleanRL's c51.py settings",
    "qrdqn-cartpole": "QR-DQN with rl-baselines3-zoo's CartPole-v1 settings",
    "rainbow-cartpole": "Rainbow's six parts on the cartpole preset's loop",
    "rainbow-pong": "Rainbow (Hessel et al. 2018) on Pong-v5",
    "pqn-cartpole": "PQN with CleanRL's pqn.py settings",
    "pqn-breakout": "PQN with CleanRL's pqn_atari_envpool.py settings",
}
"""A few words per preset for the `jaxdqn presets` list; PRESET_DOCS has the whole description."""

PRESET_DOCS: dict[str, str] = {
    "cartpole": (
        "CartPole-v1 with CleanRL's dqn_jax.py defaults: 500k steps, buffer 10k, batch 128, Adam 2.5e-4, an update "
        "every 10 steps from step 10k, target copied every 500 steps, eps 1->0.05 linear over 250k, L2, MLP 120-84. "
        "Added: solved at a 100-episode mean of 475 (CartPole-v1's registered threshold)"
    ),
    "lunarlander": (
        "LunarLander-v3, seed 003's DQN lab: MLP 128-128, gamma 0.99, batch 128, MSE (L2), gradients clipped by "
        "value at 100, exponential eps 1->0.01; solved at a 100-episode mean of 200. Differs from the seed: "
        "Adam 2.5e-4 (seed 1e-4), buffer 50k (seed 10k), 4 envs with 2 updates per 4 steps from step 5k (seed: "
        "1 env, 1 update per step), target copied every 250 updates (seed: every 100 steps), eps decayed over "
        "100k steps (seed: x0.995 per episode), 400k steps (seed: 500 episodes); greedy eval over 100 episodes"
    ),
    "lunarlander-per": (
        "LunarLander-v3, seed 001's agent: double DQN + dueling head + proportional prioritized replay (alpha "
        "0.5, beta from 0.4 to 1), gamma 0.99, exponential eps to 0.01; solved at a 100-episode mean of 200. "
        "Differs from the seed: buffer 100k (seed 1M), batch 128 (seed 64), Adam 2.5e-4 (seed 1e-3), 4 envs with "
        "2 updates per 4 steps (seed: 1 update per 4 steps), target copied every 250 updates (seed: synchronised "
        "after every update), Huber loss with gradient norm clip 10 (seed: weighted squared error), beta linear "
        "in steps (seed: 1-exp(-0.01 episode)), eps decayed over 100k steps (seed: 0.99^episode), MLP 128-128, "
        "400k steps; greedy eval over 100 episodes"
    ),
    "highway": (
        "highway-fast-v0, seed 000's Dueling DQN: MLP 128 then 128-wide value and advantage streams, gamma 0.8, "
        "batch 64, buffer 15k, Adam 1e-3, hard target copy every 50 updates, smooth-L1 (Huber), gradient norm "
        "clip 10, 1 env, 1 update per step from step 64, eps 1.0->0.1 linear, 10k steps. Differs from the seed: "
        "eps decays over 4,064 steps (the seed's 4k updates counted in steps); greedy eval over 100 episodes"
    ),
    "frozenlake": (
        "FrozenLake-v1 (slippery), seed 002's tabular Q-learning with random exploration (eps 1). Differs from "
        "the seed: gamma 0.99 (seed 0.9), alpha 0.2 decaying linearly to 0 (seed: constant 0.2), 8 envs, 100k "
        "steps; greedy eval over 1,000 episodes (seed: 20), where a mean return (success rate) above 0.7 counts "
        "as solved (seed: 0.8): the best policy succeeds about 0.74 of the time within the 100-step limit"
    ),
    "pong": (
        "Pong-v5, seed 002's DQN: Nature CNN (512), 84x84 grey, skip 4 with max pooling, stack 4, fire reset; "
        "1 update per step, batch 32, buffer 10k, start 10k, Adam 1e-4, target every 1k updates, eps 1->0.01 "
        "linear over 150k, MSE (L2); stops when the 100-episode mean reaches 19 (at most 2M steps). Protocol: "
        "no sticky actions (the seed's PongNoFrameskip-v4, as the Nature DQN), greedy evaluation. Differs from the "
        "seed: up to 30 no-op starts (EnvPool's standard Atari preprocessing)"
    ),
    "breakout": (
        "Breakout-v5, seed 004 (labml): Nature CNN, dueling 512->256->V/A, double Q, PER 2^14 alpha 0.6 beta "
        "0.4->1, 8 envs x 4 steps per update with 8 epochs of batch 32, target every 250 updates (2,000 gradient "
        "steps), eps 1->0.1 at 800k steps (the seed's 25k updates)->0.01 at 5M, Adam 1e-4 (the rate the seed sets "
        "before every step; its optimiser's 2.5e-4 is never used), grad norm 0.5, Huber, learning from a full "
        "buffer; episodic life, clipped rewards. Protocol: no sticky actions (the seed's NoFrameskip-v4, as the "
        "Nature DQN), evaluation at eps 0.05 (the Nature DQN's). Differs from the seed: 10M steps (seed: 1M "
        "updates = 32M steps, eps at half of that)"
    ),
    "atlantis": (
        "Atlantis-v5, seed 001's agent: double DQN + PER (alpha 0.5, beta 0.4->1) + dueling (separate 512 "
        "streams on the Nature CNN features), buffer 1M (about 7.1 GB with the frame replay), batch 64, "
        "1 update per 4 steps (4 envs), exponential eps 1->0.01 over 1M steps, 10M steps. Differs from the "
        "seed: target copied every 2,500 updates (seed: synchronised after every update), Adam 1e-4 (seed "
        "1e-3), Huber with grad norm 10 (seed: weighted squared error), learning from 50k steps, episodic life "
        "and clipped rewards, beta linear in steps (seed: 1-exp(-0.01 episode)), the Nature CNN's 3x3 last "
        "conv (seed 2x2), the standard preprocessing with frame skip 4 (the seed's gym 0.17 Atlantis-v0 skips 2-4 "
        "frames at random, on raw frames). Protocol: sticky actions 0.25 (as the seed's Atlantis-v0, Machado et "
        "al. 2018 and Dopamine), evaluation at eps 0.05 (the Nature DQN's)"
    ),
    "c51-cartpole": (
        "CartPole-v1, C51 (Bellemare et al. 2017) with CleanRL's c51.py settings: 101 atoms on [-100, 100], Adam "
        "2.5e-4 with eps 0.01/128, the cartpole preset's loop (500k steps, buffer 10k, batch 128, an update every "
        "10 steps from step 10k, target copied every 500 steps, eps 1->0.05 over half the run); solved at a "
        "100-episode mean of 475"
    ),
    "qrdqn-cartpole": (
        "CartPole-v1, QR-DQN (Dabney et al. 2017) with rl-baselines3-zoo's settings for sb3-contrib's QRDQN: "
        "10 quantiles, quantile Huber loss with kappa 1, MLP 256-256, 50k steps, buffer 100k, batch 64, Adam "
        "2.3e-3, gradient norm clip 10, 128 updates after every 256 steps from step 1k, the target copied after "
        "each block of 128 updates (the zoo's every 10 steps, which sb3 applies between blocks), eps 1->0.04 "
        "linear over the first 16% of the run; solved at a 100-episode mean of 475. The cartpole preset's loop "
        "(MLP 120-84, 51 quantiles, batch 128, a target copy every 50 updates) diverges with QR-DQN: its Q-values "
        "pass 100, CartPole's largest discounted return, within 40k steps. Over 10 seeds 5 end at a greedy 500 (mean "
        "340; benchmarks/results/learning-qrdqn-*.json), and running 100k steps does not change that count"
    ),
    "rainbow-cartpole": (
        "CartPole-v1, Rainbow's six parts (Hessel et al. 2018): double Q, dueling head, prioritized replay (alpha "
        "0.5, beta 0.4->1), 3-step returns, C51 (51 atoms on [-100, 100]) and noisy layers (sigma0 0.5, epsilon 0), "
        "Adam 2.5e-4 with eps 1.5e-4, the cartpole preset's loop; solved at a 100-episode mean of 475"
    ),
    "rainbow-pong": (
        "Pong-v5, Rainbow with Hessel et al. (2018)'s hyperparameters: Nature CNN, dueling streams of 512 (noisy, "
        "sigma0 0.5), double Q, C51 (51 atoms on [-10, 10]), 3-step returns, prioritized replay of 1M (alpha 0.5, "
        "beta 0.4->1), Adam 6.25e-5 with eps 1.5e-4, batch 32, one update per 4 steps from step 20k (80k frames), "
        "target copied every 2,000 updates (32k frames), epsilon 0, 10M steps; episodic life and clipped rewards, "
        "no sticky actions, greedy evaluation. Differs from the paper: 4 environments stepped together (the "
        "paper: 1), and the replay counts steps of 4 frames"
    ),
    "pqn-cartpole": (
        "CartPole-v1, PQN (Gallici et al. 2024) with CleanRL's pqn.py settings: 4 envs x 128 steps per rollout, "
        "4 epochs of 4 minibatches, Q(lambda 0.65) returns, gamma 0.99, RAdam 2.5e-4 annealed linearly to 0, "
        "gradient norm clip 10, MLP 120-84 with LayerNorm, eps 1->0.05 linear over half the run, 500k steps; "
        "solved at a 100-episode mean of 475. Differs from CleanRL: the returns stop at every episode's end "
        "(CleanRL's cross into the next episode with weight lambda), Flax's default initialisation (CleanRL: "
        "orthogonal), EnvPool's CartPole"
    ),
    "pqn-breakout": (
        "Breakout-v5, PQN with CleanRL's pqn_atari_envpool.py settings: Nature CNN with LayerNorm after every "
        "layer, 8 envs x 128 steps per rollout, 4 epochs of 4 minibatches, Q(lambda 0.65), gamma 0.99, RAdam "
        "2.5e-4 annealed to 0, gradient norm clip 10, eps 1->0.01 over the first 10% of 10M steps, episodic life "
        "and clipped rewards, no sticky actions, greedy evaluation. Differs from CleanRL: the returns stop at "
        "every episode's end (a lost life, with episodic life), Flax's default initialisation"
    ),
}
"""One line per preset: the experiment it reproduces and the values that differ from it."""


def get_preset(name: str) -> Config:
    """Return the preset called `name`, or raise ConfigError listing the valid names."""
    if name not in PRESETS:
        raise ConfigError(f"preset: unknown preset {name!r}; allowed: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]
