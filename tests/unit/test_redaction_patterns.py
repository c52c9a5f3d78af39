"""What the redaction step scrubs, and what it leaves alone; and that every user of the card filter
(scrub, needs_scrub, looks_like_card_number, card_like_numbers, the audit's card scan) gives one answer,
as every user of the e-mail and phone patterns does (scrub, needs_scrub, personal_data_kinds, the data
scan), and how the data scan finds a guest's name."""

import json
import logging
import random
import re

import pytest

from bookline.redaction import (
    REDACTED,
    card_like_numbers,
    could_hold_card_number,
    looks_like_card_number,
    looks_like_email,
    looks_like_phone,
    luhn_valid,
    needs_scrub,
    needs_scrub_unremembered,
    personal_data_kinds,
    scrub,
)
from bookline.services.common.data_scan import (
    GUEST_COLUMNS,
    DataScan,
    GuestNames,
    holds_card_number,
    personal_data_in,
)
from bookline.telemetry import RedactingFilter


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
        "1712345678.123456",  # a timestamp: the point splits it
        "4111 1111 1111",  # twelve digits grouped like a card
    ):
        assert scrub(text) == text
        assert not looks_like_card_number(text)


def test_a_phone_number_is_no_card_but_is_scrubbed_as_a_phone():
    assert not looks_like_card_number("+351 912 345 678")  # twelve digits
    assert scrub("+351 912 345 678") == REDACTED


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
    # a span id without a hex letter, joined to the flags: "4111111111111110-01" is a card by itself
    all_digits = f"00-{trace_id}-4111111111111110-01"
    assert not looks_like_card_number(all_digits)
    assert not looks_like_card_number('{"traceparent":"' + all_digits + '"}')
    assert looks_like_card_number("4111111111111110-01")  # the control: outside a traceparent it is a card
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


# ---- phone numbers and e-mail addresses ------------------------------------------------------------

PHONES = [
    ("+351912345678", REDACTED),
    ("+351 912 345 678", REDACTED),
    ("+1-415-555-0100", REDACTED),
    ("+44.20.7946.0958", REDACTED),
    ("+12345678", REDACTED),  # 8 digits, the fewest
    ("+123456789012345", REDACTED),  # 15 digits, the most
    ("call +351 912 345 678 now", f"call {REDACTED} now"),
    ("tel:+14155550100", f"tel:{REDACTED}"),
    ("(+351912345678)", f"({REDACTED})"),
    ("guest +351912345678.", f"guest {REDACTED}."),
    ('{"guest.phone":"+351 912 345 678"}', f'{{"guest.phone":"{REDACTED}"}}'),
    ("/v1/guests?tel=%2B351912345678&x=1", f"/v1/guests?tel={REDACTED}&x=1"),  # the "+" URL-encoded
    ("/v1/guests?phone=912345678", f"/v1/guests?phone={REDACTED}"),  # a parameter named so, whatever its value
]
NOT_PHONES = [
    "2025-03-14T10:00:00+01:00",  # an ISO time with its offset
    "2025-03-14T10:00:00+0100",
    "+1",
    "+44",
    "+1234567",  # seven digits
    "+0123456789",  # E.164 has no leading 0
    "+3519123456789012",  # sixteen digits
    "1.2.3+20250314",  # semver build metadata
    "v2.0.0+build.123456789",
    "bookline-1.4.0+g1234abcd",
    "+12345678ms",  # a duration
    "took +1500 ms",
    "+1.5s",
    "+00:30",
    "x+12345678",  # an expression, no space
    "UPDATE rooms SET version = version + 1 WHERE room_id = ?",  # SQL with "+"
    "SELECT price + 100000000 FROM rates",
    "SELECT a+b FROM t WHERE c > 10",
    "id 12345678+87654321",
]


@pytest.mark.parametrize(("text", "scrubbed"), PHONES)
def test_a_phone_number_is_scrubbed_however_it_is_grouped_and_wherever_it_stands(text: str, scrubbed: str):
    assert scrub(text) == scrubbed
    assert needs_scrub(text) and needs_scrub_unremembered(text)
    if "phone=" not in text:
        assert looks_like_phone(text) and personal_data_kinds(text) == {"phone"}
    assert not looks_like_phone(scrub(text)) and personal_data_kinds(scrub(text)) == set()


