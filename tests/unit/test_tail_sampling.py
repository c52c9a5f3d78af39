"""Tail sampling: the Collector's policy semantics, the decision wait, and the packaged policies.

Time is a plain float handed to the sampler, so nothing here sleeps.
"""

from __future__ import annotations

import gc
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from bookline.services.telemetry.sampling import (
    Decision,
    Policy,
    SamplingConfig,
    SpanFacts,
    TailSampler,
    Vote,
    combine_votes,
    decide,
    parse_duration,
    unpack,
)
from bookline.services.telemetry.sampling.hashing import (
    MAX_UINT64,
    fnv1a_64,
    hash_trace_id,
    salt_state,
    threshold_for,
)

MS = 1_000_000  # nanoseconds
T0 = 1_700_000_000_000_000_000
BOOKING_RESOURCE = {"service.name": "booking-service", "service.namespace": "bookline"}


def trace_id(n: int) -> str:
    return f"{n:032x}"


def random_ids(count: int, seed: int) -> list[str]:
    # real trace ids are random: FNV-1a barely moves the high bits for ids differing in the last byte
    rng = random.Random(seed)
    return [trace_id(rng.getrandbits(128)) for _ in range(count)]


def span(
    tid: str = "0af7651916cd43dd8448eb211c80319c",
    *,
    name: str = "booking.create",
    status: str = "UNSET",
    start_ms: float = 0,
    end_ms: float = 10,
    attributes: dict | None = None,
    resource: dict | None = None,
) -> SpanFacts:
    return SpanFacts(
        trace_id=tid,
        service=(resource or BOOKING_RESOURCE).get("service.name", "booking-service"),
        name=name,
        kind="INTERNAL",
        status_code=status,
        start_unix_nano=T0 + int(start_ms * MS),
        end_unix_nano=T0 + int(end_ms * MS),
        attributes=attributes or {},
        resource=resource if resource is not None else BOOKING_RESOURCE,
    )


def config(*policies: dict, **top) -> SamplingConfig:
    return SamplingConfig.from_mapping({"decision_wait": "10s", **top, "policies": list(policies)})


def policy(ptype: str, name: str | None = None, **block) -> dict:
    return {"name": name or ptype, "type": ptype, ptype: block} if block else {"name": name or ptype, "type": ptype}


def verdict(cfg: SamplingConfig, *spans: SpanFacts) -> Decision:
    return decide(cfg, list(spans))


def vote(cfg: SamplingConfig, *spans: SpanFacts) -> Vote:
    (only,) = cfg.policies
    return only.evaluate(spans[0].trace_id, list(spans))


# --- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10.0), ("500ms", 0.5), ("1m30s", 90.0), ("1.5h", 5400.0), ("250us", 0.00025), ("0", 0.0)],
)
def test_decision_wait_is_read_as_a_go_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["10", 10, "10 s", "-1s", "ten seconds", ""])
def test_decision_wait_that_is_not_a_go_duration_is_rejected(bad):
    with pytest.raises(ValueError, match="decision_wait"):
        config(policy("always_sample"), decision_wait=bad)


def test_collector_defaults_apply_when_wait_and_buffer_size_are_absent():
    cfg = SamplingConfig.from_mapping({"policies": [policy("always_sample")]})

    assert (cfg.decision_wait_s, cfg.num_traces) == (30.0, 50_000)


def test_expected_rate_is_accepted_and_decision_cache_sizes_are_read():
    cfg = config(
        policy("always_sample"),
        expected_new_traces_per_sec=50,
        decision_cache={"sampled_cache_size": 1000, "non_sampled_cache_size": 2000},
    )

    assert (cfg.sampled_cache_size, cfg.non_sampled_cache_size) == (1000, 2000)


