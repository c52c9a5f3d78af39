"""The trace-id hash of the Collector's ``probabilistic`` tail-sampling policy, bit for bit.

The Collector (``processor/tailsamplingprocessor/internal/sampling/probabilistic.go``) hashes the
salt followed by the 16 trace-id bytes with 64-bit FNV-1a and samples the trace when the hash is at
most ``MaxUint64 * percentage / 100``, a product it computes with ``math/big`` at 64 bits of
precision (round half to even) and then truncates. Doing the same here means a trace gets the same
decision in the local store and in a Collector tier configured with the same policies.
"""

from __future__ import annotations

import math
from fractions import Fraction

MAX_UINT64 = 2**64 - 1
# the salt the Collector uses when hash_salt is empty or absent
DEFAULT_HASH_SALT = "default-hash-seed"

_FNV64_OFFSET = 0xCBF29CE484222325
_FNV64_PRIME = 0x100000001B3


def fnv1a_64(data: bytes, state: int = _FNV64_OFFSET) -> int:
    """64-bit FNV-1a of ``data``, continuing from ``state`` (Go's ``hash/fnv`` New64a + Write)."""
    h = state
    for byte in data:
        h = ((h ^ byte) * _FNV64_PRIME) & MAX_UINT64
    return h


def salt_state(hash_salt: str) -> int:
    """The FNV state after writing the salt, computed once per policy instead of once per trace."""
    return fnv1a_64((hash_salt or DEFAULT_HASH_SALT).encode("utf-8"))


def hash_trace_id(state: int, trace_id: str) -> int:
    """The Collector's ``hashTraceID(salt, traceID[:])`` for a 32-hex-digit trace id."""
    return fnv1a_64(bytes.fromhex(trace_id), state)


def threshold_for(sampling_percentage: float) -> int:
    """The Collector's ``calculateThreshold(samplingPercentage / 100)``.

    ``big.Float`` keeps 64 bits of mantissa for ``MaxUint64 * ratio`` (rounding half to even) and
    ``Uint64()`` then truncates, clamping negatives to 0 and overflows to ``MaxUint64``.
    """
    ratio = sampling_percentage / 100  # the float64 division Go does before calling big.NewFloat
    if not ratio > 0:
        return 0
    product = _round_to_bits(Fraction(MAX_UINT64) * Fraction(ratio), 64)
    return min(MAX_UINT64, math.floor(product))


def _round_to_bits(x: Fraction, bits: int) -> Fraction:
    """``x`` (positive) rounded to ``bits`` significant binary digits, ties to even."""
    exponent = x.numerator.bit_length() - x.denominator.bit_length() + 1
    # now 2**(exponent-2) <= x < 2**(exponent+1); settle on 2**(exponent-1) <= x < 2**exponent
    if x < Fraction(2) ** (exponent - 1):
        exponent -= 1
    elif x >= Fraction(2) ** exponent:
        exponent += 1
    scale = Fraction(2) ** (bits - exponent)
    return Fraction(round(x * scale)) / scale  # Fraction rounds half to even
