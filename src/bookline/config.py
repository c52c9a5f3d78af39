"""The one Settings object of Bookline. Nothing else in the package reads ``os.environ``.

Every field can be set with an environment variable of the same name in upper case with the
``BOOKLINE_`` prefix (``BOOKLINE_DATA_DIR``, ``BOOKLINE_HOLD_TTL_SECONDS`` ...). The standard
``OTEL_*`` variables are read by :mod:`bookline.telemetry` through :attr:`Settings.otel`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


@dataclass(frozen=True)
class ServiceSpec:
    """A service of Bookline: its ``service.name``, the key used in settings and its default port."""

    name: str
    key: str
    port: int


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("booking-service", "booking", 8000),
    ServiceSpec("availability-service", "availability", 8001),
    ServiceSpec("pricing-engine", "pricing", 8002),
    ServiceSpec("confirmation-service", "confirmation", 8003),
    ServiceSpec("payment-gateway", "gateway", 8004),
    ServiceSpec("notification-service", "notification", 8005),
)
# the local telemetry store: `bookline serve telemetry`; `bookline up` starts it unless the user
# sends telemetry elsewhere with OTEL_EXPORTER_OTLP_ENDPOINT
TELEMETRY_STORE = ServiceSpec("telemetry", "telemetry", 4318)
SERVICE_BY_NAME = {s.name: s for s in (*SERVICES, TELEMETRY_STORE)} | {s.key: s for s in (*SERVICES, TELEMETRY_STORE)}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOOKLINE_", extra="ignore")

    # where things live
    data_dir: Path = Path("./var")
    database_url: str | None = Field(
        default=None,
        description="postgresql+asyncpg://... to run every service on PostgreSQL (one schema each); "
        "unset means one SQLite file per service under data_dir",
    )
    db_schema_prefix: str = Field(default="", description="prefix of the PostgreSQL schema names")
    environment: str = "development"

    # network
    host: str = "127.0.0.1"
    # PostgreSQL connections of one process: every replica of every service has a pool of its own, and
    # together they must stay under the server's max_connections (100 by default) or go through PgBouncer
    db_pool_size: int = Field(default=10, ge=1, le=200, description="PostgreSQL connections a process keeps")
    db_max_overflow: int = Field(default=5, ge=0, le=200, description="connections beyond the pool under load")
    # set by `bookline up --replicas` for each replica: the service's port is bound by several processes
    reuse_port: bool = Field(default=False, description="bind the service's port with SO_REUSEPORT (replicas)")
    booking_port: int = 8000
    availability_port: int = 8001
    pricing_port: int = 8002
    confirmation_port: int = 8003
    gateway_port: int = 8004
    notification_port: int = 8005
    telemetry_port: int = 4318
    booking_url: str | None = None
    availability_url: str | None = None
    pricing_url: str | None = None
    confirmation_url: str | None = None
    gateway_url: str | None = None
    notification_url: str | None = None
    telemetry_url: str | None = None
    http_timeout_s: float = 5.0
    service_restart_limit: int = Field(
        default=3,
        ge=0,
        description="bookline up starts a crashed service again this many times within service_restart_window_s "
        "(0: never); one more crash in that window stops the stack",
    )
    service_restart_window_s: float = Field(default=600.0, gt=0)
    max_body_bytes: int = 64 * 1024
    request_body_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="a request body that has not arrived by then answers 408"
    )

    # booking rules
    hold_ttl_seconds: float = 600.0
    hold_sweep_interval_s: float = 5.0
    quote_ttl_seconds: float = 900.0
    max_stay_nights: int = 30
    saga_recovery_interval_s: float = 2.0
    saga_stale_after_s: float = 15.0
    reconcile_interval_s: float = Field(default=5.0, gt=0, description="how often the reconcilers look for work")
    reconcile_settle_after_s: float = Field(
        default=30.0,
        ge=0,
        description="a failed or cancelled booking's money is checked against the gateway's ledger once it "
        "has been quiet this long; a failed delivery is re-sent once its e-mail is this late",
    )

    # payment client (booking-service -> gateway)
    payment_timeout_s: float = 2.0
    payment_max_attempts: int = 2

    # the payment gateway stand-in
    gateway_latency_ms: float = 0.0
    gateway_decline_rate: float = 0.0
    gateway_timeout_rate: float = 0.0
    gateway_error_rate: float = 0.0
    gateway_slow_response_s: float = 3.0

    # asynchronous delivery
    property_cache_s: float = Field(
        default=300.0,
        ge=0,
        description="notification-service names a property and its rooms as availability-service described "
        "them at most this long ago (0: asks for every e-mail)",
    )
    outbox_poll_interval_s: float = 0.1
    queue_poll_interval_s: float = 0.1
    queue_visibility_timeout_s: float = 30.0
    # nats://host:4222 selects NATS JetStream (replicas); unset: the embedded SQLite queue (DATA_DIR/queue.db)
    queue_url: str | None = Field(
        default=None, description="nats://host:port of NATS JetStream; unset: the SQLite queue"
    )
    queue_stream_prefix: str = Field(
        default="", description="prefix of the JetStream stream's name (<prefix>BOOKLINE), to keep Bookline runs apart"
    )
    # may hold a password, so it is a secret like admin_token: never shown by repr, str or a dump
    smtp_url: SecretStr | None = Field(
        default=None,
        description="smtp://[user:pass@]host:port[?starttls=true] or smtps://host:465 of the server that "
        "delivers the guest e-mails; unset means one .eml file per e-mail under DATA_DIR/mail",
    )

    # how the services trace (TELEMETRY.md, "Cost")
    trace_sql_statements: bool = Field(
        default=False,
        description="a span for every SQL statement, under its transaction's span (default: one span per transaction)",
    )
    telemetry_setup: Literal["bookline", "stock"] = Field(
        default="bookline",
        description="stock: the OpenTelemetry set-up of the docs (contrib instrumentations with their defaults, "
        "a span per statement), for comparing costs (bench/bookings.py --modes stock)",
    )

    # the local telemetry store
    telemetry_retention_hours: float = Field(
        default=24.0, description="spans, logs and metric points older than this are deleted"
    )
    telemetry_max_spans: int = Field(
        default=2_000_000, description="the oldest traces are deleted beyond this many spans"
    )
    telemetry_decode_workers: int | None = Field(
        default=None,
        ge=0,
        le=8,
        description="processes that decode large span exports beside the store's own; unset means one where "
        "there are two cores or more, 0 decodes everything in the store's process",
    )
    trace_view_url: str | None = Field(
        default=None,
        description="link to a trace in a viewer, with {trace_id}; booking answers carry it as trace_url "
        "(bookline up sets it to the local store's page)",
    )
    sampling_policy_file: Path | None = Field(
        default=None, description="tail-sampling policies (Collector vocabulary); unset means the packaged default"
    )

    # the read-only admin endpoints (/admin/...) of every service, and `bookline audit` that reads them
    admin_token: SecretStr | None = Field(
        default=None,
        description="bearer token of the /admin endpoints; unset, bookline up uses DATA_DIR/admin.token "
        "(created on first run) and gives it to every service",
    )
    audit_grace_s: float = Field(
        default=30.0, ge=0, description="bookings touched this recently are in flight: the audit skips them"
    )
    audit_payment_unknown_limit_s: float = Field(
        default=120.0, gt=0, description="a payment step left started longer than this is an audit violation"
    )

    # customers: bearer JWTs (docs: README, "Customers and tokens")
    jwt_issuer: str | None = Field(
        default=None,
        description="iss of customer tokens; unset means the local issuer whose key bookline up keeps in DATA_DIR/keys",
    )
    jwt_audience: str = Field(default="bookline", description="aud every customer token must name")
    jwt_jwks_url: str | None = Field(
        default=None, description="the identity provider's JWKS (OpenID Connect jwks_uri); needs jwt_issuer"
    )
    jwt_leeway_s: float = Field(default=30.0, ge=0, le=300, description="clock skew tolerated on exp and nbf")
    keys_dir: Path | None = Field(
        default=None, description="the service and issuer keys; unset means DATA_DIR/keys (bookline up provisions them)"
    )
    service_token_ttl_s: float = Field(default=300.0, ge=10, le=3600, description="lifetime of a service credential")
    telemetry_host: str = Field(
        default="127.0.0.1", description="address of the telemetry store; off loopback its API needs the admin token"
    )
    telemetry_ingest_token: SecretStr | None = Field(
        default=None,
        description="bearer token an OTLP sender other than a Bookline service (a Collector) presents to the store",
    )

    # rate limits (the limits library: in memory, or Redis when redis_url is set)
    redis_url: str | None = Field(default=None, description="redis://host:port/db for rate limits shared by replicas")
    rate_limit_bookings_per_customer: str = Field(default="30/minute", description="POST /bookings per token sub")
    # high enough for a load test from one machine, low enough to stop a flood from one address
    rate_limit_bookings_per_address: str = Field(default="6000/minute", description="POST /bookings per client address")
    rate_limit_lookups_per_address: str = Field(
        default="20/minute", description="POST /bookings/lookup per client address (codes cannot be guessed)"
    )
    rate_limit_failed_auth_per_address: str = Field(
        default="60/minute", description="401s per client address; past it every credential from there answers 429"
    )

    # test-only switches: each turns one guard off so a control test can prove the guard matters
    unsafe_disable_room_night_guard: bool = False
    unsafe_disable_idempotency: bool = False
    unsafe_disable_fencing: bool = False
    unsafe_disable_saga_fencing: bool = False  # any replica recovers any booking, and writes its saga log
    unsafe_disable_redaction: bool = False
    unsafe_disable_ownership: bool = False  # any customer reads and cancels any booking
    unsafe_disable_service_auth: bool = False  # internal endpoints take any caller
    unsafe_disable_hold_state_checks: bool = False  # a committed hold may be restored while its booking stands
    # test-only: booking-service exits hard at this saga point (after_hold, after_authorize, after_confirm)
    crash_at: str | None = None

    def port_of(self, service: str) -> int:
        return int(getattr(self, f"{SERVICE_BY_NAME[service].key}_port"))

    def url_of(self, service: str) -> str:
        key = SERVICE_BY_NAME[service].key
        explicit = getattr(self, f"{key}_url")
        host = self.telemetry_host if key == TELEMETRY_STORE.key else self.host
        return explicit.rstrip("/") if explicit else f"http://{host}:{self.port_of(service)}"

    def database_url_of(self, service: str) -> str:
        """The SQLAlchemy URL of a service's own database."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / (SERVICE_BY_NAME[service].key + '.db')}"

    def schema_of(self, service: str) -> str | None:
        """The PostgreSQL schema of a service (None on SQLite, where each service has its own file)."""
        if not self.database_url or not self.database_url.startswith("postgresql"):
            return None
        return f"{self.db_schema_prefix}{SERVICE_BY_NAME[service].key}"

    @property
    def queue_path(self) -> Path:
        return self.data_dir / "queue.db"

    @property
    def faults_path(self) -> Path:
        """The fault file every service re-reads while it runs (``bookline faults``)."""
        return self.data_dir / "faults.yaml"

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    @property
    def admin_token_path(self) -> Path:
        """Where ``bookline up`` keeps the admin token it generated (mode 0600)."""
        return self.data_dir / "admin.token"

    @property
    def key_dir(self) -> Path:
        """Where the service keys, the local issuer's key and the ingest token live."""
        return self.keys_dir if self.keys_dir is not None else self.data_dir / "keys"

    @property
    def telemetry_db_path(self) -> Path:
        return self.data_dir / "telemetry.db"

    @property
    def otel(self) -> dict[str, str]:
        """The standard OTEL_* variables of this process (read here so telemetry.py need not)."""
        return {k: v for k, v in os.environ.items() if k.startswith("OTEL_")}

    @property
    def telemetry_disabled(self) -> bool:
        """``OTEL_SDK_DISABLED=true``: no span, metric or log is recorded, so none is exported."""
        return self.otel.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"

    @property
    def exports_otlp(self) -> bool:
        """Whether the standard OTLP endpoint variables send this process's telemetry somewhere."""
        env = self.otel
        return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def get_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
