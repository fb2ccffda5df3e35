"""Micro-batching: concurrent requests share passes, answers stay exact, hot swaps never fail."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from adapters_support import Trained

from deskpilot.adapters.batching import MicroBatcher
from deskpilot.adapters.registry import AdapterCard, Registry
from deskpilot.adapters.serving import Engine, Request
from deskpilot.errors import AdapterNotFoundError

Register = Callable[..., AdapterCard]


def _wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the clients")
        time.sleep(0.01)


class CountingEngine(Engine):
    """The real engine, recording how requests were grouped into passes."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry)
        self.batches: list[int] = []

    def predict_many(self, requests: list[Request]) -> list:  # type: ignore[override]
        self.batches.append(len(requests))
        return super().predict_many(requests)


def test_concurrent_requests_for_two_adapters_are_batched_and_exact(
    registry: Registry, register: Register, trained_intent: Trained, trained_device: Trained
) -> None:
    register(trained_intent)
    register(trained_device)
    engine = CountingEngine(registry)
    expected = {
        "intent": [p.label for p in engine.predict("acme", "intent", trained_intent.heldout)],
        "device": [p.label for p in engine.predict("acme", "device", trained_device.heldout)],
    }
    engine.batches.clear()
    batcher = MicroBatcher(engine, max_batch_texts=256, max_wait_ms=50)
    try:
        jobs = [("intent", trained_intent.heldout), ("device", trained_device.heldout)] * 8
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(lambda job: batcher.predict("acme", job[0], job[1]), jobs))
        for (task, _), preds in zip(jobs, results, strict=True):
            assert [p.label for p in preds] == expected[task]
        assert sum(engine.batches) == len(jobs)
        assert max(engine.batches) > 1  # requests really shared passes
        with pytest.raises(AdapterNotFoundError):
            batcher.predict("acme", "no-such-task", ["x"])
        assert batcher.predict("acme", "intent", []) == []
    finally:
        batcher.close()
    assert not batcher.ready()


def test_hot_swap_under_concurrent_requests_never_fails(
    registry: Registry, register: Register, trained_intent: Trained, trained_device: Trained
) -> None:
    register(trained_intent)
    register(trained_device, task="intent")  # v2: another model, not yet serving
    batcher = MicroBatcher(Engine(registry), max_wait_ms=1)
    versions: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                versions.extend(
                    p.adapter_version for p in batcher.predict("acme", "intent", ["my vpn is down"])
                )
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        _wait_for(lambda: versions.count("v1") >= 5)
        registry.promote("acme", "intent", "v2")
        seen = len(versions)
        _wait_for(lambda: versions[seen:].count("v2") >= 5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        batcher.close()
    assert errors == []
    # once v2 answered, nothing went back to v1
    first_v2 = versions.index("v2")
    assert set(versions[first_v2:]) == {"v2"}


def test_a_lone_request_does_not_wait_for_company(
    registry: Registry, register: Register, trained_intent: Trained
) -> None:
    register(trained_intent)
    engine = CountingEngine(registry)
    engine.predict("acme", "intent", trained_intent.heldout[:1])  # load the adapter first
    batcher = MicroBatcher(engine, max_wait_ms=2000)
    try:
        for _ in range(3):
            started = time.monotonic()
            (pred,) = batcher.predict("acme", "intent", trained_intent.heldout[:1])
            assert time.monotonic() - started < 1.0  # not the 2 s window
            assert pred.label in trained_intent.card.labels
    finally:
        batcher.close()
