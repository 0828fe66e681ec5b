"""An operator's override for one repository: `.service-feature.yml` at the root of the base commit.

    setup:                # run in the setup sandbox (network) after the detected setup, in order
      - make generated-files
    test_command: pytest -x tests/unit
    python: "3.12"        # the interpreter's version, instead of the one requires-python would choose

Detection is the default; this file is for the repositories it gets wrong. It is read from the *base*
commit and is one of the dependency files (its contents are part of the environment's key, and a patch that
changes it is flagged like any dependency change). A request's own `test_command` still wins over the file's.
"""

from __future__ import annotations

from collections.abc import Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

OVERRIDES_FILE = ".service-feature.yml"


class InvalidOverrides(ValueError):
    """The file is not valid YAML or does not match the schema; the message says where."""


class RepositoryOverrides(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    setup: tuple[str, ...] = ()
    test_command: str | None = Field(default=None, min_length=1)
    python: str | None = Field(default=None, pattern=r"^3\.\d{1,2}$")


def read_overrides(files: Mapping[str, bytes]) -> RepositoryOverrides:
    """The overrides among the dependency files (none when the file is absent); raises InvalidOverrides."""
    content = files.get(OVERRIDES_FILE)
    if content is None:
        return RepositoryOverrides()
    try:
        data = yaml.safe_load(content.decode()) or {}
        return RepositoryOverrides.model_validate(data)
    except (yaml.YAMLError, UnicodeDecodeError, ValidationError) as error:
        raise InvalidOverrides(f"{OVERRIDES_FILE} is not valid: {error}") from error


def overrides_or_default(files: Mapping[str, bytes]) -> RepositoryOverrides:
    """The overrides, or none when the file is invalid (setup reports that, before any test runs)."""
    try:
        return read_overrides(files)
    except InvalidOverrides:
        return RepositoryOverrides()