@pytest.mark.parametrize(
    ("policies", "top", "message"),
    [
        ([{"name": "mystery", "type": "sometimes_sample"}], {}, "'mystery'.*unknown policy type 'sometimes_sample'"),
        ([policy("rate_limiting", "budget", spans_per_second=10)], {}, "'budget'.*does not implement"),
        ([policy("status_code", "errs", status_codes=["FAILED"])], {}, "'errs'.*unknown status code 'FAILED'"),
        ([policy("status_code", "errs")], {}, "'errs'.*status_codes"),
        ([policy("string_attribute", "re", key="k", values=["("], enabled_regex_matching=True)], {}, "'re'.*regular"),
        ([policy("string_attribute", "typo", key="k", value=["x"])], {}, "'typo'.*unknown key.*value"),
        ([policy("string_attribute", "nokey", values=["x"])], {}, "'nokey'.*key"),
        ([policy("string_attribute", "num", key="k", values=[200])], {}, "'num'.*list of strings"),
        ([policy("probabilistic", "seed", hashing_seed=7, sampling_percentage=10)], {}, "'seed'.*hash_salt"),
        ([policy("probabilistic", "pct", sampling_percentage="ten")], {}, "'pct'.*sampling_percentage"),
        ([policy("probabilistic", "pct", sampling_percentage=150)], {}, "'pct'.*between 0 and 100"),
        ([policy("numeric_attribute", "range", key="k")], {}, "'range'.*min_value or max_value"),
        ([policy("numeric_attribute", "range", key="k", min_value=1.5)], {}, "'range'.*integer"),
        ([policy("boolean_attribute", "flag", key="k", value="yes")], {}, "'flag'.*true or false"),
        ([policy("latency", "slow", threshold_ms=500, upper_threshold_ms=100)], {}, "'slow'.*upper_threshold_ms"),
        ([{"name": "mixed", "type": "latency", "latency": {"threshold_ms": 1}, "status_code": {}}], {}, "'mixed'"),
        ([policy("and", "empty", and_sub_policy=[])], {}, "'empty'.*non-empty"),
        ([policy("drop", "nested", drop_sub_policy=[policy("drop", "inner", drop_sub_policy=[])])], {}, "'nested'"),
        ([policy("always_sample", "twice"), policy("always_sample", "twice")], {}, "duplicate.*'twice'"),
        ([{"type": "always_sample"}], {}, "name"),
        ([], {}, "non-empty list"),
        ([policy("always_sample")], {"num_traces": 0}, "num_traces"),
        ([policy("always_sample")], {"decision_cahce": {}}, "unknown key.*decision_cahce"),
        ([policy("always_sample")], {"block_on_overflow": True}, "block_on_overflow"),
    ],
)
def test_malformed_configuration_is_rejected_with_a_message_naming_the_culprit(policies, top, message):
    with pytest.raises(ValueError, match=message):
        SamplingConfig.from_mapping({"decision_wait": "10s", **top, "policies": policies})


def test_a_policy_file_that_is_not_a_mapping_is_rejected(tmp_path):
    path = tmp_path / "policies.yaml"
    path.write_text("- just\n- a list\n")

    with pytest.raises(ValueError, match="policies.yaml.*mapping"):
        SamplingConfig.load(path)


# --- policies, one by one --------------------------------------------------------------------------


def test_status_code_samples_a_trace_with_an_error_anywhere():
    cfg = config(policy("status_code", status_codes=["ERROR"]))

    assert verdict(cfg, span(status="OK"), span(name="payment", status="ERROR")) is Decision.SAMPLED
    assert verdict(cfg, span(status="OK"), span(name="payment", status="UNSET")) is Decision.NOT_SAMPLED


def test_latency_measures_the_whole_trace_from_earliest_start_to_latest_end():
    cfg = config(policy("latency", threshold_ms=2000))
    # no single span lasts 2 s, but the trace does
    spans = [span(start_ms=500, end_ms=1500), span(start_ms=0, end_ms=100), span(start_ms=1400, end_ms=2100)]

    assert verdict(cfg, *spans) is Decision.SAMPLED
    assert verdict(cfg, *spans[:2]) is Decision.NOT_SAMPLED


