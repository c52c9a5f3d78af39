"""The work of payment-gateway: tokenize cards, authorize, capture, void and refund, once per key.

Every keyed operation is one write transaction. It inserts the (key, operation) row first and then
either answers with the reply stored under that key or does the work and stores its reply, so an
outcome and the answer replayed for it can never disagree. A concurrent duplicate's insert waits
for the first request's commit (SQLite has one writer; on PostgreSQL ``ON CONFLICT DO NOTHING``
waits on the uncommitted row) and then finds its reply. A failure (a 5xx) rolls everything back,
the key included, so the caller may retry; a refusal (4xx) is stored and replayed like a success.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from opentelemetry.trace import Span, Status, StatusCode, Tracer
from sqlalchemy.ext.asyncio import AsyncConnection

from bookline.adapters.db import Database
from bookline.config import Settings
from bookline.domain import ids
from bookline.domain.errors import (
    BooklineError,
    Conflict,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
    PaymentDeclined,
)
from bookline.faults import FaultFile, fire
from bookline.faults.model import GatewayFaults
from bookline.redaction import looks_like_card_number
from bookline.services.gateway import statements as sql
from bookline.services.gateway.cards import Behavior, FaultRates, draw, examine_card

MAX_KEY_LENGTH = 255


class ProcessingError(BooklineError):
    """The simulated processor failed; nothing was authorized."""

    status, code = 500, "processing_error"


class AuthStatus(StrEnum):
    AUTHORIZED = "authorized"
    DECLINED = "declined"
    CAPTURED = "captured"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    VOIDED = "voided"


CAPTURED_STATES = {AuthStatus.CAPTURED, AuthStatus.PARTIALLY_REFUNDED, AuthStatus.REFUNDED}


@dataclass(frozen=True)
class Simulation:
    """How the stand-in processor behaves beyond what the test cards decide: the ``gateway_*``
    settings, each replaced while the fault file (``faults``) sets its ``gateway.*`` value."""

    latency_s: float = 0.0
    slow_response_s: float = 3.0
    rates: FaultRates = field(default_factory=FaultRates)
    rng: random.Random = field(default_factory=random.Random)
    faults: FaultFile | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, rng: random.Random | None = None, *, faults: FaultFile | None = None
    ) -> Simulation:
        return cls(
            latency_s=settings.gateway_latency_ms / 1000,
            slow_response_s=settings.gateway_slow_response_s,
            rates=FaultRates(
                decline=settings.gateway_decline_rate,
                timeout=settings.gateway_timeout_rate,
                error=settings.gateway_error_rate,
            ),
            rng=rng or random.Random(),
            faults=faults,
        )

    def _file(self) -> GatewayFaults:
        return self.faults.current().gateway if self.faults is not None else GatewayFaults()

    def latency(self) -> float:
        """Seconds added to every operation, now."""
        latency_ms = self._file().latency_ms
        return self.latency_s if latency_ms is None else latency_ms / 1000

    def fault_rates(self) -> FaultRates:
        """The random-fault rates in force now."""
        f = self._file()
        return FaultRates(
            decline=self.rates.decline if f.decline_rate is None else f.decline_rate,
            timeout=self.rates.timeout if f.timeout_rate is None else f.timeout_rate,
            error=self.rates.error if f.error_rate is None else f.error_rate,
        )


@dataclass(frozen=True)
class Reply:
    """An HTTP answer of a keyed operation, as stored for replay."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class KeyedRequest:
    """One call of a keyed operation: the Idempotency-Key and a hash of everything it asks."""

    key: str
    operation: str
    request_hash: str

    @classmethod
    def of(cls, key: str | None, operation: str, **params: Any) -> KeyedRequest:
        if not key:
            raise BooklineError("missing_idempotency_key", "the Idempotency-Key header is required")
        if len(key) > MAX_KEY_LENGTH:
            raise BooklineError(
                "invalid_idempotency_key", f"the Idempotency-Key may have at most {MAX_KEY_LENGTH} characters"
            )
        if looks_like_card_number(key):
            raise InvalidRequest("invalid_idempotency_key", "the Idempotency-Key must not look like a card number")
        canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
        return cls(key, operation, hashlib.sha256(canonical.encode()).hexdigest())

    def row_params(self) -> dict[str, str]:
        """The parameters that name this request's row of the idempotency keys."""
        return {"idempotency_key": self.key, "operation_name": self.operation}

    async def record(self, conn: AsyncConnection, reply: Reply) -> None:
        await conn.execute(
            sql.RECORD_REPLY,
            {**self.row_params(), "reply_status": reply.status, "reply_body": json.dumps(reply.body)},
        )


