"""Who may write to the telemetry store, through its real app on a real port: the OTLP receiver
(``/v1/traces``, ``/v1/metrics``, ``/v1/logs``) takes an export only from a Bookline service presenting
its service credential for the audience "telemetry", and then only that service's own telemetry, or
from a sender holding the ingest token (a Collector), which may forward anyone's. Everyone else gets
401 (403 ``sender_mismatch`` for a service sending another's telemetry) and nothing is stored.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from bookline.auth.keys import KeyDir
from bookline.auth.provision import provision_keys
from bookline.auth.services import TELEMETRY_AUDIENCE, ServiceCredentials
from bookline.config import SERVICES, Settings
from bookline.services.telemetry.api import build_app
from bookline.telemetry import setup_telemetry
from support.serving import served

# keep every trace for the length of a test: what is refused must be missing, not sampled away
KEEP_ALL = """\
decision_wait: 60s
num_traces: 1000
policies:
  - name: everything
    type: always_sample
"""
SIGNALS = ["traces", "logs", "metrics"]


@dataclass
class Store:
    url: str
    settings: Settings

    def credential(self, service: str, audience: str = TELEMETRY_AUDIENCE) -> dict[str, str]:
        return ServiceCredentials.of(service, self.settings).headers_for(audience)

    @property
    def ingest(self) -> dict[str, str]:
        """The ingest token ``provision_keys`` wrote to ``DATA_DIR/keys/ingest.token``."""
        token = KeyDir(self.settings.key_dir).ingest_token.read_text(encoding="utf-8").strip()
        return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def start_store(data_dir: Path, **overrides: object) -> AsyncIterator[Store]:
    policy = data_dir / "policy.yaml"
    policy.write_text(KEEP_ALL)
    settings = Settings(data_dir=data_dir, sampling_policy_file=policy, **overrides)
    provision_keys(settings)  # the services' keys and the ingest token, before the store reads them
    async with served(build_app(settings, setup_telemetry("telemetry", settings, export=False))) as url:
        yield Store(url, settings)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with start_store(tmp_path) as running:
        yield running


# ---- exports, by hand in OTLP JSON ----------------------------------------------------------------


def _resource(service: str | None) -> dict:
    attributes = [] if service is None else [{"key": "service.name", "value": {"stringValue": service}}]
    return {"attributes": attributes}


def export(signal: str, *services: str | None, marker: str) -> bytes:
    """One export of ``signal`` with a resource per service, each with one span, log record or metric
    point that ``marker`` names (the trace id of the spans, the logs' body, the metric's name)."""
    now = time.time_ns()
    resources = []
    for i, service in enumerate(services):
        if signal == "traces":
            span = {
                "traceId": marker, "spanId": f"{i + 1:016x}", "name": f"work of {service}", "kind": 2,
                "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 1_000_000),
            }  # fmt: skip
            resources.append({"resource": _resource(service), "scopeSpans": [{"spans": [span]}]})
        elif signal == "logs":
            record = {"timeUnixNano": str(now), "severityText": "INFO", "body": {"stringValue": marker}}
            resources.append({"resource": _resource(service), "scopeLogs": [{"logRecords": [record]}]})
        else:
            metric = {"name": marker, "gauge": {"dataPoints": [{"timeUnixNano": str(now), "asInt": "1"}]}}
            resources.append({"resource": _resource(service), "scopeMetrics": [{"metrics": [metric]}]})
    key = {"traces": "resourceSpans", "logs": "resourceLogs", "metrics": "resourceMetrics"}[signal]
    return json.dumps({key: resources}).encode()


def new_marker(signal: str) -> str:
    return uuid.uuid4().hex if signal == "traces" else f"marker.{uuid.uuid4().hex[:12]}"


async def send(store: Store, signal: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            f"{store.url}/v1/{signal}", content=body, headers={"content-type": "application/json", **headers}
        )


async def stored(store: Store) -> dict[str, set[tuple[str, str]]]:
    """Everything the store holds, as (marker, service) pairs per signal."""
    async with httpx.AsyncClient(base_url=store.url, timeout=10) as http:
        traces = (await http.get("/api/traces")).json()["traces"]
        spans = [
            (t["trace_id"], s["service"])
            for t in traces
            for s in (await http.get(f"/api/traces/{t['trace_id']}")).json()["spans"]
        ]
        logs = (await http.get("/api/logs")).json()["logs"]
        metrics = (await http.get("/api/metrics")).json()["metrics"]
    return {
        "traces": set(spans),
        "logs": {(entry["body"], entry["service"]) for entry in logs},
        "metrics": {(m["name"], m["service"]) for m in metrics},
    }


async def nothing_stored(store: Store) -> None:
    assert await stored(store) == {"traces": set(), "logs": set(), "metrics": set()}


def hmac_token(claims: dict, secret: bytes) -> str:
    """An HS256 token signed with ``secret`` (PyJWT will not sign one with a public key: by hand)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(json.dumps(claims).encode())
    return signing_input + "." + part(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


# ---- nobody anonymous ----------------------------------------------------------------------------


@pytest.mark.parametrize("signal", SIGNALS)
async def test_an_anonymous_export_answers_401_and_stores_nothing(store: Store, signal: str):
    body = export(signal, "booking-service", marker=new_marker(signal))
    ingest_token = store.ingest["Authorization"].removeprefix("Bearer ")

    for name, headers in {
        "no credential": {},
        "a bearer scheme with no token": {"Authorization": "Bearer"},
        "a bearer of nonsense": {"Authorization": "Bearer not-a-token"},
        "the ingest token, but not as a bearer token": {"Authorization": f"Basic {ingest_token}"},
    }.items():
        response = await send(store, signal, body, headers)
        assert response.status_code == 401, f"{name}: {response.text}"
        assert response.json()["error"]["code"] == "unauthenticated", name
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), name
        assert ingest_token not in response.text
    await nothing_stored(store)


