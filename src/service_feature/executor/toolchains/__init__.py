"""What each language needs to run a repository's tests: one module per language over `base.Toolchain`."""

from __future__ import annotations

from service_feature.executor.toolchains.base import (
    BASE_ENV,
    ENV_DIR,
    GO_BUILD_CACHE,
    JUNIT_FILE,
    DependencyFiles,
    Installation,
    SetupStep,
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
    "SetupStep",
    "Toolchain",
    "toolchain_for",
    "unavailable_languages",
]

_TOOLCHAINS: dict[Language, Toolchain] = {
    language: toolchain
    for toolchain in (PythonToolchain(), NodeToolchain(), GoToolchain(), RustToolchain())
    for language in toolchain.languages
}


def toolchain_for(language: Language) -> Toolchain:
    return _TOOLCHAINS[language]


def unavailable_languages() -> dict[Language, str]:
    """Each language whose toolchain is not usable on this executor, with why (for its start-up log and
    readiness): a repository in one of them would only get that reason back as its test result."""
    return {
        language: reason for language, toolchain in _TOOLCHAINS.items() if (reason := toolchain.missing())
    }