def _now() -> float:
    return time.time()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def view(auth: Mapping[str, Any]) -> dict[str, Any]:
    """The public form of an authorization."""
    out = {
        "id": auth["auth_id"],
        "status": auth["status"],
        "amount_minor": auth["amount_minor"],
        "currency": auth["currency"],
        "reservation_id": auth["reservation_id"],
        "last4": auth["last4"],
        "brand": auth["brand"],
        "captured_minor": auth["captured_minor"],
        "refunded_minor": auth["refunded_minor"],
        "created_at": _iso(auth["created_at"]),
        "updated_at": _iso(auth["updated_at"]),
    }
    if auth["decline_reason"]:
        out["decline_reason"] = auth["decline_reason"]
    return out


# --- idempotency ---------------------------------------------------------------------------------


def _stored_reply(row: Any, request: KeyedRequest) -> Reply:
    if row.request_hash != request.request_hash:
        raise IdempotencyKeyReused(message="this Idempotency-Key was already used with a different request")
    if row.response_status is None:
        raise IdempotencyInFlight(message="a request with this Idempotency-Key is still in progress")
    return Reply(row.response_status, json.loads(row.response_body))


async def _claim(conn: AsyncConnection, request: KeyedRequest) -> Reply | None:
    """Take the key for this request (None), or return the stored reply of the first one."""
    taken = await conn.execute(
        sql.CLAIM_IDEMPOTENCY_KEY,
        {
            "key": request.key,
            "operation": request.operation,
            "request_hash": request.request_hash,
            "created_at": _now(),
        },
    )
    if taken.rowcount == 1:
        return None
    row = (await conn.execute(sql.SELECT_IDEMPOTENCY_KEY, request.row_params())).one()
    return _stored_reply(row, request)


def _error_of(reply: Reply) -> BooklineError:
    details = dict(reply.body["error"])
    error = BooklineError(details.pop("code"), details.pop("message"), **details)
    error.status = reply.status
    return error


def _describe(span: Span, reply: Reply) -> None:
    """Put what the reply says about the payment on the operation's span."""
    body = reply.body
    error = body.get("error")
    if error is None:
        span.set_attributes(
            {
                "payment.transaction_id": body["id"],
                "payment.status": body["status"],
                "payment.amount_minor": body["amount_minor"],
                "payment.currency": body["currency"],
                "payment.card_last_four": body["last4"],
                "payment.card_brand": body["brand"],
                "booking.reservation_id": body["reservation_id"],
            }
        )
    elif error.get("code") == "payment_declined":
        span.set_attributes(
            {
                "payment.transaction_id": error["authorization_id"],
                "payment.status": AuthStatus.DECLINED.value,
                "payment.decline_reason": error["decline_reason"],
            }
        )


async def _once(
    *,
    db: Database,
    sim: Simulation,
    span: Span,
    request: KeyedRequest,
    work: Callable[[AsyncConnection], Awaitable[Reply]],
) -> Reply:
    """Run ``work`` once per (key, operation) and answer every repeat with the stored reply.

    ``work`` runs in the transaction that claims the key, on its connection, and returns the reply;
    its changes and the reply commit together. A refusal it raises (a ``BooklineError`` below 500)
    is stored as the reply in that transaction, so ``work`` must raise one before changing anything.
    Anything else it raises rolls the transaction back, claim included.
    """
    # before the transaction: a sleep inside it would hold SQLite's write lock
    latency = sim.latency()
    if latency:
        fire(span, "gateway.latency_ms")
        await asyncio.sleep(latency)
    try:
        async with db.write() as conn:
            reply = await _claim(conn, request)
            span.set_attribute("payment.idempotent_replay", reply is not None)
            if reply is None:
                reply = await _attempt(conn, request, work)
    except BooklineError as exc:
        if exc.status >= 500:
            span.set_status(Status(StatusCode.ERROR, exc.code))
        raise
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    _describe(span, reply)
    if reply.status >= 400:
        raise _error_of(reply)
    return reply


async def _attempt(
    conn: AsyncConnection, request: KeyedRequest, work: Callable[[AsyncConnection], Awaitable[Reply]]
) -> Reply:
    """Do the work of a claimed request and store its reply, a refusal's included."""
    try:
        reply = await work(conn)
    except BooklineError as exc:
        if exc.status >= 500:
            raise
        reply = Reply(exc.status, {"error": exc.to_body()})
    await request.record(conn, reply)
    return reply


