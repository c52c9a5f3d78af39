"""payment-gateway HTTP API: card tokens, authorizations with capture, void and refund, the ledger."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from bookline.adapters.migrations import script_location
from bookline.config import Settings
from bookline.domain import ids
from bookline.faults import FaultFile
from bookline.services import gateway
from bookline.services.common.app import create_service_app, documented, service_database
from bookline.services.common.auth import Auth
from bookline.services.common.fields import AuthorizationIdPath, CardToken, Currency, NoCard, ReservationId
from bookline.services.gateway import handlers
from bookline.services.gateway.admin import add_admin_routes
from bookline.services.gateway.handlers import KeyedRequest, Reply
from bookline.telemetry import ServiceTelemetry

NAME = "payment-gateway"

Money = Annotated[int, Field(gt=0, le=10**12, strict=True)]
# required (a missing one answers 400 missing_idempotency_key, see common.app)
IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=200)]
ERRORS = documented(401, 402, 403, 404, 409, 429, 502)


class CardIn(BaseModel):
    """A card to tokenize. Loosely typed on purpose: every check, and its ``invalid_card`` answer,
    is in ``cards.examine_card``; ``repr=False`` keeps the values out of any repr or log."""

    number: str | int = Field(repr=False)
    exp_month: int | str = Field(repr=False)
    exp_year: int | str = Field(repr=False)
    cvc: str | int = Field(repr=False)


class AuthorizeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: CardToken
    amount_minor: Money
    currency: Currency
    reservation_id: ReservationId


class AmountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_minor: Money | None = None


def _json(reply: Reply) -> JSONResponse:
    return JSONResponse(reply.body, status_code=reply.status)


def build_app(settings: Settings, telemetry: ServiceTelemetry, *, rng: random.Random | None = None) -> FastAPI:
    """The gateway app. ``rng`` decides the random faults (pass a seeded one for a repeatable run)."""
    db = service_database(settings, NAME)
    sim = handlers.Simulation.from_settings(settings, rng, faults=FaultFile(settings.faults_path))
    tracer = telemetry.tracer

    app = create_service_app(
        title="Bookline payment-gateway",
        telemetry=telemetry,
        db=db,
        migrations=script_location(gateway.__file__),
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.request_body_timeout_s,
    )
    auth = Auth(settings, NAME)
    # a card processor's API key, as it were: only booking-service moves money
    booking_only = [Depends(auth.services("booking-service"))]

    @app.post("/v1/tokens", status_code=201)
    async def create_token(body: CardIn) -> dict[str, Any]:
        return await handlers.tokenize(
            db=db,
            tracer=tracer,
            number=body.number,
            exp_month=body.exp_month,
            exp_year=body.exp_year,
            cvc=body.cvc,
            today=datetime.now(UTC).date(),
        )

    @app.post("/v1/authorizations", status_code=201, dependencies=booking_only, responses=ERRORS)
    async def authorize(body: AuthorizeIn, idempotency_key: IdempotencyKey) -> JSONResponse:
        request = KeyedRequest.of(idempotency_key, "authorize", **body.model_dump())
        return _json(await handlers.authorize(db=db, tracer=tracer, sim=sim, request=request, **body.model_dump()))

    async def change(operation: str, auth_id: str, key: str | None, plan: Any, **fields: Any) -> JSONResponse:
        request = KeyedRequest.of(key, operation, auth_id=auth_id, **fields)
        return _json(await handlers.change(db=db, tracer=tracer, sim=sim, request=request, auth_id=auth_id, plan=plan))

    @app.post("/v1/authorizations/{auth_id}/capture", dependencies=booking_only, responses=ERRORS)
    async def capture(
        auth_id: AuthorizationIdPath,
        idempotency_key: IdempotencyKey,
        body: Annotated[AmountIn | None, Body()] = None,
    ) -> JSONResponse:
        amount = body.amount_minor if body else None
        plan = lambda auth: handlers.plan_capture(auth, amount)  # noqa: E731
        return await change("capture", auth_id, idempotency_key, plan, amount_minor=amount)

    @app.post("/v1/authorizations/{auth_id}/void", dependencies=booking_only, responses=ERRORS)
    async def void(auth_id: AuthorizationIdPath, idempotency_key: IdempotencyKey) -> JSONResponse:
        return await change("void", auth_id, idempotency_key, handlers.plan_void)

    @app.post("/v1/authorizations/{auth_id}/refund", dependencies=booking_only, responses=ERRORS)
    async def refund(
        auth_id: AuthorizationIdPath,
        idempotency_key: IdempotencyKey,
        body: Annotated[AmountIn | None, Body()] = None,
    ) -> JSONResponse:
        amount = body.amount_minor if body else None
        plan = lambda auth: handlers.plan_refund(auth, amount)  # noqa: E731
        return await change("refund", auth_id, idempotency_key, plan, amount_minor=amount)

    @app.get("/v1/authorizations/{auth_id}", dependencies=booking_only, responses=ERRORS)
    async def get_authorization(auth_id: AuthorizationIdPath) -> dict[str, Any]:
        return await handlers.get_authorization(db=db, auth_id=auth_id)

    @app.get("/v1/authorizations", dependencies=booking_only, responses=ERRORS)
    async def find_authorization(
        idempotency_key: Annotated[str, Query(min_length=1, max_length=200), NoCard],
    ) -> dict[str, Any]:
        return await handlers.find_by_idempotency_key(db=db, key=idempotency_key)

    @app.get("/v1/ledger", dependencies=booking_only, responses=ERRORS)
    async def ledger(
        reservation_id: Annotated[str, Query(pattern=ids.RESERVATION_ID, max_length=28), NoCard],
    ) -> dict[str, Any]:
        return await handlers.ledger(db=db, reservation_id=reservation_id)

    add_admin_routes(app, settings, db)
    return app
