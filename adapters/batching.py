"""Dynamic micro-batching: concurrent requests share forward passes.

One worker thread owns the engine's forward passes. Requests queued while a pass runs
go into the next one together; when more requests are in flight than have been taken,
the worker waits at most ``max_wait_ms`` for them. A request that arrives alone is
answered at once (waiting could only add latency). Requests for different adapters of the
same base go into one mixed-adapter pass (``Engine.predict_many``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from deskpilot.adapters.serving import Engine, Request
from deskpilot.errors import DeskpilotError
from deskpilot.types import AdapterSummary, Prediction

_Item = tuple[Request, "Future[list[Prediction]]"]


class MicroBatcher:
    """A :class:`deskpilot.tasks.classify.Predictor` in front of an :class:`Engine`."""

    def __init__(self, engine: Engine, *, max_batch_texts: int = 64, max_wait_ms: float = 2.0) -> None:
        self.engine = engine
        self.max_batch_texts = max_batch_texts
        self.max_wait = max_wait_ms / 1000.0
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="deskpilot-batcher", daemon=True)
        self._closed = False
        self._in_flight = 0  # callers waiting for an answer (queued or in a pass)
        self._count_lock = threading.Lock()
        self._worker.start()

    # --- Predictor -------------------------------------------------------------------
    def predict(
        self,
        tenant: str,
        task: str,
        texts: Sequence[str],
        *,
        version: str | None = None,
        abstain: bool = True,
    ) -> list[Prediction]:
        if self._closed:
            raise RuntimeError("the batcher is closed")
        future: Future[list[Prediction]] = Future()
        with self._count_lock:
            self._in_flight += 1
        try:
            self._queue.put((Request(tenant, task, list(texts), version, abstain), future))
            return future.result()
        finally:
            with self._count_lock:
                self._in_flight -= 1

    def adapters(self, tenant: str) -> list[AdapterSummary]:
        return self.engine.adapters(tenant)

    def similar(
        self, tenant: str, task: str, text: str, *, k: int = 3, version: str | None = None
    ) -> list[dict[str, Any]]:
        """The most similar training rows (an explanation aid); one pass, outside the batch queue."""
        result: list[dict[str, Any]] = self.engine.similar(tenant, task, text, k=k, version=version)
        return result

    def explain(
        self, tenant: str, tasks: Sequence[str], text: str, *, k: int = 3
    ) -> dict[str, tuple[Prediction, list[dict[str, Any]]] | DeskpilotError]:
        """Every task of one ticket in one mixed pass, with similar rows (see :meth:`Engine.explain`)."""
        return self.engine.explain(tenant, tasks, text, k=k)

    def ready(self) -> bool:
        return self.engine.ready() and self._worker.is_alive()

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._worker.join(timeout=10)

    # --- worker ----------------------------------------------------------------------
    def _collect(self, first: _Item) -> tuple[list[_Item], bool]:
        batch, size = [first], len(first[0].texts)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch_texts:
            left = deadline - time.monotonic()
            try:
                if left > 0 and self._in_flight > len(batch):  # others are coming: wait a little
                    item = self._queue.get(timeout=left)
                else:
                    item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
            size += len(item[0].texts)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._collect(first)
            try:
                results = self.engine.predict_many([request for request, _ in batch])
            except Exception as exc:  # a bug or a broken model: fail these requests, keep serving
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
