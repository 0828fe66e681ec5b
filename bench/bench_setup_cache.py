"""The dependency cache's effect: the first feature on a repository installs its dependencies (networked
setup) and runs the base commit's tests; the second, with the same dependency files and base, reuses both.

For each language with its toolchain installed, a tiny project (python: `six` from PyPI; javascript:
`is-number` from npm, `npm ci`; go and rust: no dependencies) runs twice through TestRunner with the real
bubblewrap sandbox and a fresh cache; printed per run: wall time, setup time, test time, and whether the
environment and the baseline came from the cache. Needs bubblewrap and the registries.

    .venv/bin/python bench/bench_setup_cache.py [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from service_feature.executor.runner import RunSpec, TestRunner
from service_feature.executor.sandbox.base import Limits
from service_feature.executor.sandbox.bwrap import BwrapSandbox
from service_feature.executor.toolchains import toolchain_for
from service_feature.git import Git
from service_feature.models import Language
from tests.support.projects import npm_project

LIMITS = Limits(wall_seconds=300, memory_mb=2048, pids=512, cpu_seconds=600, tmp_size_mb=512)
PROJECTS: dict[Language, dict[str, str]] = {
    Language.python: {
        "requirements.txt": "six==1.17.0\n",
        "test_app.py": "import six\n\n\ndef test_six():\n    assert six.PY3\n",
    },
    Language.javascript: {
        **npm_project("b"),
        "test/n.test.js": "const t = require('node:test');\nt('n', () => require('is-number')(1));\n",
    },
    Language.go: {
        "go.mod": "module example.com/b\n\ngo 1.19\n",
        "b_test.go": 'package b\n\nimport "testing"\n\nfunc TestB(t *testing.T) {}\n',
    },
    Language.rust: {
        "Cargo.toml": '[package]\nname = "b"\nversion = "0.1.0"\nedition = "2021"\n',
        "src/lib.rs": "#[cfg(test)]\nmod tests {\n    #[test]\n    fn b() {}\n}\n",
    },
}


def origin(path: Path, files: dict[str, str]) -> str:
    for name, content in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "base"]):
        subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@b", *args], cwd=path, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, check=True, capture_output=True, text=True
    ).stdout.strip()


async def feature_pair(language: Language, scratch: Path, cache: Path) -> list[tuple[float, float, float]]:
    """(wall, setup, tests) seconds of the first and the second feature on one fresh repository."""
    repository = scratch / "origin"
    repository.mkdir()
    commit = origin(repository, PROJECTS[language])
    runner = TestRunner(
        Git(scratch / "executor", allow_local=True),
        BwrapSandbox(),
        LIMITS,
        1,
        setup_sandbox=BwrapSandbox(network=True),
        cache_root=cache,
    )
    timings = []
    for index in range(2):
        spec = RunSpec(
            execution_id=f"bench{index}",
            repository_url=str(repository),
            base_commit=commit,
            diff="",
            language=language,
        )
        started = time.perf_counter()
        result = await runner.run(spec)
        wall = time.perf_counter() - started
        assert result.environment is not None
        assert result.baseline is not None
        if result.passed == 0 or result.environment["cached"] != bool(index):
            raise SystemExit(f"{language} run {index + 1} went wrong:\n{result.output_tail}")
        setup = float(result.environment["setup_seconds"])
        timings.append((wall, setup, result.duration_seconds))
        hits = f"env {'hit ' if result.environment['cached'] else 'miss'}, "
        hits += f"baseline {'hit ' if result.baseline['cached'] else 'miss'}"
        print(
            f"  {language.value:<10} feature {index + 1}: wall {wall:6.2f} s   setup {setup:6.2f} s   "
            f"tests {result.duration_seconds:5.2f} s   ({hits})"
        )
    return timings


async def main(rounds: int) -> None:
    cache_base = Path(tempfile.mkdtemp(prefix="sf-bench-cache-"))
    summary: dict[Language, list[list[tuple[float, float, float]]]] = {}
    try:
        for language in PROJECTS:
            if missing := toolchain_for(language).missing():
                print(f"  {language.value:<10} skipped: {missing}")
                continue
            for round_ in range(rounds):
                with tempfile.TemporaryDirectory() as scratch:
                    pair = await feature_pair(
                        language, Path(scratch), cache_base / f"{language.value}-{round_}"
                    )
                summary.setdefault(language, []).append(pair)
    finally:
        shutil.rmtree(cache_base, ignore_errors=True)
    print("\nmedian over rounds: first feature → second feature (wall time; setup time)")
    for language, pairs in summary.items():
        first = statistics.median(p[0][0] for p in pairs)
        second = statistics.median(p[1][0] for p in pairs)
        setup = statistics.median(p[0][1] for p in pairs)
        print(
            f"  {language.value:<10} {first:6.2f} s → {second:6.2f} s  ({first / second:4.1f}x; "
            f"setup {setup:5.2f} s → 0)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    asyncio.run(main(parser.parse_args().rounds))
