"""Base vs patched, test by test: which failures the patch caused and which were there before. Pure.

Tests are matched by name. A test's outcome in a run is "passed", "failed" (failed or errored; a name seen
more than once fails if any occurrence failed) or absent (skipped, or not run at all). The classes:

| base \\ patched | passed          | failed          | absent  |
|----------------|-----------------|-----------------|---------|
| passed         | `still_passing` | `broken`        | `removed` |
| failed         | `fixed`         | `still_failing` | `removed` |
| absent         | `new_passing`   | `new_failing`   | —       |

`TestResult.succeeded` (models.py) blocks on `broken` and `new_failing` only. Each list is sorted and capped
(`MAX_NAMES`), so a huge suite does not bloat every stored result; a non-empty class stays non-empty.
"""

from __future__ import annotations

from collections.abc import Iterable

from service_feature.models import TestCase, TestOutcome

CLASSES = ("fixed", "broken", "still_failing", "still_passing", "new_passing", "new_failing", "removed")
MAX_NAMES = 1000

_CLASS_OF: dict[tuple[bool | None, bool | None], str] = {
    (True, True): "still_passing",
    (True, False): "broken",
    (True, None): "removed",
    (False, True): "fixed",
    (False, False): "still_failing",
    (False, None): "removed",
    (None, True): "new_passing",
    (None, False): "new_failing",
}


def outcomes(cases: Iterable[TestCase]) -> dict[str, bool]:
    """Name → passed, for the tests that ran (skipped ones did not)."""
    passed: dict[str, bool] = {}
    for case in cases:
        if case.outcome is TestOutcome.skipped:
            continue
        ok = case.outcome is TestOutcome.passed
        passed[case.name] = passed.get(case.name, True) and ok
    return passed


def classify(base: Iterable[TestCase], patched: Iterable[TestCase]) -> dict[str, list[str]]:
    """Every test of either run in one class (see the module docstring)."""
    before, after = outcomes(base), outcomes(patched)
    classes: dict[str, list[str]] = {name: [] for name in CLASSES}
    for name in sorted({*before, *after}):
        classes[_CLASS_OF[(before.get(name), after.get(name))]].append(name)
    return {name: names[:MAX_NAMES] for name, names in classes.items()}
