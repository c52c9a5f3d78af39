"""Schemathesis against the OpenAPI document of every Bookline service and of the telemetry store.

One in-process stack of this module's own (every service and the store on real localhost ports) is
fuzzed over real HTTP with every check Schemathesis has: no 5xx, responses that match their schema,
statuses, content types and headers that are documented, the method, header and auth probes, and
positive and negative data. Each operation gets the credential its route admits (a customer token on
booking-service's /bookings, elsewhere a service credential of the service the route lists) through
Schemathesis' auth, so a case generated without it goes without it and ``ignored_auth`` sends every
secured call again with no credential and a wrong one (the 401s).

Examples per operation are bounded and the run is derandomized: the same cases every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.core.failures import Failure
from schemathesis.openapi.checks import RejectedPositiveData

from bookline.auth.customers import mint_customer_token
from bookline.auth.services import ServiceCredentials
from bookline.config import SERVICES, TELEMETRY_STORE
from bookline.redaction import looks_like_card_number
from bookline.seed import property_id_of, seed_inventory
from support.booking import APPROVE, DECLINE, Client
from support.stack import InProcessStack, free_ports, stack_settings

# pytest compiles a plugin's modules itself (assertion rewriting), and one of Schemathesis' checks
# imports its error-feedback parsers lazily, deep in Hypothesis' stack, where CPython 3.11
# may raise "SystemError: AST constructor recursion depth mismatch" (gh-106905, pytest#10763).
# Importing them here, at the top of the stack, keeps that compile out of the test.
with contextlib.suppress(ImportError):
    import schemathesis.core.error_feedback.collector  # noqa: F401

# every API that has an OpenAPI document: the six services and the telemetry store
APIS = (*(s.name for s in SERVICES), TELEMETRY_STORE.name)
# notification-service takes its work from the queue: its only routes are health and the admin reads,
# none in its OpenAPI, so there is nothing to fuzz (test_notification_service_has_no_public_operations)
NO_OPERATIONS = ("notification-service",)
FUZZED = tuple(api for api in APIS if api not in NO_OPERATIONS)
# the one caller an internal route admits where it is not booking-service
CALLER = {("availability-service", "POST", "/holds/{reservation_id}/commit"): "confirmation-service"}
# open to anyone (no credential): booking-service's inventory search, the gateway's card tokenization
# and the telemetry store's reads (open on loopback)
OPEN = {
    ("booking-service", "GET", "/properties"),
    ("booking-service", "GET", "/properties/{property_id}"),
    ("booking-service", "GET", "/availability"),
    ("payment-gateway", "POST", "/v1/tokens"),
}
PROPERTIES, ROOMS = 3, 4
MAX_EXAMPLES = 25

# the services run in threads of this process and draw from the global `random` (jitter, fault
# rates) while Hypothesis generates a case, which it takes for a strategy that uses `random`
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")

load_all_checks()
ALL_CHECKS = [check for check in CHECKS.get_all() if callable(check) and not isinstance(check, type)]


# ---- what JSON Schema cannot say -------------------------------------------------------------------
#
# Some rules of Bookline's input are beyond JSON Schema: no card-like digit run (13 to 19 digits
# passing the Luhn check) in any id, a stay that starts today or later and ends after it starts, a
# card that passes the processor's checks (and that it does not decline), an opaque cursor, what
# the stored state allows. A schema-valid request can break them and is refused with a documented
# 4xx. Two things follow:
#
# * positive cases are mostly made to keep them (``runtime_valid``), so that the fuzzing gets past
#   them to holds, prices, quotes, tokens and the booking saga, whose 2xx answers are checked too;
#   one case in four is left as generated, so the refusals are exercised as well;
# * positive_data_acceptance does not count a refusal by one of these rules (``refused_by_a_rule``);
#   any other refusal of a schema-valid request still fails it.

RULES = frozenset(
    {
        "check_out_not_after_check_in",
        "check_in_in_past",
        "check_in_too_far",
        "stay_too_long",
        "invalid_stay",
        "invalid_cursor",
        "invalid_card",
        "invalid_idempotency_key",
        "idempotency_key_reused",
        "reservation_id_reused",
        "guests_exceed_capacity",
        "payment_declined",
        # a cancellation's refund and penalty add up to the stored booking's price
        "invalid_cancellation_amounts",
    }
)
CARD_LIKE = "must not look like a card number"
# a guest's e-mail address by the RFC's full syntax, a name without control characters of any script:
# checked by the validators beyond what the schema's format and pattern say
GUEST_FIELD = "guest."
# a time zone's pattern is in the schema; that it names a zone of the IANA database is the validator's
UNKNOWN_ZONE = "must be an IANA time zone, e.g. Europe/Lisbon"
# JSON Schema counts 2.0 as an integer; Bookline's strict integers (pydantic strict=True) refuse it
NOT_AN_INT = "Input should be a valid integer"
UVICORN_INVALID_REQUEST = b"Invalid HTTP request received."
_DIGIT_TO_HEX_LETTER = str.maketrans("0123456789", "abcdefabcd")


def _has_integral_float(value: object) -> bool:
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, dict):
        return any(_has_integral_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_integral_float(v) for v in value)
    return False


def refused_by_a_rule(case: schemathesis.Case, response: Any) -> bool:
    if response.status_code not in (400, 402, 422):
        return False
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    if error.get("code") in RULES:
        return True
    if error.get("code") != "validation_error":
        return False
    integral_floats = _has_integral_float(case.body)
    return all(
        part.endswith((CARD_LIKE, UNKNOWN_ZONE))
        or part.startswith(GUEST_FIELD)
        or (integral_floats and part.endswith(NOT_AN_INT))
        for part in str(error.get("message", "")).split("; ")
    )


def is_the_servers_own_400(response: Any) -> bool:
    """uvicorn's answer to what is not HTTP at all (a negative case's header that its parser refuses,
    such as an empty Content-Length): plain text, before any app, so no API document can describe it."""
    return (
        response.status_code == 400
        and response.content == UVICORN_INVALID_REQUEST
        and "traceresponse" not in response.headers
    )


def _without_card_runs(value: Any) -> Any:
    """``value`` with the digits of any card-like string turned into hex letters (every id pattern
    takes them: hex ids, inventory ids, customer ids)."""
    if isinstance(value, str):
        return value.translate(_DIGIT_TO_HEX_LETTER) if looks_like_card_number(value) else value
    if isinstance(value, dict):
        return {k: _without_card_runs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_card_runs(v) for v in value]
    return value


def _bookable_stay(part: dict[str, Any], seed: int) -> None:
    if not {"check_in", "check_out"} <= part.keys():
        return
    check_in = datetime.now(UTC).date() + timedelta(days=1 + seed % 600)
    part["check_in"] = check_in.isoformat()
    part["check_out"] = (check_in + timedelta(days=1 + seed % 3)).isoformat()
    if seed % 2 and "property_id" in part:  # every other one in the seeded inventory
        property_id = property_id_of(1 + seed % PROPERTIES)
        room = f"{property_id}-r{1 + seed % ROOMS:03d}"
        part["property_id"] = property_id
        if "room_id" in part:
            part["room_id"] = room
        if "room_ids" in part:
            part["room_ids"] = [room]


def runtime_valid(case: schemathesis.Case, cards: list[dict[str, str]]) -> schemathesis.Case:
    """Three positive cases in four made to keep the rules JSON Schema cannot say (see above):
    no card-like run in any value, a stay a guest could book today, and on POST /bookings a card
    token the gateway gave out (one approves, one declines); POST /v1/tokens gets a test card."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    seed = zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode())
    if seed % 4 == 0:
        return case
    if case.path_parameters:
        case.path_parameters = _without_card_runs(case.path_parameters)
    if case.query:
        case.query = _without_card_runs(case.query)
    if case.headers:
        case.headers = {
            k: v if k.lower() == "authorization" else _without_card_runs(v) for k, v in case.headers.items()
        }
    if isinstance(case.body, dict):
        case.body = _without_card_runs(case.body)
        _bookable_stay(case.body, seed)
        if isinstance(case.body.get("guest"), dict):
            case.body["guest"] = {"name": f"Guest {seed % 1000}", "email": f"guest.{seed % 1000}@example.com"}
        if isinstance(case.body.get("payment"), dict):
            card = cards[seed % len(cards)]
            case.body["payment"] = {**case.body["payment"], "token": card["token"], "card_last_four": card["last4"]}
        if case.path == "/v1/tokens" and seed % 2:
            year = datetime.now(UTC).year + 1 + seed % 5
            case.body = {"number": APPROVE, "exp_month": 1 + seed % 12, "exp_year": year, "cvc": "123"}
    if isinstance(case.query, dict):
        _bookable_stay(case.query, seed)
    return case


