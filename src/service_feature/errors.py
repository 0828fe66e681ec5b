"""What a step's failure means for the work, in three words: retry, fail, or dead-letter.

Every service step ends in one of these or succeeds. The services' own errors (git's, the model's, the
sandbox's) are sorted into them where they are caught, so the step skeleton and the bus decide the same way
for every service.
"""

from __future__ import annotations


class StepError(Exception):
    """A step did not complete; the subclass says what happens next."""


class TransientError(StepError):
    """Worth retrying as it is (a timeout, a remote that did not answer): the message is handed back and
    redelivered with back-off; once the delivery limit is reached, the feature fails with this reason.
    `retry_after`: how long the remote asked to be left alone (seconds), when it said."""

    retry_after: float | None = None


class PermanentError(StepError):
    """Retrying cannot help (a branch that does not exist, a patch that is refused): the feature fails now,
    with this message as its reason, which says what failed and what to do."""


class PoisonMessage(StepError):
    """The message itself can never be handled (it does not validate, or names no feature): it goes to the
    dead-letter subject with this reason."""
