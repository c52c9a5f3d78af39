"""What the redaction step scrubs, and what it leaves alone."""

from bookline.redaction import REDACTED, card_like_numbers, looks_like_card_number, luhn_valid, scrub


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


def test_a_card_number_joined_to_a_word_is_found_wherever_it_stands():
    for text, kept in (
        ("u-4111111111111111", "u-"),
        ("guest_5105105105105100", "guest_"),
        ("x4000056655665556", "x"),
        ("371449635398431-z", "-z"),
        ("378282246310005-confirmed", "-confirmed"),
        ("no property u-4111111111111111", "no property u-"),
        ("bk_4242424242424242abcdef01", "bk_"),
        ("4111 1111 1111 1111", ""),
        ("4111-1111-1111-1111", ""),
    ):
        assert looks_like_card_number(text), text
        digits = "".join(c for c in text if c.isdigit())[:19]
        assert REDACTED in scrub(text) and kept in scrub(text)
        assert digits[:13] not in scrub(text).replace(" ", "").replace("-", ""), scrub(text)


def test_a_card_glued_to_more_digits_is_found_and_a_run_failing_luhn_is_not():
    glued = "ref 99994111111111111111"
    assert looks_like_card_number(glued) and "4111111111111111" not in scrub(glued)
    assert all(luhn_valid(card) for card in card_like_numbers(glued))
    assert not looks_like_card_number("4111111111111112")  # sixteen digits, no checksum
    assert not looks_like_card_number("order 1234567890123")


def test_luhn_is_one_function_for_the_gateway_and_the_redaction():
    from bookline.services.gateway import cards

    assert cards.luhn_valid is luhn_valid
    assert luhn_valid("4242424242424242") and not luhn_valid("4242424242424241")


def test_trace_ids_span_ids_and_digests_are_hex_values_not_cards():
    digest = "d4111111111111111c71c38aebd204e8281425c09180820d535e4e03f38d0abc"  # 64 hex
    trace_id = "4111111111111111" + "abcdef0123456789"
    parent = f"00-{trace_id}-4111111111111111ab-01"[:-5] + "-01"
    for text in (digest, trace_id, f"00-{trace_id}-00f067aa0ba902b7-01", parent[:3] + trace_id):
        assert not looks_like_card_number(text), text
    assert looks_like_card_number("4111111111111111")  # sixteen digits alone are a card, not a span id
    assert looks_like_card_number("bk_4111111111111111abcdef01")  # an id of another length is not exempt
