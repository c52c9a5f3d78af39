"""The forward-only life of an authorization: what capture, void and refund may change."""

import pytest

from bookline.domain.errors import Conflict, InvalidRequest
from bookline.services.gateway.handlers import plan_capture, plan_refund, plan_void


def auth(status="authorized", amount=1000, captured=0, refunded=0):
    return {"status": status, "amount_minor": amount, "captured_minor": captured, "refunded_minor": refunded}


def test_capture_defaults_to_the_authorized_amount_and_may_be_partial():
    assert plan_capture(auth(), None) == {"status": "captured", "captured_minor": 1000}
    assert plan_capture(auth(), 600) == {"status": "captured", "captured_minor": 600}


def test_capture_over_the_authorized_amount_is_refused():
    with pytest.raises(InvalidRequest) as refused:
        plan_capture(auth(), 1001)
    assert refused.value.code == "capture_exceeds_authorization"


def test_capturing_again_as_asked_changes_nothing_but_another_amount_conflicts():
    assert plan_capture(auth("captured", captured=600), None) == {}
    assert plan_capture(auth("refunded", captured=600, refunded=600), 600) == {}
    with pytest.raises(Conflict) as refused:
        plan_capture(auth("captured", captured=600), 700)
    assert refused.value.code == "already_captured"


@pytest.mark.parametrize(("status", "code"), [("voided", "already_voided"), ("declined", "not_authorized")])
def test_a_voided_or_declined_authorization_cannot_be_captured(status, code):
    with pytest.raises(Conflict) as refused:
        plan_capture(auth(status), None)
    assert refused.value.code == code


def test_void_releases_an_open_authorization_and_tolerates_nothing_to_undo():
    assert plan_void(auth()) == {"status": "voided"}
    assert plan_void(auth("voided")) == {}
    assert plan_void(auth("declined")) == {}


@pytest.mark.parametrize("status", ["captured", "partially_refunded", "refunded"])
def test_a_captured_authorization_cannot_be_voided(status):
    with pytest.raises(Conflict) as refused:
        plan_void(auth(status, captured=1000))
    assert refused.value.code == "already_captured"


def test_refund_defaults_to_what_is_left_and_partial_refunds_add_up():
    assert plan_refund(auth("captured", captured=800), 300) == {
        "status": "partially_refunded",
        "refunded_minor": 300,
    }
    assert plan_refund(auth("partially_refunded", captured=800, refunded=300), None) == {
        "status": "refunded",
        "refunded_minor": 800,
    }
    assert plan_refund(auth("refunded", captured=800, refunded=800), None) == {}


def test_refund_over_what_is_left_is_refused():
    with pytest.raises(InvalidRequest) as refused:
        plan_refund(auth("partially_refunded", captured=800, refunded=300), 501)
    assert refused.value.code == "refund_exceeds_capture"
    assert refused.value.details == {"refundable_minor": 500}


@pytest.mark.parametrize("status", ["authorized", "voided", "declined"])
def test_only_a_captured_authorization_can_be_refunded(status):
    with pytest.raises(Conflict) as refused:
        plan_refund(auth(status), None)
    assert refused.value.code == "not_captured"
