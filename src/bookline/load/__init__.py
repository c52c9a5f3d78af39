"""``bookline load``: an open-model load generator for a running Bookline.

Arrivals come at a constant rate whatever the answers (so a slow system is measured, not obeyed);
each arrival is one operation of a mix (search, book, cancel, duplicate submit), and a share of the
bookings fights over a few hot rooms. The modules: :mod:`.options` (parsing and validation),
:mod:`.schedule` (when each arrival is due), :mod:`.inventory` (what to book), :mod:`.operations`
(what one arrival does over HTTP), :mod:`.stats` (outcomes and percentiles), :mod:`.engine` (the
scheduler), :mod:`.report` (table and JSON) and :mod:`.cli` (the command).
"""