@pytest.mark.parametrize("text", NOT_PHONES)
def test_times_versions_durations_and_sql_are_not_phone_numbers(text: str):
    assert not looks_like_phone(text)
    assert not needs_scrub(text) and scrub(text) == text
    assert personal_data_kinds(text) == set()
    padded = f"{text} {'.' * 80}"  # a long text's verdict is remembered: the same verdict
    assert not needs_scrub(padded) and not needs_scrub(padded)


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ('{"guest":{"email":"ana.lopez@example.com"}}', f'{{"guest":{{"email":"{REDACTED}"}}}}'),
        ('{"to":"Ana+hotel@mail.example.pt","n":1}', f'{{"to":"{REDACTED}","n":1}}'),
        ("/v1/bookings?email=ana@example.com&x=1", f"/v1/bookings?email={REDACTED}&x=1"),
        ("/v1/bookings?email=ana%40example.com", f"/v1/bookings?email={REDACTED}"),
        ("/v1/mail?to=ana%40example.com&x=1", f"/v1/mail?to={REDACTED}&x=1"),  # the "@" URL-encoded
        ("sent the confirmation to ana@example.com for bk_1", f"sent the confirmation to {REDACTED} for bk_1"),
    ],
)
def test_an_email_address_is_scrubbed_in_json_in_a_query_string_and_in_a_sentence(text: str, scrubbed: str):
    assert scrub(text) == scrubbed
    assert needs_scrub(text) and looks_like_email(text) and "email" in personal_data_kinds(text)
    assert not looks_like_email(scrub(text))


def test_a_log_line_loses_the_phone_and_the_email_of_its_message_and_its_arguments():
    record = logging.LogRecord(
        "bookline.test",
        logging.INFO,
        __file__,
        1,
        "guest %s called from %s",
        ("ana@example.com", "+1 415 555 0100"),
        None,
    )
    RedactingFilter().filter(record)

    assert record.getMessage() == f"guest {REDACTED} called from {REDACTED}"


def test_control_a_log_line_without_the_filter_keeps_them():
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "from %s", ("+1 415 555 0100",), None)
    assert record.getMessage() == "from +1 415 555 0100"  # what the filter is there to remove


def test_personal_data_kinds_names_every_kind_a_text_holds():
    assert personal_data_kinds("card 4242424242424242, ana@example.com, +351912345678") == {"card", "email", "phone"}
    assert personal_data_kinds("ana@example.com") == {"email"}
    assert personal_data_kinds("bk_c57c0259a70394040169751f 2027-03-05") == set()
    assert personal_data_kinds("") == set()


def test_a_phone_in_a_json_string_is_seen_in_the_whole_json_whatever_escape_stands_before_it():
    # the telemetry store asks needs_scrub once of a span's attributes as compact JSON, and only then
    # scrubs each string: a phone in a string must be seen in the JSON, where "\n" puts an "n" before it
    for before in ("\n", "\t", "\r", "\x01", "\u2028", '"', "\\", " ", "/"):
        value = {"note": f"line{before}+351912345678"}
        assert looks_like_phone(value["note"]), before
        for encoded in (json.dumps(value, ensure_ascii=False, separators=(",", ":")), json.dumps(value)):
            assert needs_scrub_unremembered(encoded), encoded
            assert "+351912345678" not in scrub(encoded)
    assert not looks_like_phone("lineé+351912345678")  # a letter before it, in any script: no phone


def test_a_phone_that_follows_a_redacted_one_is_redacted_as_well():
    text = "+1 415 555 0100+351912345678"  # the second "+" follows a digit: a phone once the first is gone

    assert scrub(text) == REDACTED + REDACTED
    assert not looks_like_phone(scrub(text)) and scrub(scrub(text)) == scrub(text)


def _reference_phones(text: str) -> bool:
    """The definition spelled out slowly: a "+" with no word character before it, then digits with at
    most one space, dash or dot between two of them, of which the first 8 to 15 (the first not 0) end
    where no word character follows."""
    for start, char in enumerate(text):
        if char != "+" or (start and (text[start - 1].isalnum() or text[start - 1] == "_")):
            continue
        position, digits = start + 1, 0
        while position < len(text):
            if text[position].isdigit():
                digits += 1
                position += 1
            elif text[position] in " .-" and digits and position + 1 < len(text) and text[position + 1].isdigit():
                position += 1
                continue
            else:
                break
            if digits == 1 and text[position - 1] == "0":
                break
            follows = text[position] if position < len(text) else ""
            if 8 <= digits <= 15 and not (follows.isalnum() or follows == "_"):
                return True
    return False


def test_the_phone_pattern_agrees_with_the_definition_on_random_texts():
    rng = random.Random(17)
    alphabet = "0123456789" * 4 + "++  --..x_:"
    for _ in range(4000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(5, 40)))
        assert looks_like_phone(text) is _reference_phones(text), text
        if looks_like_phone(text):
            assert needs_scrub(text) and not looks_like_phone(scrub(text)), text


# ---- the data scan: one definition with the redaction, and names found by value -------------------


