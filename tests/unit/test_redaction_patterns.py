"""What the redaction step scrubs, and what it leaves alone; and that every user of the card filter
(scrub, needs_scrub, looks_like_card_number, card_like_numbers, the audit's card scan) gives one answer."""

import random
import re

import pytest

from bookline.redaction import (
    REDACTED,
    card_like_numbers,
    could_hold_card_number,
    looks_like_card_number,
    luhn_valid,
    needs_scrub,
    scrub,
)
from bookline.services.common.card_scan import holds_card_number


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
        "2027-03-05",
        "check_in 2027-03-05 check_out 2027-03-07",
        "prop-00001-r003",
        "bk_0123456789ab0123456789ab",  # 24 hex, no run of 13 digits
        "bk_c57c0259a70394040169751f",  # 24 hex holding fourteen digits that fail the Luhn check
        "q_70394040169751fdc499fe39",
        "+351 912 345 678",  # a phone number: twelve digits
        "1712345678.123456",  # a timestamp: the point splits it
        "4111 1111 1111",  # twelve digits grouped like a card
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


# every case above, each standing for a kind of text the filter meets
CARDS = [
    "4242424242424242", "4242 4242 4242 4242", "4242-4242-4242-4242", "378282246310005", "card 4111111111111111",
    "u-4111111111111111", "guest_5105105105105100", "x4000056655665556", "371449635398431-z",
    "378282246310005-confirmed", "bk_4242424242424242abcdef01", "ref 99994111111111111111", "6011111111111117x",
]  # fmt: skip
NOT_CARDS = [
    "fdc499fe39f1d3efdc70f965bd8c21e7", "auth_c57c0259a70394040169751f", "bk_0123456789ab0123456789ab",
    "bk_c57c0259a70394040169751f", "2027-03-05", "check_in 2027-03-05 check_out 2027-03-07", "prop-00001-r003",
    "4111111111111112", "order 1234567890123", "total 39464 EUR", "4111 1111 1111", "", "no digits at all",
]  # fmt: skip


@pytest.mark.parametrize("text", CARDS + NOT_CARDS)
def test_every_user_of_the_card_filter_gives_the_same_answer(text: str):
    card = text in CARDS
    assert looks_like_card_number(text) is card
    assert bool(card_like_numbers(text)) is card
    assert needs_scrub(text) is card and (scrub(text) != text) is card
    assert holds_card_number(text) is card  # the audit's card scan
    padded = f"{text} {'.' * 80}"  # a long text's verdict is remembered: the same verdict
    assert needs_scrub(padded) is card and needs_scrub(padded) is card
    assert not looks_like_card_number(scrub(text))
    assert all(luhn_valid(number) and 13 <= len(number) <= 19 for number in card_like_numbers(text))


def _reference_luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _reference_cards(text: str) -> list[bool]:
    """The definition spelled out slowly: every run of digits joined by at most one space or dash, and
    whether it is a card (13 to 19 digits passing Luhn; a longer run, when 13 to 19 of them in a row do)."""
    verdicts = []
    for run in re.finditer(r"\d(?:[ -]?\d)*", text):
        digits = run.group().replace(" ", "").replace("-", "")
        if len(digits) <= 19:
            verdicts.append(len(digits) >= 13 and _reference_luhn(digits))
            continue
        windows = (digits[i : i + n] for n in range(13, 20) for i in range(len(digits) - n + 1))
        verdicts.append(any(_reference_luhn(w) for w in windows))
    return verdicts


def test_the_filter_and_its_shortcuts_agree_with_the_definition_on_random_texts():
    # no hex letters here, so no trace id or digest is exempt: only the definition decides
    rng = random.Random(11)
    alphabet = "0123456789" * 6 + "  --_xuz."
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(5, 70)))
        expected = _reference_cards(text)
        assert looks_like_card_number(text) is any(expected), text
        assert len(card_like_numbers(text)) == sum(expected), text
        assert needs_scrub(text) is any(expected), text
        if any(expected):
            assert could_hold_card_number(text), text  # the shortcut never hides a card


def test_luhn_sums_ascii_digits_and_the_digits_of_other_scripts_alike():
    rng = random.Random(5)
    for _ in range(2000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randrange(13, 20)))
        assert luhn_valid(digits) is _reference_luhn(digits), digits
    arabic_indic = "4242424242424242".translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert luhn_valid(arabic_indic) and looks_like_card_number(f"card {arabic_indic}")


def test_a_uuid_is_an_id_even_when_its_digit_groups_pass_luhn():
    # 8-4-4-4 groups of digits joined by dashes read as one long run: a UUID, as uuidgen makes them
    uuid_like = "12345678-1234-4123-8123-12345678901a"
    assert not looks_like_card_number(uuid_like) and scrub(uuid_like) == uuid_like
    assert looks_like_card_number("4111-1111-1111-1111")