def test_latency_threshold_is_inclusive_and_counts_whole_milliseconds():
    cfg = config(policy("latency", threshold_ms=2000))

    assert verdict(cfg, span(start_ms=0, end_ms=2000)) is Decision.SAMPLED
    assert verdict(cfg, span(start_ms=0, end_ms=1999.999)) is Decision.NOT_SAMPLED


def test_latency_with_an_upper_bound_samples_only_inside_the_band():
    cfg = config(policy("latency", threshold_ms=1000, upper_threshold_ms=2000))

    assert verdict(cfg, span(start_ms=0, end_ms=1500)) is Decision.SAMPLED
    assert verdict(cfg, span(start_ms=0, end_ms=1000)) is Decision.NOT_SAMPLED  # lower bound exclusive
    assert verdict(cfg, span(start_ms=0, end_ms=2500)) is Decision.NOT_SAMPLED


def test_latency_band_is_checked_as_spans_widen_the_window_like_the_collector():
    # the Collector re-checks after each span: a window inside the band on the way samples the trace
    cfg = config(policy("latency", threshold_ms=1000, upper_threshold_ms=2000))

    assert verdict(cfg, span(start_ms=0, end_ms=1500), span(start_ms=0, end_ms=3000)) is Decision.SAMPLED
    assert verdict(cfg, span(start_ms=0, end_ms=3000), span(start_ms=0, end_ms=1500)) is Decision.NOT_SAMPLED


def test_string_attribute_matches_span_or_resource_attributes_of_any_span():
    cfg = config(policy("string_attribute", key="booking.outcome", values=["declined", "failed"]))

    assert verdict(cfg, span(), span(attributes={"booking.outcome": "declined"})) is Decision.SAMPLED
    assert verdict(cfg, span(resource={"booking.outcome": "failed"})) is Decision.SAMPLED
    assert verdict(cfg, span(attributes={"booking.outcome": "confirmed"})) is Decision.NOT_SAMPLED


def test_string_attribute_never_matches_a_value_of_another_type():
    cfg = config(policy("string_attribute", key="http.status", values=["500"]))

    assert verdict(cfg, span(attributes={"http.status": 500})) is Decision.NOT_SAMPLED


def test_string_attribute_regex_is_searched_anywhere_in_the_value_like_go_matchstring():
    cfg = config(policy("string_attribute", key="url.path", values=["health"], enabled_regex_matching=True))

    assert verdict(cfg, span(attributes={"url.path": "/healthz"})) is Decision.SAMPLED
    assert verdict(cfg, span(attributes={"url.path": "/bookings"})) is Decision.NOT_SAMPLED


def test_regex_dot_plus_matches_any_non_empty_value_but_not_an_empty_span_value():
    cfg = config(policy("string_attribute", key="booking.rollback.reason", values=[".+"], enabled_regex_matching=True))

    assert verdict(cfg, span(attributes={"booking.rollback.reason": "declined"})) is Decision.SAMPLED
    assert verdict(cfg, span(attributes={"booking.rollback.reason": ""})) is Decision.NOT_SAMPLED


def test_string_invert_match_samples_traces_without_the_value_and_overrides_other_samples():
    inverted = policy("string_attribute", "not-web", key="booking.source", values=["web"], invert_match=True)
    cfg = config(inverted, policy("always_sample"))

    assert vote(config(inverted), span(attributes={"booking.source": "api"})) is Vote.INVERT_SAMPLED
    assert vote(config(inverted), span()) is Vote.INVERT_SAMPLED  # key absent: sampled
    # an inverted "not sampled" wins over another policy's sample (deprecated Collector precedence)
    assert verdict(cfg, span(attributes={"booking.source": "web"})) is Decision.NOT_SAMPLED


def test_inverted_sample_is_overruled_by_a_plain_not_sampled_vote():
    inverted = policy("string_attribute", "not-web", key="booking.source", values=["web"], invert_match=True)
    errors = policy("status_code", "errors", status_codes=["ERROR"])

    assert verdict(config(inverted), span()) is Decision.SAMPLED
    assert verdict(config(inverted, errors), span()) is Decision.NOT_SAMPLED