@pytest.mark.parametrize(
    "text",
    [
        "+351 912 345 678",
        "ana@example.com",
        "4242424242424242",
        json.dumps({"guest": {"phone": "+351912345678"}}),
        '{"note":"mail ana\\u0040example.com"}',  # the "@" a JSON escape: found once parsed
        json.dumps(["a", {"k": "line\n+14155550100"}]),
        "nothing here",
        "SELECT a + 1",
        json.dumps({"time_unix_nano": 1712345678901234567}),
    ],
)
def test_the_data_scan_finds_what_the_redaction_scrubs(text: str):
    strings = [text]
    if text.startswith(("{", "[")):
        strings = []

        def walk(v):
            if isinstance(v, str):
                strings.append(v)
            elif isinstance(v, dict):
                for k, inner in v.items():
                    strings.append(k)
                    walk(inner)
            elif isinstance(v, list):
                for inner in v:
                    walk(inner)

        walk(json.loads(text))
    expected = set().union(*(personal_data_kinds(s) for s in strings))
    assert personal_data_in(text) == expected
    assert bool(expected) is any(needs_scrub(s) for s in strings)
    assert holds_card_number(text) is ("card" in expected)  # the card scan: the same cards


def test_the_data_scan_reads_json_escapes_and_leaves_json_numbers_alone():
    assert personal_data_in('{"note":"mail ana\\u0040example.com"}') == {"email"}
    assert personal_data_in('{"note":"\\u002b351912345678"}') == {"phone"}
    assert personal_data_in('{"n":351912345678,"t":1712345678901234567}') == set()
    assert personal_data_in(None) == set() and personal_data_in("") == set()


def test_a_name_is_found_as_whole_words_whatever_its_case():
    names = GuestNames(["Ana Lopez", "Zoë Ångström"])

    assert names.found_in("…guest Ana Lopez booked room 3…")
    assert names.found_in("ANA LOPEZ")
    assert names.found_in("note: ana lopez, late arrival")
    assert names.found_in("Ana  Lopez") and names.found_in("Ana\nLopez")  # white space is white space
    assert names.found_in("ZOË ÅNGSTRÖM")
    assert not names.found_in("Anastasia Lopez")
    assert not names.found_in("Ana Lopezes")
    assert not names.found_in("Ana_Lopez")  # one word
    assert not names.found_in("Lopez Ana") and not names.found_in("Lopez, Ana")
    assert not names.found_in("Ana M. Lopez")
    assert not names.found_in("ana.lopez@example.com")  # an e-mail address, found as one


def test_a_name_is_found_separated_as_it_is_stored():
    names = GuestNames(["Jean-Luc Picard", "Siobhán O'Brien"])

    assert names.found_in("guest jean-luc picard") and names.found_in("for SIOBHÁN O'BRIEN")
    assert not names.found_in("Jean Luc Picard") and not names.found_in("Siobhán O Brien")


def test_names_shorter_than_three_characters_are_not_looked_for():
    names = GuestNames(["Al", " J ", "", "Bo", "Li Na"])

    assert not names.found_in("Al and Bo met J at the bar")
    assert names.found_in("guest li na") and len(names) == 1
    assert not GuestNames(["Al"])  # nothing to look for


def test_a_name_in_a_row_key_is_redacted_and_only_the_place_is_named():
    scan = DataScan(names=GuestNames(["Ana Lopez"]))
    scan.row("notes", "ana lopez/1", [("text", "for Ana Lopez"), ("other", "nothing")])
    scan.row("notes", "n2", [("text", "call +351912345678 or ana@example.com")])
    scan.row("notes", "n3", [("text", "Anastasia Lopez")])

    body = scan.body()

    assert body["hits"] == [
        {"kind": "name", "table": "notes", "column": "text", "row_key": f"{REDACTED}/1"},
        {"kind": "email", "table": "notes", "column": "text", "row_key": "n2"},
        {"kind": "phone", "table": "notes", "column": "text", "row_key": "n2"},
    ]
    assert (body["rows_scanned"], body["rows_with_hits"], body["truncated"]) == (3, 2, False)
    assert "Ana Lopez".lower() not in json.dumps(body).lower() and "351912345678" not in json.dumps(body)


def test_the_guest_columns_are_skipped_and_control_without_the_allow_list_they_are_found():
    row = [("guest_name", "Ana Lopez"), ("guest_email", "ana@example.com"), ("guest_phone", "+351912345678")]
    allowed = DataScan(names=GuestNames(["Ana Lopez"]), allowed=GUEST_COLUMNS)
    allowed.row("bookings", "bk_1", row)
    allowed.row("outbox", "1", [("payload", json.dumps({"guest_name": "Ana Lopez"}))])  # same column name, other table
    control = DataScan(names=GuestNames(["Ana Lopez"]))
    control.row("bookings", "bk_1", row)

    assert [(h["table"], h["kind"]) for h in allowed.body()["hits"]] == [("outbox", "name")]
    assert {(h["column"], h["kind"]) for h in control.body()["hits"]} == {
        ("guest_name", "name"), ("guest_email", "email"), ("guest_phone", "phone")
    }  # fmt: skip
