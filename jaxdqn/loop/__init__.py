"""The compiled loop shared by every agent and environment backend."""