def test_boolean_attribute_matches_the_configured_value_on_span_or_resource():
    cfg = config(policy("boolean_attribute", key="app.force_sample", value=True))

    assert verdict(cfg, span(attributes={"app.force_sample": True})) is Decision.SAMPLED
    assert verdict(cfg, span(resource={"app.force_sample": True})) is Decision.SAMPLED
    assert verdict(cfg, span(attributes={"app.force_sample": False})) is Decision.NOT_SAMPLED
    assert verdict(cfg, span(attributes={"app.force_sample": "true"})) is Decision.NOT_SAMPLED  # not a bool


def test_boolean_invert_match_votes_inverted():
    cfg = config(policy("boolean_attribute", key="synthetic", value=True, invert_match=True))

    assert vote(cfg, span(attributes={"synthetic": True})) is Vote.INVERT_NOT_SAMPLED
    assert vote(cfg, span(attributes={"synthetic": False})) is Vote.INVERT_SAMPLED


def test_numeric_attribute_range_is_inclusive_and_an_absent_bound_is_open():
    closed = config(policy("numeric_attribute", key="booking.nights", min_value=7, max_value=13))
    open_top = config(policy("numeric_attribute", key="booking.nights", min_value=14))

    assert [verdict(closed, span(attributes={"booking.nights": n})) for n in (6, 7, 13, 14)] == [
        Decision.NOT_SAMPLED,
        Decision.SAMPLED,
        Decision.SAMPLED,
        Decision.NOT_SAMPLED,
    ]
    assert verdict(open_top, span(attributes={"booking.nights": 10_000})) is Decision.SAMPLED


def test_numeric_attribute_reads_a_float_as_zero_like_the_collector():
    cfg = config(policy("numeric_attribute", key="latency", min_value=-5, max_value=5))

    assert verdict(cfg, span(attributes={"latency": 99.5})) is Decision.SAMPLED


def test_numeric_invert_match_votes_inverted():
    cfg = config(policy("numeric_attribute", key="booking.nights", min_value=7, invert_match=True))

    assert vote(cfg, span(attributes={"booking.nights": 8})) is Vote.INVERT_NOT_SAMPLED
    assert vote(cfg, span(attributes={"booking.nights": 2})) is Vote.INVERT_SAMPLED


def test_fnv1a_64_matches_the_reference_vectors():
    assert fnv1a_64(b"") == 0xCBF29CE484222325
    assert fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a_64(b"foobar") == 0x85944171F73967E8


def test_probabilistic_hashes_the_salt_then_the_sixteen_raw_trace_id_bytes():
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"

    assert hash_trace_id(salt_state(""), tid) == fnv1a_64(b"default-hash-seed" + bytes.fromhex(tid))
    assert hash_trace_id(salt_state("tier-2"), tid) == fnv1a_64(b"tier-2" + bytes.fromhex(tid))


def test_probabilistic_threshold_spans_the_uint64_range_like_the_collector():
    assert threshold_for(0) == 0
    assert threshold_for(100) == MAX_UINT64
    assert threshold_for(50) == 2**63 - 1  # MaxUint64 / 2 = 2**63 - 0.5, truncated
    assert threshold_for(10) == pytest.approx(MAX_UINT64 / 10, rel=1e-15)


def test_probabilistic_gives_a_trace_the_same_decision_every_time_and_depends_on_the_salt():
    ids = random_ids(400, seed=3)
    plain = config(policy("probabilistic", sampling_percentage=50))
    again = config(policy("probabilistic", sampling_percentage=50))
    salted = config(policy("probabilistic", sampling_percentage=50, hash_salt="tier-2"))

    first = [verdict(plain, span(t)) for t in ids]
    assert first == [verdict(again, span(t)) for t in ids]
    assert first != [verdict(salted, span(t)) for t in ids]


