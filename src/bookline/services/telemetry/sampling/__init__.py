"""Tail sampling for the telemetry store, in the OpenTelemetry Collector's ``tail_sampling`` vocabulary.

Pure: policies look at :class:`SpanFacts` built by the store, and time is passed in by the caller.
The packaged ``sampling-policies.yaml`` holds the same policies as the Collector tier shipped in
``deploy/otel-collector/sampler.yaml``, so a trace is kept or dropped alike in both places.
"""

from bookline.services.telemetry.sampling.config import SamplingConfig, parse_duration
from bookline.services.telemetry.sampling.facts import Decision, JsonAttributes, PackedFacts, SpanFacts, Vote, unpack
from bookline.services.telemetry.sampling.policies import (
    AlwaysSample,
    And,
    BooleanAttribute,
    Drop,
    Latency,
    NumericAttribute,
    Policy,
    Probabilistic,
    StatusCode,
    StringAttribute,
)
from bookline.services.telemetry.sampling.sampler import TailSampler, combine_votes, decide

__all__ = [
    "AlwaysSample",
    "And",
    "BooleanAttribute",
    "Decision",
    "Drop",
    "JsonAttributes",
    "Latency",
    "NumericAttribute",
    "PackedFacts",
    "Policy",
    "Probabilistic",
    "SamplingConfig",
    "SpanFacts",
    "StatusCode",
    "StringAttribute",
    "TailSampler",
    "Vote",
    "combine_votes",
    "decide",
    "parse_duration",
    "unpack",
]
