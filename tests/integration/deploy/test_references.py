"""What the deployment files name exists: every path they (and docs/deployment.md) mention is in the
repository, every variable they set for a service is one the code reads, every variable the compose files
interpolate is in .env.example, every Secret key a pod reads is in the placeholder Secret.

"The code reads it" means: an alias of a settings field in `service_feature.config` (pydantic-settings
reads those), or a name `src/` reads from the environment itself (`os.environ.get("X")`, `os.environ["X"]`,
`os.getenv("X")`, also through a module constant), found with `ast`. A variable that neither knows is one
a typo or a removed setting left behind, and silently does nothing.
"""

from __future__ import annotations

import ast
import inspect
import re
from functools import cache

import pytest
from pydantic_settings import BaseSettings

from tests.integration.deploy.test_manifests import (
    APP_SERVICES,
    ROOT,
    by_kind,
    compose,
    compose_file,
    environment,
    k8s_resources,
)

SRC = ROOT / "src" / "service_feature"
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.full.yml", "docker-compose.bwrap.yml")
# Read by the OpenTelemetry SDK, not by our code (telemetry.py hands the configuration to it).
OTEL_SDK_VARIABLES = {"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SERVICE_NAME"}
# Files whose text names repository paths.
NAMING_FILES = (
    *COMPOSE_FILES,
    "Makefile",
    "Dockerfile",
    ".env.example",
    "docs/deployment.md",
    *(f"deploy/kubernetes/{path.name}" for path in sorted((ROOT / "deploy/kubernetes").glob("*.yaml"))),
    "deploy/compose/nginx.conf",
    "deploy/compose/ensure-env.sh",
    "deploy/compose/prometheus.yml",
)
# A relative path into one of the repository's top folders, or a compose file; not part of an absolute
# path or a URL (no `/`, `.` or word character just before it).
PATH_PATTERN = re.compile(
    r"(?<![\w/.-])((?:deploy|scripts|examples|docs|tests|src|bench)/[\w./-]*[\w/]|docker-compose[\w.-]*\.yml)"
)


@cache
def settings_aliases() -> frozenset[str]:
    from service_feature import config

    names: set[str] = set()
    for _, cls in inspect.getmembers(config, inspect.isclass):
        if issubclass(cls, BaseSettings) and cls.__module__ == config.__name__:
            names |= {field.alias for field in cls.model_fields.values() if field.alias}
    return frozenset(names)


def _is_environ(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _environment_reads(tree: ast.Module) -> set[str]:
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        if isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }

    def text(node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return constants.get(node.id)
        return None

    names: set[str] = set()
    for node in ast.walk(tree):
        key: ast.expr | None = None
        if isinstance(node, ast.Subscript) and _is_environ(node.value):
            key = node.slice
        elif isinstance(node, ast.Call) and node.args:
            function = node.func
            if not isinstance(function, ast.Attribute):
                continue
            reads_environ = function.attr in ("get", "setdefault", "pop") and _is_environ(function.value)
            if reads_environ or function.attr == "getenv":
                key = node.args[0]
        if key is not None and (name := text(key)):
            names.add(name)
    return names


@cache
def environment_reads() -> frozenset[str]:
    names: set[str] = set()
    for path in SRC.rglob("*.py"):
        names |= _environment_reads(ast.parse(path.read_text(), str(path)))
    return frozenset(names)


def read_by_the_code() -> frozenset[str]:
    return settings_aliases() | environment_reads()


def test_the_code_readers_are_found() -> None:
    # The finders above find what they must, so the checks below mean something.
    assert {"DATABASE_URL", "SF_ADMIN_KEY", "REDIS_URL", "SANDBOX_DOCKER_IMAGE"} <= settings_aliases()
    assert {"OTEL_EXPORTER_OTLP_ENDPOINT", "SF_API_URL"} <= environment_reads()
    assert "NOT_A_SETTING" not in read_by_the_code()
    sample = ast.parse('import os\nNAME = "VIA_CONSTANT"\nos.environ.get(NAME)\nos.environ["DIRECT"]\n')
    assert _environment_reads(sample) == {"VIA_CONSTANT", "DIRECT"}


def _compose_service_variables() -> dict[str, set[str]]:
    variants = [
        compose(),
        compose("docker-compose.full.yml"),
        compose("docker-compose.bwrap.yml"),
        compose("docker-compose.full.yml", "docker-compose.bwrap.yml"),
    ]
    names: dict[str, set[str]] = {}
    for merged in variants:
        for name in (*APP_SERVICES, "worker-minimal", "migrate"):
            names.setdefault(name, set()).update(environment(merged["services"][name]))
    return names


def _k8s_container_variables() -> dict[str, set[str]]:
    config = set(by_kind("ConfigMap")["service-feature-config"]["data"])
    names: dict[str, set[str]] = {}
    for resource in k8s_resources():
        if resource["kind"] not in ("Deployment", "Job"):
            continue
        for container in resource["spec"]["template"]["spec"]["containers"]:
            read = {item["name"] for item in container.get("env", [])}
            if any("configMapRef" in source for source in container.get("envFrom", [])):
                read |= config
            names[f"{resource['kind']}/{resource['metadata']['name']}"] = read
    return names


@pytest.mark.parametrize("source", ["compose", "kubernetes"])
def test_every_variable_set_for_a_service_is_read_by_the_code(source: str) -> None:
    per_service = _compose_service_variables() if source == "compose" else _k8s_container_variables()
    assert per_service
    known = read_by_the_code() | OTEL_SDK_VARIABLES
    unknown = {service: sorted(names - known) for service, names in per_service.items() if names - known}
    assert not unknown, f"{source} sets variables no code reads: {unknown}"


def test_otel_sdk_variables_are_the_sdks() -> None:
    from opentelemetry.sdk.environment_variables import OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_SERVICE_NAME

    assert {OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_SERVICE_NAME} == OTEL_SDK_VARIABLES


def test_every_secret_key_a_pod_reads_is_in_the_placeholder_secret() -> None:
    """Required keys are in the placeholder Secret; optional ones at least in its comments (an empty
    placeholder value would be read as a value: an empty push token)."""
    secret = by_kind("Secret")["service-feature-secrets"]
    keys = set(secret["stringData"])
    comments = (ROOT / "deploy/kubernetes/secret.yaml").read_text()
    for resource in k8s_resources():
        if resource["kind"] not in ("Deployment", "Job"):
            continue
        for container in resource["spec"]["template"]["spec"]["containers"]:
            for item in container.get("env", []):
                reference = item.get("valueFrom", {}).get("secretKeyRef")
                if not reference:
                    continue
                where = f"{resource['metadata']['name']}: {reference['key']}"
                assert reference["name"] == secret["metadata"]["name"], where
                assert reference["key"] == item["name"], where
                if reference.get("optional"):
                    assert re.search(rf"^#\s+{reference['key']}\s", comments, re.MULTILINE), where
                else:
                    assert reference["key"] in keys, where


def _interpolated(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))


