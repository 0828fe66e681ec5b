"""Tiny real projects the executor's tests and benches install and test: one place for their lock files."""

from __future__ import annotations

import json

_IS_NUMBER_INTEGRITY = (
    "sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng=="
)


def npm_project(name: str) -> dict[str, str]:
    """`package.json` and a `package-lock.json` (v3) of a package `name` that depends on is-number 7.0.0
    from the npm registry and tests with `node --test`; add the test files."""
    dependencies = {"is-number": "7.0.0"}
    scripts = {"test": "node --test"}
    package = {"name": name, "version": "1.0.0", "scripts": scripts, "dependencies": dependencies}
    lock = {
        "name": name,
        "version": "1.0.0",
        "lockfileVersion": 3,
        "requires": True,
        "packages": {
            "": {"name": name, "version": "1.0.0", "dependencies": dependencies},
            "node_modules/is-number": {
                "version": "7.0.0",
                "resolved": "https://registry.npmjs.org/is-number/-/is-number-7.0.0.tgz",
                "integrity": _IS_NUMBER_INTEGRITY,
                "license": "MIT",
                "engines": {"node": ">=0.12.0"},
            },
        },
    }
    return {"package.json": json.dumps(package), "package-lock.json": json.dumps(lock)}
