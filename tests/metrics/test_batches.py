"""The warm answer's batched counting adds up to what counting each answer would have."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram

from musehub.metric_batches import FLUSH_SECONDS, BatchedCounter, BatchedHistogram, flush
from musehub.metrics import LATENCY_BUCKETS

# On a bound, between bounds, past the last finite one, zero.
SECONDS = [0.001, 0.0011, 0.003, 0.01, 59.9, 60.0, 75.0, 0.0, 0.0025, 0.0025]


def series(registry: CollectorRegistry) -> tuple[Counter, Histogram]:
    answers = Counter("answers_total", "answers", ["cache"], registry=registry)
    seconds = Histogram("seconds", "latency", ["cache"], buckets=LATENCY_BUCKETS, registry=registry)
    return answers.labels(cache="HIT"), seconds.labels(cache="HIT")


def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """Every sample but the creation times, which differ between any two registries."""
    return {
        (sample.name, repr(sorted(sample.labels.items()))): sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if not sample.name.endswith("_created")
    }


def test_batches_add_up_to_counting_each_answer() -> None:
    each, batched = CollectorRegistry(), CollectorRegistry()
    answers, seconds = series(each)
    batched_answers, batched_seconds = series(batched)
    in_batches = BatchedCounter(batched_answers), BatchedHistogram(batched_seconds)
    for value in SECONDS:
        answers.inc()
        seconds.observe(value)
        in_batches[0].inc()
        in_batches[1].observe(value)
    assert samples(batched) != samples(each)  # still in memory
    flush()
    assert samples(batched) == samples(each)
    flush()  # nothing pending: nothing added twice
    assert samples(batched) == samples(each)


def test_a_batch_reaches_its_metric_without_a_scrape() -> None:
    registry = CollectorRegistry()
    answers, _seconds = series(registry)
    batched = BatchedCounter(answers)
    batched.inc(3)
    deadline = time.monotonic() + 5 * FLUSH_SECONDS
    while registry.get_sample_value("answers_total", {"cache": "HIT"}) != 3:
        assert time.monotonic() < deadline, "the flushing thread did not add the batch"
        time.sleep(0.05)