def _passed_through() -> set[str]:
    """`KEY:` without a value: compose takes it from the shell or .env."""
    names: set[str] = set()
    for name in COMPOSE_FILES:
        for service in compose_file(name)["services"].values():
            names |= {key for key, value in environment(service).items() if value is None}
    for key, fragment in compose_file("docker-compose.yml").items():
        if key.startswith("x-") and isinstance(fragment, dict):
            names |= {name for name, value in fragment.items() if value is None and name.isupper()}
    return names


def _env_example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


def test_env_example_lists_every_variable_the_compose_files_use() -> None:
    used = set()
    for name in COMPOSE_FILES:
        used |= _interpolated((ROOT / name).read_text())
    used |= _passed_through()
    assert {"SF_ADMIN_KEY", "GATEWAY_PORT", "ANTHROPIC_API_KEY", "GIT_PUSH_TOKEN"} <= used
    listed = _env_example_names()
    assert not used - listed, f".env.example misses {sorted(used - listed)}"
    assert not listed - used, f".env.example lists what no compose file uses: {sorted(listed - used)}"
    # Only the admin key is set (empty: ensure-env.sh fills it); the rest are commented defaults, since an
    # empty pass-through value would reach the services as an empty string.
    assert re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.MULTILINE) == [
        "SF_ADMIN_KEY"
    ]


def _named_paths(name: str) -> set[str]:
    text = (ROOT / name).read_text()
    return {match.rstrip(".") for match in PATH_PATTERN.findall(text)}


def _exists(path: str) -> bool:
    # `kubectl exec deploy/gateway`: a Deployment, not a file.
    folder, _, rest = path.partition("/")
    if folder == "deploy" and rest in by_kind("Deployment"):
        return True
    return (ROOT / path).exists()


@pytest.mark.parametrize("name", NAMING_FILES)
def test_every_path_named_exists(name: str) -> None:
    missing = sorted(path for path in _named_paths(name) if not _exists(path))
    assert not missing, f"{name} names paths that do not exist: {missing}"


def test_the_path_finder_finds_paths() -> None:
    # It finds the mistake this test was written for, and paths in each kind of file.
    assert PATH_PATTERN.findall("see deploy/compose/executor-bwrap.yml.") == [
        "deploy/compose/executor-bwrap.yml"
    ]
    assert not _exists("deploy/compose/executor-bwrap.yml")
    assert _exists("deploy/gateway")
    assert not _exists("deploy/nope")
    assert PATH_PATTERN.findall("/var/lib/feature-service/workspaces http://x/docs/a") == []
    assert "deploy/compose/nginx.conf" in _named_paths("docker-compose.yml")
    assert "docker-compose.bwrap.yml" in _named_paths("docker-compose.yml")
    assert "deploy/compose/ensure-env.sh" in _named_paths("Makefile")
    assert "examples/simple-feature.json" in _named_paths("docs/deployment.md")


def test_compose_bind_mounts_exist() -> None:
    for name in COMPOSE_FILES:
        for service_name, service in compose_file(name)["services"].items():
            for volume in service.get("volumes", []):
                source = str(volume).split(":", 1)[0]
                if source.startswith("./"):
                    assert (ROOT / source).exists(), f"{name}: {service_name} mounts missing {source}"


def test_compose_files_named_by_the_makefile_exist() -> None:
    text = (ROOT / "Makefile").read_text()
    for name in re.findall(r"-f (docker-compose[\w.-]*\.yml)", text):
        assert (ROOT / name).exists(), name


def test_dockerfile_copies_exist() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.MULTILINE):
        for source in line.split()[:-1]:
            assert (ROOT / source).exists(), source


def test_kubernetes_kustomization_resources_exist() -> None:
    import yaml

    config = yaml.safe_load((ROOT / "deploy/kubernetes/kustomization.yaml").read_text())
    for name in config["resources"]:
        assert (ROOT / "deploy/kubernetes" / name).exists(), name


def test_compose_services_named_by_the_makefile_exist() -> None:
    services = set(compose("docker-compose.full.yml")["services"])
    text = (ROOT / "Makefile").read_text()
    for variable in ("SF_SERVICES", "SF_UP", "SF_INFRA"):
        (value,) = re.findall(rf"^{variable} := (.+)$", text, re.MULTILINE)
        names = {word for word in value.split() if not word.startswith("$")}
        assert names <= services, f"{variable}: {sorted(names - services)}"
