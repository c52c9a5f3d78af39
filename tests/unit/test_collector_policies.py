"""The shipped Collector tiers (deploy/otel-collector/) apply the same policies as the local store.

Both files are parsed: the ``tail_sampling`` block of ``sampler.yaml`` must equal the packaged
``sampling-policies.yaml`` as plain YAML and as a parsed :class:`SamplingConfig`; the load-balancing
tier must route traces by trace id to the sampler tier.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from bookline.services.telemetry.sampling import SamplingConfig

DEPLOY = Path(__file__).parents[2] / "deploy" / "otel-collector"


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text("utf-8"))


@pytest.fixture(scope="module")
def packaged() -> dict[str, Any]:
    text = resources.files("bookline.services.telemetry").joinpath("sampling-policies.yaml").read_text("utf-8")
    return yaml.safe_load(text)


@pytest.fixture(scope="module")
def sampler() -> dict[str, Any]:
    return load_yaml(DEPLOY / "sampler.yaml")


@pytest.fixture(scope="module")
def loadbalancer() -> dict[str, Any]:
    return load_yaml(DEPLOY / "loadbalancer.yaml")


def same_policies(block: dict[str, Any], packaged: dict[str, Any]) -> bool:
    """The comparison both the real test and its control use."""
    return block == packaged and SamplingConfig.from_mapping(block) == SamplingConfig.from_mapping(packaged)


def grpc_port(collector: dict[str, Any]) -> int:
    endpoint = collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    return int(endpoint.rsplit(":", 1)[1])


def test_sampler_tier_applies_exactly_the_packaged_policies(sampler, packaged):
    block = sampler["processors"]["tail_sampling"]

    assert block == packaged
    assert SamplingConfig.from_mapping(block) == SamplingConfig.load(None)
    assert same_policies(block, packaged)


def test_store_can_load_the_sampler_tier_configuration_as_its_policy_file(packaged):
    assert SamplingConfig.load(DEPLOY / "sampler.yaml") == SamplingConfig.from_mapping(packaged)


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c["policies"][4]["probabilistic"].update(sampling_percentage=20),
        lambda c: c["policies"][1]["string_attribute"]["values"].remove("declined"),
        lambda c: c["policies"].pop(),
        lambda c: c.update(decision_wait="30s"),
    ],
    ids=["share", "outcome-list", "missing-drop", "wait"],
)
def test_control_a_changed_policy_fails_the_comparison(sampler, packaged, change):
    block = copy.deepcopy(sampler["processors"]["tail_sampling"])
    change(block)

    assert not same_policies(block, packaged)
    assert SamplingConfig.from_mapping(block) != SamplingConfig.load(None)


def test_sampler_tier_traces_pipeline_tail_samples_then_exports_to_the_backend(sampler):
    traces = sampler["service"]["pipelines"]["traces"]

    assert "tail_sampling" in traces["processors"]
    assert traces["processors"].index("tail_sampling") < traces["processors"].index("batch")
    assert traces["exporters"] == ["otlphttp"]
    assert sampler["exporters"]["otlphttp"]["endpoint"] == "${env:BACKEND_OTLP_ENDPOINT}"


def test_loadbalancer_routes_traces_by_trace_id_to_the_sampler_tier(loadbalancer, sampler):
    exporter = loadbalancer["exporters"]["loadbalancing"]
    traces = loadbalancer["service"]["pipelines"]["traces"]

    assert traces["exporters"] == ["loadbalancing"]
    assert exporter["routing_key"] == "traceID"
    assert "otlp" in exporter["protocol"]
    # the resolver targets the sampler tier's OTLP/gRPC receiver
    assert exporter["resolver"]["dns"]["port"] == grpc_port(sampler)
    assert "otel-sampler" in exporter["resolver"]["dns"]["hostname"]


def test_loadbalancer_receives_otlp_on_the_standard_ports(loadbalancer):
    protocols = loadbalancer["receivers"]["otlp"]["protocols"]

    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")


def test_loadbalancer_never_routes_metrics_by_trace_id(loadbalancer):
    # the loadbalancing exporter's traceID routing is for spans and logs only
    assert "loadbalancing" not in loadbalancer["service"]["pipelines"]["metrics"]["exporters"]


@pytest.mark.parametrize("name", ["loadbalancer.yaml", "sampler.yaml"])
def test_every_component_a_pipeline_names_is_configured(name):
    collector = load_yaml(DEPLOY / name)
    service = collector["service"]

    for pipeline in service["pipelines"].values():
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline.get(section, []):
                assert component in (collector.get(section) or {}), f"{name}: {section} {component} undefined"
    for extension in service.get("extensions", []):
        assert extension in collector["extensions"]