def test_probabilistic_edges_keep_all_or_nothing():
    ids = random_ids(200, seed=5)

    assert {verdict(config(policy("probabilistic", sampling_percentage=100)), span(t)) for t in ids} == {
        Decision.SAMPLED
    }
    assert {verdict(config(policy("probabilistic", sampling_percentage=0)), span(t)) for t in ids} == {
        Decision.NOT_SAMPLED
    }


# --- composition -----------------------------------------------------------------------------------

WEB = policy("string_attribute", "web", key="booking.source", values=["web"])
SLOW = policy("latency", "slow", threshold_ms=1000)


def test_and_samples_only_when_every_sub_policy_samples():
    cfg = config(policy("and", "slow-web", and_sub_policy=[WEB, SLOW]))

    assert verdict(cfg, span(attributes={"booking.source": "web"}, end_ms=1500)) is Decision.SAMPLED
    assert verdict(cfg, span(attributes={"booking.source": "web"}, end_ms=500)) is Decision.NOT_SAMPLED
    assert verdict(cfg, span(attributes={"booking.source": "api"}, end_ms=1500)) is Decision.NOT_SAMPLED


def test_and_counts_an_inverted_sample_as_a_sample():
    not_web = {**WEB, "name": "not-web", "string_attribute": {**WEB["string_attribute"], "invert_match": True}}
    cfg = config(policy("and", "slow-not-web", and_sub_policy=[not_web, SLOW]))

    assert verdict(cfg, span(attributes={"booking.source": "api"}, end_ms=1500)) is Decision.SAMPLED
    assert verdict(cfg, span(attributes={"booking.source": "web"}, end_ms=1500)) is Decision.NOT_SAMPLED


def test_drop_wins_over_every_other_policy():
    errors = policy("status_code", "errors", status_codes=["ERROR"])
    cfg = config(errors, policy("always_sample"), policy("drop", "no-web", drop_sub_policy=[WEB]))

    assert verdict(cfg, span(status="ERROR", attributes={"booking.source": "web"})) is Decision.DROPPED
    assert verdict(cfg, span(status="ERROR", attributes={"booking.source": "api"})) is Decision.SAMPLED


def test_drop_needs_every_sub_policy_to_match():
    cfg = config(policy("always_sample"), policy("drop", "slow-web", drop_sub_policy=[WEB, SLOW]))

    assert verdict(cfg, span(attributes={"booking.source": "web"}, end_ms=1500)) is Decision.DROPPED
    assert verdict(cfg, span(attributes={"booking.source": "web"}, end_ms=500)) is Decision.SAMPLED


def test_sample_on_first_match_stops_before_a_later_drop():
    policies = (policy("always_sample"), policy("drop", "no-web", drop_sub_policy=[WEB]))
    web = span(attributes={"booking.source": "web"})

    assert verdict(config(*policies), web) is Decision.DROPPED
    assert verdict(config(*policies, sample_on_first_match=True), web) is Decision.SAMPLED


@pytest.mark.parametrize(
    ("votes", "decision"),
    [
        ({Vote.SAMPLED, Vote.DROPPED}, Decision.DROPPED),
        ({Vote.SAMPLED, Vote.INVERT_NOT_SAMPLED}, Decision.NOT_SAMPLED),
        ({Vote.SAMPLED, Vote.NOT_SAMPLED}, Decision.SAMPLED),
        ({Vote.INVERT_SAMPLED}, Decision.SAMPLED),
        ({Vote.INVERT_SAMPLED, Vote.NOT_SAMPLED}, Decision.NOT_SAMPLED),
        ({Vote.NOT_SAMPLED}, Decision.NOT_SAMPLED),
    ],
)
def test_votes_combine_with_the_collector_precedence(votes, decision):
    assert combine_votes(votes) is decision


# --- the sampler over time ------------------------------------------------------------------------


def errors_only(**top) -> SamplingConfig:
    return config(policy("status_code", "errors", status_codes=["ERROR"]), **top)


