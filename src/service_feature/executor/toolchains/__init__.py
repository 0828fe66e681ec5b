"""What each language needs to run a repository's tests: one module per language over `base.Toolchain`."""

from __future__ import annotations

from service_feature.executor.toolchains.base import (
    BASE_ENV,
    ENV_DIR,
    GO_BUILD_CACHE,
    JUNIT_FILE,
    DependencyFiles,
    Installation,
    Toolchain,
)
from service_feature.executor.toolchains.go import GoToolchain
from service_feature.executor.toolchains.node import NodeToolchain
from service_feature.executor.toolchains.python import PythonToolchain
from service_feature.executor.toolchains.rust import RustToolchain
from service_feature.models import Language

__all__ = [
    "BASE_ENV",
    "ENV_DIR",
    "GO_BUILD_CACHE",
    "JUNIT_FILE",
    "DependencyFiles",
    "GoToolchain",
    "Installation",
    "NodeToolchain",
    "PythonToolchain",
    "RustToolchain",
    "Toolchain",
    "toolchain_for",
]

_TOOLCHAINS: dict[Language, Toolchain] = {
    language: toolchain
    for toolchain in (PythonToolchain(), NodeToolchain(), GoToolchain(), RustToolchain())
    for language in toolchain.languages
}


def toolchain_for(language: Language) -> Toolchain:
    return _TOOLCHAINS[language]
