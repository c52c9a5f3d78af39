"""What the card filter costs: ``needs_scrub`` on the texts every span carries, in nanoseconds per call.

``needs_scrub`` runs on every attribute of every span a service records, and the telemetry store asks
it once per span received (name, status message and attributes as one text), so its common answer,
"nothing to scrub", must stay cheap. This prints the best of five timings for each kind of text: the
common ones (a statement, ids, a span's attributes) and the rare ones that reach the regular
expressions and the Luhn check (a long digit run inside an id, a card number joined to a word).

    python bench/redaction.py [--calls 200000]
"""

from __future__ import annotations

import argparse
import functools
import timeit

from bookline.redaction import needs_scrub, needs_scrub_unremembered

STATEMENT = (
    "INSERT INTO saga_steps (booking_id, step, status, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (booking_id, step) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at"
)
ATTRIBUTES = (
    '{"booking.reservation_id":"rsv_b8867add0d0e4187b244f153","booking.user_id":"guest-42",'
    '"booking.source":"web","booking.property_id":"prop-00001","booking.nights":3,"http.response.status_code":201}'
)
TEXTS = [
    ("SQL statement (remembered)", STATEMENT, needs_scrub),
    ("SQL statement (first sight)", STATEMENT, needs_scrub_unremembered),
    ("trace id (32 hex)", "4bf92f3577b34da6a3ce929d0e0e4736", needs_scrub),
    ("reservation id (rsv_ + 24 hex)", "rsv_b8867add0d0e4187b244f153", needs_scrub),
    ("a span's attributes as JSON", ATTRIBUTES, needs_scrub_unremembered),
    ("id holding a 14-digit run", "bk_c57c0259a70394040169751f", needs_scrub),
    ("card joined to a word", "u-4111111111111111", needs_scrub),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000, help="calls per timing")
    args = parser.parse_args()
    for label, text, check in TEXTS:
        best = min(timeit.repeat(functools.partial(check, text), number=args.calls, repeat=5)) / args.calls
        print(f"{label:34s} {best * 1e9:7.0f} ns   needs scrub: {check(text)}")


if __name__ == "__main__":
    main()
