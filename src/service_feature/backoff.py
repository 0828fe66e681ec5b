"""How hard a client tries a remote that fails (a model API, a forge): one policy shape for every retry
loop in the platform; each loop keeps its own rules for what is worth retrying."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` counts the first call; waits are in seconds, `max_wait` caps each one."""

    max_attempts: int = 5
    initial_wait: float = 1.0
    max_wait: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_wait < 0 or self.max_wait < 0:
            raise ValueError("waits must not be negative")
