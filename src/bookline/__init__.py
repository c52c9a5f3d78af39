"""Bookline: a booking and reservation system traced end to end with OpenTelemetry."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bookline")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