def _span(tracer: Tracer, name: str):  # type: ignore[no-untyped-def]
    # refusals and declines are answers, not failures: the span status is set explicitly
    return tracer.start_as_current_span(name, record_exception=False, set_status_on_exception=False)


# --- tokens --------------------------------------------------------------------------------------


async def tokenize(
    *,
    db: Database,
    tracer: Tracer,
    number: object,
    exp_month: object,
    exp_year: object,
    cvc: object,
    today: date,
) -> dict[str, Any]:
    """Check a card and keep a token for it; the number, CVC and expiry are forgotten here."""
    with _span(tracer, "gateway.tokenize") as span:
        card = examine_card(number, exp_month, exp_year, cvc, today=today)
        span.set_attributes({"payment.card_last_four": card.last4, "payment.card_brand": card.brand})
        token = ids.new_card_token()
        async with db.write() as conn:
            await conn.execute(
                sql.INSERT_TOKEN,
                {
                    "token": token,
                    "last4": card.last4,
                    "brand": card.brand,
                    "behavior": card.behavior.value,
                    "created_at": _now(),
                },
            )
        return {"token": token, "last4": card.last4, "brand": card.brand}


# --- authorizations ------------------------------------------------------------------------------


async def authorize(
    *,
    db: Database,
    tracer: Tracer,
    sim: Simulation,
    request: KeyedRequest,
    token: str,
    amount_minor: int,
    currency: str,
    reservation_id: str,
) -> Reply:
    """Authorize an amount on a card token. A decline is recorded and answered 402."""
    with _span(tracer, "gateway.authorize") as span:
        span.set_attributes(
            {
                "booking.reservation_id": reservation_id,
                "payment.amount_minor": amount_minor,
                "payment.currency": currency,
            }
        )

        slow = False

        async def work(conn: AsyncConnection) -> Reply:
            nonlocal slow
            card = (await conn.execute(sql.SELECT_TOKEN, {"token": token})).first()
            if card is None:
                raise NotFound("unknown_token", "no card has this token")
            span.set_attributes({"payment.card_last_four": card.last4, "payment.card_brand": card.brand})
            outcome, fault = draw(Behavior(card.behavior), sim.fault_rates(), sim.rng)
            if fault is not None:
                fire(span, f"gateway.{fault}_rate")
            if outcome is Behavior.PROCESSING_ERROR:
                raise ProcessingError(message="the card processor failed; nothing was authorized")
            now = _now()
            auth = {
                "auth_id": ids.new_authorization_id(),
                "idempotency_key": request.key,
                "token": token,
                "reservation_id": reservation_id,
                "status": (AuthStatus.DECLINED if outcome.declines else AuthStatus.AUTHORIZED).value,
                "decline_reason": outcome.value if outcome.declines else None,
                "amount_minor": amount_minor,
                "currency": currency,
                "captured_minor": 0,
                "refunded_minor": 0,
                "last4": card.last4,
                "brand": card.brand,
                "created_at": now,
                "updated_at": now,
            }
            await conn.execute(sql.INSERT_AUTHORIZATION, auth)
            slow = outcome is Behavior.SLOW
            return _declined(auth) if outcome.declines else Reply(201, view(auth))

        reply = await _once(db=db, sim=sim, span=span, request=request, work=work)
        if slow:
            # the outcome is committed; only the answer is late, past the caller's timeout
            await asyncio.sleep(sim.slow_response_s)
        return reply


def _declined(auth: Mapping[str, Any]) -> Reply:
    reason = auth["decline_reason"]
    message = "the card has insufficient funds" if reason == "insufficient_funds" else "the card was declined"
    error = PaymentDeclined("payment_declined", message, decline_reason=reason, authorization_id=auth["auth_id"])
    return Reply(error.status, {"error": error.to_body()})


def plan_capture(auth: Mapping[str, Any], amount_minor: int | None) -> dict[str, Any]:
    """The changes a capture makes ({} when it is already done as asked)."""
    status = auth["status"]
    if status == AuthStatus.AUTHORIZED:
        amount = auth["amount_minor"] if amount_minor is None else amount_minor
        if amount > auth["amount_minor"]:
            raise InvalidRequest(
                "capture_exceeds_authorization",
                "the capture is larger than the authorized amount",
                authorized_minor=auth["amount_minor"],
            )
        return {"status": AuthStatus.CAPTURED.value, "captured_minor": amount}
    if status in CAPTURED_STATES:
        if amount_minor in (None, auth["captured_minor"]):
            return {}
        raise Conflict(
            "already_captured",
            "the authorization was already captured",
            captured_minor=auth["captured_minor"],
        )
    if status == AuthStatus.VOIDED:
        raise Conflict("already_voided", "a voided authorization cannot be captured")
    raise Conflict("not_authorized", "a declined authorization cannot be captured")