def test_a_trace_is_decided_only_once_its_wait_has_elapsed_since_its_first_span():
    sampler = TailSampler(errors_only())
    tid = trace_id(1)

    assert sampler.offer([span(tid)], now=100.0) == {}
    # a span arriving later does not restart the wait, and it counts in the decision
    sampler.offer([span(tid, name="payment", status="ERROR")], now=108.0)
    assert sampler.due(now=109.9) == []
    assert sampler.pending == 1

    assert sampler.due(now=110.0) == [(tid, Decision.SAMPLED)]
    assert sampler.pending == 0


def test_late_spans_follow_the_decision_already_made():
    sampler = TailSampler(errors_only())
    kept, dropped = trace_id(1), trace_id(2)
    sampler.offer([span(kept, status="ERROR"), span(dropped)], now=0.0)
    sampler.due(now=10.0)

    # a late ERROR span cannot rescue a dropped trace, and nothing is buffered for either
    late = sampler.offer([span(kept), span(dropped, status="ERROR"), span(dropped)], now=12.0)

    assert late == {kept: Decision.SAMPLED, dropped: Decision.NOT_SAMPLED}
    assert sampler.pending == 0
    assert sampler.due(now=1000.0) == []


def packed(facts: SpanFacts) -> tuple:
    """The span as the store hands it to the sampler: a plain tuple, attributes and resource as JSON text."""
    return (*facts[:7], json.dumps(dict(facts.attributes)), json.dumps(dict(facts.resource)))


def test_packed_spans_with_json_attributes_are_decided_like_their_span_facts():
    cfg = config(policy("string_attribute", "declined", key="booking.outcome", values=["declined"]))
    sampler = TailSampler(cfg)
    declined, confirmed = trace_id(1), trace_id(2)
    spans = [span(declined, attributes={"booking.outcome": "declined"}), span(confirmed), span(declined)]
    sampler.offer([packed(s) for s in spans], now=0.0)

    assert sampler.due(now=10.0) == [(declined, Decision.SAMPLED), (confirmed, Decision.NOT_SAMPLED)]
    assert unpack(packed(spans[0])) == spans[0]  # attributes compare equal once parsed


