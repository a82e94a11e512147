"""SIGINT/SIGTERM as requests to stop after the current chunk (with a checkpoint)."""

from __future__ import annotations

import signal
import threading


class StopSignals:
    """Records SIGINT/SIGTERM while installed (a context manager) so the driver can stop after the current chunk.

    A second signal raises KeyboardInterrupt at once; the last complete checkpoint stays valid.
    """

    def __init__(self):
        self.received: list[int] = []
        self.previous = {}

    def _handle(self, signum, _frame):
        if self.received:
            raise KeyboardInterrupt
        self.received.append(signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    @property
    def number(self) -> int:
        """The first signal received; SIGTERM when only another process of the run received one."""
        return self.received[0] if self.received else int(signal.SIGTERM)

    @property
    def name(self) -> str:
        """The name of the first signal received (SIGINT, SIGTERM)."""
        return signal.Signals(self.number).name
