"""jaxdqn: DQN-family reinforcement learning compiled end to end with JAX, on EnvPool."""