# ---- the stack and the schemas ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzzed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessStack]:
    """A stack of this module's own: Schemathesis places holds, tokenizes cards and books."""
    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    s = stack_settings(data_dir, telemetry_port=free_ports(1)[0])
    asyncio.run(seed_inventory(s, properties=PROPERTIES, rooms_per_property=ROOMS, seed=7))
    stack = InProcessStack(s, services=APIS).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def cards(fuzzed_stack: InProcessStack) -> list[dict[str, str]]:
    client = Client.for_stack(fuzzed_stack)
    return [client.tokenize(APPROVE), client.tokenize(DECLINE)]


@pytest.fixture(scope="module", params=FUZZED)
def api(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def api_schema(api: str, fuzzed_stack: InProcessStack, cards: list[dict[str, str]]) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{fuzzed_stack.url(api)}/openapi.json")
    customer = {"Authorization": f"Bearer {mint_customer_token(fuzzed_stack.settings, 'user-1')}"}
    callers: dict[str, ServiceCredentials] = {}

    def credential(method: str, path: str) -> dict[str, str] | None:
        if (api, method, path) in OPEN or api == TELEMETRY_STORE.name:
            return None
        if api == "booking-service":
            return customer
        caller = CALLER.get((api, method, path), "booking-service")
        if caller not in callers:
            callers[caller] = ServiceCredentials.of(caller, fuzzed_stack.settings)
        return callers[caller].headers_for(api)

    @schema.auth(refresh_interval=None)
    class Credential:
        def get(self, case: schemathesis.Case, _ctx: object) -> dict[str, str] | None:
            return credential(case.method.upper(), case.path)

        def set(self, case: schemathesis.Case, data: dict[str, str], _ctx: object) -> None:
            case.headers = {**(case.headers or {}), **data}

    @schema.hook
    def map_case(_ctx: object, case: schemathesis.Case) -> schemathesis.Case:
        return runtime_valid(case, cards)

    @schema.hook
    def filter_failure(_ctx: object, failure: Failure, case: schemathesis.Case, response: Any) -> bool:
        if is_the_servers_own_400(response):
            return False
        return not (isinstance(failure, RejectedPositiveData) and refused_by_a_rule(case, response))

    return schema


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """Schemathesis' lazy schemas (4.32) rename the test item per operation through ``Node._nodeid``,
    which pytest 9.2 no longer has (its node id is ``_id``): give the item the attribute it reads."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=ALL_CHECKS, timeout=10)


def test_notification_service_has_no_public_operations(fuzzed_stack: InProcessStack) -> None:
    """Its document is served and valid, and has no operation: one added must be fuzzed above."""
    for api in NO_OPERATIONS:
        loaded = schemathesis.openapi.from_url(f"{fuzzed_stack.url(api)}/openapi.json")
        assert list(loaded.get_all_operations()) == [], f"{api} has operations now: fuzz it (FUZZED)"
