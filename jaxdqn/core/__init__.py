"""Pure functions with no I/O: losses, networks, replay, the sum tree, exploration."""
