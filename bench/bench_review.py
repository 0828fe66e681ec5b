"""Benchmark of the reviewer: accuracy on the labelled corpus and time per 1,000 changed lines.

Run from the repository root:  .venv/bin/python -m bench.bench_review [--repeat 3] [--held-out [BATCH]]

`--held-out` reports the tuning part and the held-out part of the corpus (cases marked `held_out: true`,
never tuned on) separately, and skips the timing; `--held-out heldout3` reports only the held-out cases whose
name starts with `heldout3` (one blind batch) next to the tuning part.
Class-labelled cases (`labels: classes`) are scored by the class of each finding (`finding_class`).

Accuracy: each case's findings (as a set of rule ids) against its labels (`expected.rules`, the truth, not
the `known_gap` the corpus test pins), as precision and recall per category and overall, and the share of
cases whose decision is the right one.

Time: the review of every corpus case, and of a synthetic clean patch of a few thousand lines, per 1,000
changed lines. Absolute times depend on the machine, so the same run also times two baselines on the same
patches, `git apply --check` and parsing the diff alone, and prints the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import yaml

from service_feature.diffs import parse_diff
from service_feature.models import Decision
from service_feature.reviewer.review import ReviewInput, ReviewPolicy, review
from tests.support.review_corpus import (
    CORPUS_DIR,
    Case,
    Checkouts,
    build,
    case_names,
    materialise,
    run_result,
)

CATEGORIES = {
    "secrets": "secrets",
    "bandit": "security",
    "semgrep": "security",
    "policy": "policy",
    "architecture": "architecture",
    "tests": "tests",
}


def category(rule_id: str) -> str:
    return CATEGORIES.get(rule_id.split(".", 1)[0], "quality")


def accuracy(cases: list[Case]) -> None:
    counts: dict[str, Counter[str]] = {}
    right_decisions = 0
    made: Counter[Decision] = Counter()
    wrong_approvals: list[str] = []
    for case in cases:
        result = review(case.subject, case.policy)
        found = case.found(result.findings)
        right_decisions += result.decision is case.decision
        if result.decision is not case.decision:
            made[result.decision] += 1
            if result.decision is Decision.approve:
                wrong_approvals.append(case.name)
        outcomes = {"tp": found & case.rules, "fp": found - case.rules, "fn": case.rules - found}
        for outcome, rules in outcomes.items():
            for rule in rules:
                for key in (category(rule), "overall"):
                    counts.setdefault(key, Counter())[outcome] += 1
    print(f"{'category':<14}{'TP':>5}{'FP':>5}{'FN':>5}{'precision':>11}{'recall':>8}")
    for key in sorted(counts, key=lambda name: (name == "overall", name)):
        tp, fp, fn = counts[key]["tp"], counts[key]["fp"], counts[key]["fn"]
        print(f"{key:<14}{tp:>5}{fp:>5}{fn:>5}{_ratio(tp, tp + fp):>11}{_ratio(tp, tp + fn):>8}")
    print(f"decisions right: {right_decisions}/{len(cases)} ({right_decisions / len(cases):.0%})")
    if made:
        print("  wrong decisions made:", ", ".join(f"{n} {decision}" for decision, n in made.items()))
    # A case that should have gone to a person or been rejected, approved: the failure that costs most.
    print(f"  wrong approvals of a patch with an issue: {len(wrong_approvals)}", *wrong_approvals)


def timing(patches: list[tuple[str, ReviewInput, ReviewPolicy, Path]], repeat: int) -> None:
    lines = sum(change.changed_lines for _, subject, _, _ in patches for change in parse_diff(subject.diff))

    def each(run: Callable[[ReviewInput, ReviewPolicy, Path], object]) -> float:
        rounds = []
        for _ in range(repeat):
            start = time.perf_counter()
            for _, subject, policy, base in patches:
                run(subject, policy, base)
            rounds.append(time.perf_counter() - start)
        return statistics.median(rounds)

    reviewed = each(lambda subject, policy, base: review(subject, policy))
    applied = each(lambda subject, policy, base: _apply_check(subject.diff, base))
    parsed = each(lambda subject, policy, base: parse_diff(subject.diff))
    per_k = 1000 / lines
    print(f"  {len(patches)} patch(es), {lines} changed lines, median of {repeat}")
    print(f"  review            {reviewed * per_k:8.3f} s per 1,000 lines ({reviewed:.2f} s in all)")
    print(f"  git apply --check {applied * per_k:8.3f} s per 1,000 lines: review {reviewed / applied:5.1f}x")
    print(f"  parse only        {parsed * per_k:8.4f} s per 1,000 lines: review {reviewed / parsed:5.0f}x")


def synthetic(workdir: Path, files: int = 20, functions: int = 30) -> Checkouts:
    """A clean patch: new modules of small typed functions, the shape of an agent's feature."""
    base = {"app/__init__.py": ""}
    patch = {
        f"app/module_{index}.py": "\n\n".join(
            f"def compute_{index}_{number}(values: list[int]) -> int:\n"
            f'    """Sum of the values above {number}."""\n'
            f"    return sum(value for value in values if value > {number})\n"
            for number in range(functions)
        )
        for index in range(files)
    }
    return build(base, dict(patch), workdir)


def _apply_check(diff: str, base: Path) -> None:
    command = ["git", "apply", "--check", "--whitespace=nowarn", "-"]
    subprocess.run(command, cwd=base, input=diff.encode(), check=True)


def _is_held_out(name: str) -> bool:
    raw = yaml.safe_load((CORPUS_DIR / f"{name}.yml").read_text(encoding="utf-8"))
    return bool(raw.get("held_out", False))


def _ratio(numerator: int, denominator: int) -> str:
    return f"{numerator / denominator:.2f}" if denominator else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timing rounds; the median is printed")
    parser.add_argument(
        "--held-out",
        nargs="?",
        const="",
        default=None,
        metavar="BATCH",
        help="the tuning and held-out parts apart; BATCH: only held-out cases whose name starts with it",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-review-") as tmp:
        root = Path(tmp)
        batch: str | None = args.held_out
        names = case_names()
        if batch:
            names = [name for name in names if name.startswith(batch) or not _is_held_out(name)]
        cases = [materialise(name, root / name) for name in names]
        if batch is not None:
            held_part = f"held-out part ({batch}*)" if batch else "held-out part"
            for held, part in ((False, "tuning part"), (True, held_part)):
                chosen = [case for case in cases if case.held_out is held]
                clean = sum(case.decision is Decision.approve for case in chosen)
                print(f"\nAccuracy on the {part}: {len(chosen)} cases, {clean} clean")
                accuracy(chosen)
            return
        print(f"Accuracy on {len(cases)} labelled cases (labels: the truth, including known gaps)")
        accuracy(cases)
        print("\nTime on the corpus (small patches: fixed costs such as starting bandit dominate)")
        timing([(c.name, c.subject, c.policy, c.subject.base_tree or root) for c in cases], args.repeat)
        big = synthetic(root / "synthetic")
        spec = cases[0].subject.specification
        subject = ReviewInput(spec, big.diff, run_result({}), patched_tree=big.patched, base_tree=big.base)
        print("\nTime on one synthetic clean patch")
        timing([("synthetic", subject, ReviewPolicy(max_changed_lines=100_000), big.base)], args.repeat)
        decision = review(subject, ReviewPolicy(max_changed_lines=100_000)).decision
        assert decision is Decision.approve, decision  # the synthetic patch must stay clean to mean anything


if __name__ == "__main__":
    main()