def plan_void(auth: Mapping[str, Any]) -> dict[str, Any]:
    """The changes a void makes ({} when there is nothing to release)."""
    status = auth["status"]
    if status == AuthStatus.AUTHORIZED:
        return {"status": AuthStatus.VOIDED.value}
    if status in CAPTURED_STATES:
        raise Conflict("already_captured", "a captured authorization cannot be voided; refund it")
    return {}  # voided or declined: nothing is held on the card


def plan_refund(auth: Mapping[str, Any], amount_minor: int | None) -> dict[str, Any]:
    """The changes a refund makes; by default everything captured and not yet refunded."""
    if auth["status"] not in CAPTURED_STATES:
        raise Conflict("not_captured", "only a captured authorization can be refunded")
    refundable = auth["captured_minor"] - auth["refunded_minor"]
    amount = refundable if amount_minor is None else amount_minor
    if amount > refundable:
        raise InvalidRequest(
            "refund_exceeds_capture",
            "the refund is larger than what was captured and not yet refunded",
            refundable_minor=refundable,
        )
    if amount == 0:
        return {}
    refunded = auth["refunded_minor"] + amount
    status = AuthStatus.REFUNDED if refunded == auth["captured_minor"] else AuthStatus.PARTIALLY_REFUNDED
    return {"status": status.value, "refunded_minor": refunded}


async def change(
    *,
    db: Database,
    tracer: Tracer,
    sim: Simulation,
    request: KeyedRequest,
    auth_id: str,
    plan: Callable[[Mapping[str, Any]], dict[str, Any]],
) -> Reply:
    """Capture, void or refund (``request.operation``) an authorization following ``plan``."""
    with _span(tracer, f"gateway.{request.operation}") as span:
        span.set_attribute("payment.transaction_id", auth_id)

        async def work(conn: AsyncConnection) -> Reply:
            row = (await conn.execute(sql.SELECT_AUTHORIZATION_FOR_UPDATE, {"auth_id": auth_id})).first()
            if row is None:
                raise NotFound(message=f"no authorization {auth_id}")
            changes = plan(row._mapping)
            if changes:
                changes["updated_at"] = _now()
                await conn.execute(sql.UPDATE_AUTHORIZATION, {**changes, "authorization": auth_id})
            return Reply(200, view({**row._mapping, **changes}))

        return await _once(db=db, sim=sim, span=span, request=request, work=work)


# --- reads ---------------------------------------------------------------------------------------


async def get_authorization(*, db: Database, auth_id: str) -> dict[str, Any]:
    async with db.read() as conn:
        row = (await conn.execute(sql.SELECT_AUTHORIZATION, {"auth_id": auth_id})).first()
    if row is None:
        raise NotFound(message=f"no authorization {auth_id}")
    return view(row._mapping)


async def find_by_idempotency_key(*, db: Database, key: str) -> dict[str, Any]:
    """The authorization an authorize call with this key made: how a caller resolves a timeout."""
    async with db.read() as conn:
        row = (await conn.execute(sql.SELECT_AUTHORIZATION_BY_KEY, {"idempotency_key": key})).first()
    if row is None:
        raise NotFound(message="no authorization was made with this Idempotency-Key")
    return view(row._mapping)


async def ledger(*, db: Database, reservation_id: str) -> dict[str, Any]:
    """Every authorization of a reservation and the sums of what each step moved."""
    async with db.read() as conn:
        rows = [
            r._mapping
            for r in await conn.execute(sql.SELECT_AUTHORIZATIONS_OF_RESERVATION, {"reservation_id": reservation_id})
        ]
    approved = [r for r in rows if r["status"] != AuthStatus.DECLINED]
    return {
        "reservation_id": reservation_id,
        "authorizations": [view(r) for r in rows],
        "authorized_minor": sum(r["amount_minor"] for r in approved),
        "captured_minor": sum(r["captured_minor"] for r in rows),
        "refunded_minor": sum(r["refunded_minor"] for r in rows),
        "voided_minor": sum(r["amount_minor"] for r in rows if r["status"] == AuthStatus.VOIDED),
        # still held on a card: what a failed booking must never leave behind
        "open_minor": sum(r["amount_minor"] for r in rows if r["status"] == AuthStatus.AUTHORIZED),
    }
