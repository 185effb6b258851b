"""Resource estimator: fallback chain, exact EWMA values, declared overrides."""

from __future__ import annotations

import math

import pytest

from gpu_router.policy.errors import InvalidValue
from gpu_router.policy.estimator import (
    DEFAULT_BY_TYPE,
    Estimate,
    EstimatorConfig,
    ResourceEstimator,
    batch_bucket,
)


@pytest.mark.parametrize(
    ("batch", "bucket"), [(1, 1), (2, 2), (3, 4), (4, 4), (5, 8), (8, 8), (9, 16), (1000, 1024)]
)
def test_batch_bucket(batch: int, bucket: int) -> None:
    assert batch_bucket(batch) == bucket


def test_type_defaults() -> None:
    est = ResourceEstimator()
    for type_, (dur, mem) in DEFAULT_BY_TYPE.items():
        assert est.estimate("m", type_) == Estimate(mem, dur, "default", "default")
    assert est.estimate("m", "speech").duration_s == 60.0  # fallback for other types
    assert DEFAULT_BY_TYPE["training"] == (600.0, 40960.0)


def test_declared_values_used_when_positive() -> None:
    est = ResourceEstimator()
    assert est.estimate("m", "inference", 1, 1000.0, 3.5) == Estimate(
        1000.0, 3.5, "declared", "declared"
    )
    assert est.estimate("m", "inference", 1, 0.0, 3.5) == Estimate(
        8192.0, 3.5, "declared", "default"
    )
    assert est.estimate("m", "inference", 1, 500.0, 0.0) == Estimate(
        500.0, 2.0, "default", "declared"
    )


def test_ewma_exact_values() -> None:
    est = ResourceEstimator(EstimatorConfig(alpha=0.2, min_observations=1))
    est.observe("m", "inference", 1, 10.0, 1000.0)
    assert est.learned("m", "inference", 1) == (1, 10.0, 1000.0)
    est.observe("m", "inference", 1, 20.0, 2000.0)
    assert est.learned("m", "inference", 1) == (2, pytest.approx(12.0), pytest.approx(1200.0))
    est.observe("m", "inference", 1, 30.0)  # memory unknown: memory EWMA unchanged
    n, dur, mem = est.learned("m", "inference", 1)
    assert (n, dur, mem) == (3, pytest.approx(15.6), pytest.approx(1200.0))
    assert est.estimate("m", "inference", 1) == Estimate(
        pytest.approx(1200.0), pytest.approx(15.6), "learned", "learned"
    )


def test_min_observations_before_trusting() -> None:
    est = ResourceEstimator(EstimatorConfig(min_observations=3))
    for i in range(2):
        est.observe("m", "training", 4, 100.0)
        assert est.estimate("m", "training", 4).source == "default", i
    est.observe("m", "training", 4, 100.0)
    e = est.estimate("m", "training", 4)
    assert (e.duration_s, e.source, e.memory_source) == (100.0, "learned", "default")


def test_fallback_chain_bucket_then_any_batch_then_default() -> None:
    est = ResourceEstimator(EstimatorConfig(alpha=0.5, min_observations=1))
    est.observe("m", "inference", 3, 8.0)  # bucket 4
    est.observe("m", "inference", 16, 40.0)  # bucket 16
    assert est.estimate("m", "inference", 4).duration_s == 8.0  # own bucket (3 and 4 share)
    assert est.estimate("m", "inference", 9).duration_s == 40.0  # bucket 16
    any_batch = est.estimate("m", "inference", 1)  # bucket 1 unknown: any-batch EWMA
    assert (any_batch.duration_s, any_batch.source) == (24.0, "learned")
    assert est.learned("m", "inference") == (2, 24.0, None)
    assert est.estimate("m", "embedding", 1).source == "default"  # other type
    assert est.estimate("other", "inference", 4).source == "default"  # other model


def test_declared_overrides_learned_unless_configured() -> None:
    est = ResourceEstimator(EstimatorConfig(min_observations=1))
    est.observe("m", "inference", 1, 5.0, 3000.0)
    assert est.estimate("m", "inference", 1, 100.0, 1.0) == Estimate(
        100.0, 1.0, "declared", "declared"
    )
    trust = ResourceEstimator(EstimatorConfig(min_observations=2, learned_overrides_declared=True))
    trust.observe("m", "inference", 1, 5.0, 3000.0)
    assert trust.estimate("m", "inference", 1, 100.0, 1.0).source == "declared"  # 1 < 2 obs
    trust.observe("m", "inference", 1, 5.0, 3000.0)
    assert trust.estimate("m", "inference", 1, 100.0, 1.0) == Estimate(
        3000.0, 5.0, "learned", "learned"
    )


def test_config_from_plain_data() -> None:
    cfg = EstimatorConfig(defaults={"inference": [1, 2048]}, fallback=[5, 100])  # type: ignore[arg-type]
    assert cfg.defaults == {"inference": (1.0, 2048.0)}
    est = ResourceEstimator(cfg)
    assert est.estimate("m", "training") == Estimate(100.0, 5.0, "default", "default")


@pytest.mark.parametrize(
    "bad",
    [
        {"alpha": 0.0},
        {"alpha": 1.5},
        {"alpha": math.nan},
        {"min_observations": 0},
        {"learned_overrides_declared": "yes"},
        {"defaults": {"inference": (0.0, 1.0)}},
        {"defaults": {"inference": (1.0,)}},
        {"fallback": (1.0, math.inf)},
    ],
)
def test_config_validated(bad: dict) -> None:
    with pytest.raises(InvalidValue):
        EstimatorConfig(**bad)


def test_bad_observations() -> None:
    est = ResourceEstimator()
    with pytest.raises(InvalidValue):
        est.observe("m", "inference", 1, -1.0)
    with pytest.raises(InvalidValue):
        est.observe("m", "inference", 1, 1.0, 0.0)
    with pytest.raises(InvalidValue):
        est.observe("m", "inference", 0, 1.0)
    with pytest.raises(InvalidValue):
        est.estimate("m", "inference", 0)


@pytest.mark.parametrize("overrides", [False, True])
def test_sizes_is_estimate_without_the_sources(overrides: bool) -> None:
    """The per-request ``sizes`` gives ``estimate``'s values in every case of the chain:
    declared or not, learned per bucket, over every batch, untrusted, the default."""
    est = ResourceEstimator(
        EstimatorConfig(min_observations=2, learned_overrides_declared=overrides)
    )
    for x in (1.0, 3.0):  # (m, inference, bucket 4) trusted; bucket 1 learned once only
        est.observe("m", "inference", 4, x, memory_mb=1000.0 * x)
    est.observe("m", "inference", 1, 9.0, memory_mb=9000.0)
    cases = [
        (model, type_, batch, mem, dur)
        for model in ("m", "other")
        for type_ in ("inference", "training", "speech")
        for batch in (1, 3, 4, 16)
        for mem in (0.0, 512.0)
        for dur in (0.0, 0.25)
    ]
    for model, type_, batch, mem, dur in cases:
        e = est.estimate(model, type_, batch, mem, dur)
        got = est.sizes(model, type_, batch, mem, dur)
        assert got == (e.memory_mb, e.duration_s), (model, type_, batch, mem, dur)
        assert all(type(v) is float for v in got)
