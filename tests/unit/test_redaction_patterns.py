"""What the redaction step scrubs, and what it leaves alone."""

from bookline.redaction import REDACTED, looks_like_card_number, scrub


def test_card_numbers_are_scrubbed_whatever_their_separators():
    for number in ("4242424242424242", "4242 4242 4242 4242", "4242-4242-4242-4242", "378282246310005"):
        assert scrub(f"card {number} was used") == f"card {REDACTED} was used"


def test_emails_and_sensitive_query_parameters_are_scrubbed():
    assert scrub("mail guest@example.com now") == f"mail {REDACTED} now"
    assert scrub("/v1/tokens?number=4111&cvc=123&x=1") == f"/v1/tokens?number={REDACTED}&cvc={REDACTED}&x=1"


def test_ids_and_short_numbers_are_left_alone():
    for text in (
        "fdc499fe39f1d3efdc70f965bd8c21e7",  # a trace id
        "auth_c57c0259a70394040169751f",  # fourteen digits in a row, inside an id
        "70394040169751fdc499fe39f1d3efdc",  # a trace id that starts with them
        "rsv_b8867add0d0e4187b244f153",
        "5f0c6e1a-2b3c-4d5e-8f90-123456789012",  # a uuid: its last group has 12 digits
        "total 39464 EUR",
        "2026-12-05",
        "prop-00001-r003",
    ):
        assert scrub(text) == text
        assert not looks_like_card_number(text)


def test_a_card_number_is_recognised_inside_an_id():
    assert looks_like_card_number("user 4242424242424242")
