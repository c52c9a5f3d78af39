"""The guests a load books for: one per simulated customer, with a name, an e-mail address and a
phone number, as a real guest gives them. They are made up (the ``example.com`` domain, a reserved
range of numbers), and they are what the privacy checks look for after a run: none of them may
show up anywhere but booking-service's and confirmation-service's own databases."""

from __future__ import annotations

import hashlib

FIRST = ("Ana", "João", "Marta", "Luís", "Sofia", "Pedro", "Inês", "Tiago", "Clara", "Miguel",
         "Emma", "Noah", "Olivia", "Liam", "Chloé", "Hugo", "Yuki", "Haruto", "Greta", "Jonas")  # fmt: skip
LAST = ("Almeida", "Ferreira", "Costa", "Martins", "Moreau", "Dubois", "Schneider", "Fischer",
        "Rossi", "Bianchi", "Walsh", "Murphy", "Tanaka", "Sato", "Jansen", "de Vries")  # fmt: skip


def guest_of(customer: str) -> dict[str, str]:
    """The guest a customer books for: always the same for the same customer id."""
    digest = hashlib.sha256(customer.encode()).digest()
    first, last = FIRST[digest[0] % len(FIRST)], LAST[digest[1] % len(LAST)]
    number = int.from_bytes(digest[2:6], "big") % 10**7
    mailbox = f"{first}.{last}".lower().replace(" ", "").encode("ascii", "ignore").decode()
    return {
        "name": f"{first} {last}",
        "email": f"{mailbox}.{number}@example.com",
        # +351 91 then seven digits: the shape of a Portuguese mobile number
        "phone": f"+35191{number:07d}",
    }
