"""When each arrival of a run is due, and which operation it is.

An open model: arrivals are fixed before the run starts, at a constant rate, and never wait for an
answer. A generator that waits (a closed loop) sends less when the system slows down, and so hides
the very latency it should measure (coordinated omission).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from bookline.load.options import arrival_count


@dataclass(frozen=True)
class Arrival:
    offset_s: float  # when it is due, from the start of the run
    operation: str


def arrival_offsets(rate: float, duration_s: float) -> list[float]:
    """One arrival every ``1/rate`` seconds from 0, all before ``duration_s``."""
    return [i / rate for i in range(arrival_count(rate, duration_s))]


def apportion(total: int, weights: Mapping[str, float]) -> dict[str, int]:
    """``total`` arrivals split by weight, the counts adding up to ``total`` exactly (largest
    remainder), so a mix of 60/30/5/5 over 100 arrivals is 60/30/5/5 and not whatever dice say."""
    weight_sum = sum(weights.values())
    exact = {name: total * w / weight_sum for name, w in weights.items()}
    counts = {name: int(share) for name, share in exact.items()}
    by_remainder = sorted(exact, key=lambda name: (exact[name] - counts[name], weights[name]), reverse=True)
    for name in by_remainder[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


def plan(rate: float, duration_s: float, mix: Mapping[str, float], rng: random.Random) -> list[Arrival]:
    """Every arrival of a run, in time order, the operations in the mix's proportions and shuffled."""
    offsets = arrival_offsets(rate, duration_s)
    operations = [name for name, count in apportion(len(offsets), mix).items() for _ in range(count)]
    rng.shuffle(operations)
    return [Arrival(offset, op) for offset, op in zip(offsets, operations, strict=True)]