async def test_a_forged_expired_or_misaddressed_service_credential_answers_401_and_stores_nothing(store: Store):
    now = int(time.time())
    claims = {"iss": "booking-service", "sub": "booking-service", "aud": "telemetry", "iat": now, "exp": now + 60}
    unknown_key = ec.generate_private_key(ec.SECP256R1())  # a fresh key nobody provisioned
    own_key = KeyDir(store.settings.key_dir).load_private("booking")
    tokens = {
        "forged with an unknown key": jwt.encode(claims, unknown_key, algorithm="ES256", headers={"kid": "booking"}),
        "expired": jwt.encode({**claims, "iat": now - 600, "exp": now - 300}, own_key, algorithm="ES256"),
        "naming a service that is not Bookline's": jwt.encode(
            {**claims, "iss": "intruder", "sub": "intruder"}, unknown_key, algorithm="ES256"
        ),
        "an HMAC keyed with the public key": hmac_token(
            claims, KeyDir(store.settings.key_dir).public("booking").read_bytes()
        ),
    }
    body = export("traces", "booking-service", marker=new_marker("traces"))
    for name, token in tokens.items():
        response = await send(store, "traces", body, {"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, f"{name}: {response.text}"
        refused(response, 401, "unauthenticated")
    # booking-service's real credential, but addressed to payment-gateway and replayed here
    misaddressed = store.credential("booking-service", audience="payment-gateway")
    refused(await send(store, "traces", body, misaddressed), 401, "unauthenticated")
    await nothing_stored(store)


# ---- a service sends its own telemetry only -------------------------------------------------------


@pytest.mark.parametrize("signal", SIGNALS)
async def test_a_service_credential_exports_that_services_own_telemetry(store: Store, signal: str):
    marker = new_marker(signal)
    response = await send(
        store, signal, export(signal, "booking-service", marker=marker), store.credential("booking-service")
    )

    assert response.status_code == 200, response.text
    assert (await stored(store))[signal] == {(marker, "booking-service")}


@pytest.mark.parametrize("signal", SIGNALS)
async def test_a_service_exporting_another_services_telemetry_answers_403_and_stores_nothing(store: Store, signal: str):
    credential = store.credential("booking-service")
    for name, services in {
        "another service": ("payment-gateway",),
        "its own and another's in one export": ("booking-service", "payment-gateway"),
        "a resource without a service.name": (None,),
        "a name that is no service of Bookline": ("otel-collector",),
    }.items():
        response = await send(store, signal, export(signal, *services, marker=new_marker(signal)), credential)
        assert response.status_code == 403, f"{name}: {response.text}"
        assert response.json()["error"]["code"] == "sender_mismatch", name
    # not even the sender's own part of a mixed export was kept
    await nothing_stored(store)


async def test_the_sdk_exporter_with_a_service_credential_is_refused_for_another_services_spans(store: Store):
    """What a service's own OTLP exporter does, with the SDK: its spans land, another service's do not."""

    def export_as(credential_of: str, resource_of: str) -> str:
        provider = TracerProvider(resource=Resource.create({"service.name": resource_of}))
        exporter = OTLPSpanExporter(endpoint=f"{store.url}/v1/traces", headers=store.credential(credential_of))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with provider.get_tracer("bookline").start_as_current_span("POST /holds") as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
        provider.shutdown()
        return trace_id

    own = await asyncio.to_thread(export_as, "availability-service", "availability-service")
    impersonated = await asyncio.to_thread(export_as, "availability-service", "payment-gateway")

    assert (await stored(store))["traces"] == {(own, "availability-service")}
    assert impersonated != own


# ---- the ingest token forwards anyone's telemetry ------------------------------------------------


@pytest.mark.parametrize("signal", SIGNALS)
async def test_the_ingest_token_is_accepted_for_any_service_name(store: Store, signal: str):
    services = [s.name for s in SERVICES] + ["otel-collector", None]
    marker = new_marker(signal)

    response = await send(store, signal, export(signal, *services, marker=marker), store.ingest)

    assert response.status_code == 200, response.text
    expected = {s or "unknown_service" for s in services}
    assert {service for found, service in (await stored(store))[signal] if found == marker} == expected


async def test_a_configured_ingest_token_replaces_the_provisioned_file(tmp_path: Path):
    async with start_store(tmp_path, telemetry_ingest_token="configured-ingest-token") as store:
        body = export("traces", "payment-gateway", marker=new_marker("traces"))
        refused(await send(store, "traces", body, store.ingest), 401, "unauthenticated")
        await nothing_stored(store)

        configured = {"Authorization": "Bearer configured-ingest-token"}
        assert (await send(store, "traces", body, configured)).status_code == 200
        # a service credential still works beside it
        own = export("traces", "booking-service", marker=new_marker("traces"))
        assert (await send(store, "traces", own, store.credential("booking-service"))).status_code == 200
        assert {service for _, service in (await stored(store))["traces"]} == {"payment-gateway", "booking-service"}
