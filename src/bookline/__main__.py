"""``python -m bookline``: the same CLI as the ``bookline`` command (the supervisor starts children so)."""

from bookline.cli import app

app(prog_name="bookline")