def test_spans_waiting_for_their_decision_give_the_cycle_collector_nothing_to_walk_per_span():
    # a few hundred thousand spans wait under load; a tracked object per span made every full
    # collection walk them all
    sampler = TailSampler(config(policy("always_sample")))
    gc.collect()
    before = len(gc.get_objects())

    sampler.offer([packed(span(trace_id(n // 16 + 1), attributes={"booking.nights": n})) for n in range(16_000)], 0.0)
    gc.collect()

    assert sampler.pending == 1000
    assert len(gc.get_objects()) - before < 1000 * 2  # one span list per trace, nothing per span


def test_offer_reports_nothing_for_traces_still_waiting():
    sampler = TailSampler(errors_only())
    sampler.offer([span(trace_id(1))], now=0.0)

    assert sampler.offer([span(trace_id(1)), span(trace_id(2))], now=1.0) == {}
    assert sampler.pending == 2


def test_traces_beyond_num_traces_are_decided_early_oldest_first():
    sampler = TailSampler(errors_only(num_traces=3))
    ids = [trace_id(n) for n in range(1, 6)]
    for n, tid in enumerate(ids):
        sampler.offer([span(tid, status="ERROR" if n == 0 else "UNSET")], now=float(n))

    decided = sampler.due(now=5.0)  # no wait has elapsed yet

    assert decided == [(ids[0], Decision.SAMPLED), (ids[1], Decision.NOT_SAMPLED)]
    assert sampler.pending == 3


def test_counters_count_kept_and_dropped_traces_once_each():
    cfg = config(
        policy("status_code", "errors", status_codes=["ERROR"]), policy("drop", "no-web", drop_sub_policy=[WEB])
    )
    sampler = TailSampler(cfg)
    sampler.offer(
        [
            span(trace_id(1), status="ERROR"),
            span(trace_id(1)),
            span(trace_id(2)),
            span(trace_id(3), attributes={"booking.source": "web"}),
        ],
        now=0.0,
    )
    sampler.due(now=10.0)
    sampler.offer([span(trace_id(1)), span(trace_id(2))], now=11.0)  # late spans count nothing

    assert (sampler.kept, sampler.dropped, sampler.pending) == (1, 2, 0)


@dataclass
class CountingPolicy(Policy):
    """A policy that samples everything and counts how often it is asked."""

    type = "counting"
    name: str = "counting"
    calls: list[int] = field(default_factory=list)

    def evaluate(self, trace_id: str, spans: Sequence[SpanFacts]) -> Vote:
        self.calls.append(len(spans))
        return Vote.SAMPLED


def test_each_trace_is_evaluated_once_with_all_its_spans():
    counting = CountingPolicy()
    sampler = TailSampler(SamplingConfig(decision_wait_s=10.0, num_traces=100, policies=(counting,)))
    for batch in range(5):
        sampler.offer([span(trace_id(1)) for _ in range(20)], now=float(batch))

    sampler.due(now=100.0)

    assert counting.calls == [100]


def test_remembered_decisions_survive_a_restart_without_counting_again():
    sampler = TailSampler(errors_only())
    sampler.offer([span(trace_id(2))], now=0.0)  # pending when the old decision is restored

    sampler.remember(trace_id(1), Decision.SAMPLED)
    sampler.remember(trace_id(2), Decision.DROPPED)

    late = sampler.offer([span(trace_id(1)), span(trace_id(2))], now=1.0)
    assert late == {trace_id(1): Decision.SAMPLED, trace_id(2): Decision.DROPPED}
    assert sampler.due(now=100.0) == []  # the restored trace's old deadline is ignored
    assert (sampler.kept, sampler.dropped, sampler.pending) == (0, 0, 0)


def test_decided_traces_are_forgotten_beyond_the_cache_size_oldest_first():
    sampler = TailSampler(errors_only(), decided_cache_size=2)
    for n in (1, 2, 3):
        sampler.offer([span(trace_id(n), status="ERROR")], now=float(n))
    sampler.due(now=100.0)

    late = sampler.offer([span(trace_id(1)), span(trace_id(3))], now=101.0)

    assert late == {trace_id(3): Decision.SAMPLED}
    assert sampler.pending == 1  # trace 1 was forgotten, so its span starts a new wait


def test_a_late_span_keeps_its_traces_decision_remembered():
    sampler = TailSampler(errors_only(), decided_cache_size=2)
    sampler.offer([span(trace_id(1)), span(trace_id(2))], now=0.0)
    sampler.due(now=10.0)
    sampler.offer([span(trace_id(1))], now=11.0)  # trace 1 is now the most recently used
    sampler.offer([span(trace_id(3))], now=11.0)
    sampler.due(now=21.0)

    late = sampler.offer([span(trace_id(1)), span(trace_id(2))], now=22.0)

    assert late == {trace_id(1): Decision.NOT_SAMPLED}
    assert sampler.pending == 1  # trace 2 was the one forgotten


def test_a_trace_restored_then_forgotten_and_seen_again_waits_its_full_new_wait():
    sampler = TailSampler(errors_only(), decided_cache_size=1)
    sampler.offer([span(trace_id(1))], now=0.0)  # its first deadline would be 10
    sampler.remember(trace_id(1), Decision.SAMPLED)
    sampler.remember(trace_id(2), Decision.SAMPLED)  # pushes trace 1 out of the decided cache
    sampler.offer([span(trace_id(1), status="ERROR")], now=5.0)

    assert sampler.due(now=10.0) == []
    assert sampler.due(now=15.0) == [(trace_id(1), Decision.SAMPLED)]


def test_the_policy_files_decision_cache_can_enlarge_the_decided_cache():
    cfg = errors_only(decision_cache={"sampled_cache_size": 3, "non_sampled_cache_size": 0})
    sampler = TailSampler(cfg, decided_cache_size=2)
    for n in (1, 2, 3):
        sampler.offer([span(trace_id(n))], now=0.0)
    sampler.due(now=10.0)

    assert sampler.offer([span(trace_id(1))], now=11.0) == {trace_id(1): Decision.NOT_SAMPLED}


# --- the packaged default policies ---------------------------------------------------------------


@pytest.fixture(scope="module")
def default() -> SamplingConfig:
    return SamplingConfig.load(None)


def booking_trace(
    tid: str, *, outcome: str = "confirmed", status: str = "OK", total_ms: float = 180
) -> list[SpanFacts]:
    http = {"http.route": "/bookings", "url.path": "/bookings", "http.request.method": "POST"}
    create = {"booking.outcome": outcome, "booking.source": "web"}
    return [
        span(tid, name="booking.price_quote", start_ms=20, end_ms=40),
        span(tid, name="booking.create", status=status, start_ms=1, end_ms=total_ms - 1, attributes=create),
        span(tid, name="POST /bookings", start_ms=0, end_ms=total_ms, attributes=http),
    ]


def unsampled_id(cfg: SamplingConfig) -> str:
    """A trace id the 10% share does not pick, so only the other policies can keep the trace."""
    return next(t for t in random_ids(100, seed=11) if decide(cfg, booking_trace(t)) is Decision.NOT_SAMPLED)


def test_default_policies_wait_ten_seconds(default):
    assert default.decision_wait_s == 10.0


def test_default_keeps_a_trace_with_an_error_span(default):
    tid = unsampled_id(default)
    trace = booking_trace(tid) + [span(tid, name="payment.authorize", status="ERROR")]

    assert decide(default, trace) is Decision.SAMPLED


@pytest.mark.parametrize("outcome", ["unavailable", "contention", "declined", "payment_error", "expired", "failed"])
def test_default_keeps_every_unconfirmed_booking_even_without_an_error_status(default, outcome):
    tid = unsampled_id(default)

    assert decide(default, booking_trace(tid, outcome=outcome, status="UNSET")) is Decision.SAMPLED


def test_default_keeps_a_trace_with_a_rollback(default):
    tid = unsampled_id(default)
    rollback = span(tid, name="booking.rollback", attributes={"booking.rollback.reason": "interrupted"})

    assert decide(default, booking_trace(tid) + [rollback]) is Decision.SAMPLED


def test_default_keeps_a_trace_slower_than_two_seconds(default):
    tid = unsampled_id(default)

    assert decide(default, booking_trace(tid, total_ms=2100)) is Decision.SAMPLED
    assert decide(default, booking_trace(tid, total_ms=1900)) is Decision.NOT_SAMPLED


@pytest.mark.parametrize("attributes", [{"url.path": "/healthz"}, {"url.path": "/readyz"}, {"http.route": "/readyz"}])
def test_default_never_keeps_a_health_or_readiness_check_even_a_failing_one(default, attributes):
    checks = [[span(t, name="GET", status="ERROR", end_ms=3000, attributes=attributes)] for t in random_ids(50, 13)]

    assert {decide(default, trace) for trace in checks} == {Decision.DROPPED}


@pytest.mark.parametrize("path", ["/admin/bookings", "/admin/card-scan"])
def test_default_never_keeps_an_admin_read_even_a_failing_one(default, path):
    reads = [[span(t, name="GET", status="ERROR", attributes={"url.path": path})] for t in random_ids(50, 17)]

    assert {decide(default, trace) for trace in reads} == {Decision.DROPPED}
    booking = [span(unsampled_id(default), name="GET", status="ERROR", attributes={"url.path": "/bookings/admin/x"})]
    assert decide(default, booking) is Decision.SAMPLED


def test_default_keeps_about_ten_percent_of_fast_confirmed_bookings(default):
    kept = sum(decide(default, booking_trace(tid)) is Decision.SAMPLED for tid in random_ids(20_000, seed=2024))

    # binomial(20000, 0.1): standard deviation 42.4; 4.5 of them either side
    assert 1809 <= kept <= 2191, kept
