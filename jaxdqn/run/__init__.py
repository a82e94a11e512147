"""The host side of a run: the driver, its recorder, checkpoints, resume and signals."""
