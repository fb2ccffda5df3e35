"""Adapter registry and prediction log, both scoped by tenant."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy

from deskpilot.errors import AdapterNotFoundError, InputDataError
from deskpilot.store import (
    AdapterRecord,
    Database,
    PredictionRecord,
    count_predictions,
    get_or_create_tenant,
    list_adapter_records,
    record_predictions,
    set_champion,
    upsert_adapter,
)
from deskpilot.types import Alternative, Prediction


def _adapter(session: sqlalchemy.orm.Session, tenant: str, version: str, status: str = "candidate") -> None:
    upsert_adapter(
        session,
        tenant,
        "queue",
        version,
        kind="classifier",
        base_model="all-MiniLM-L6-v2",
        metrics={"macro_f1": 0.8, "per_label": {"billing": 0.9}},
        status=status,
    )


def _statuses(db: Database, tenant: str) -> dict[str, str]:
    with db.session() as session:
        return {r.version: r.status for r in list_adapter_records(session, tenant, "queue")}


def test_upsert_adapter_inserts_then_updates(db: Database) -> None:
    with db.session() as session:
        _adapter(session, "acme", "v1")
        record = upsert_adapter(
            session,
            "acme",
            "queue",
            "v1",
            kind="classifier",
            base_model="m2",
            metrics={"f1": 1},
            status="retired",
        )
    with db.session() as session:
        (loaded,) = list_adapter_records(session, "acme")
    assert loaded.id == record.id
    assert (loaded.base_model, loaded.metrics, loaded.status) == ("m2", {"f1": 1}, "retired")


def test_set_champion_switches_atomically(db: Database) -> None:
    with db.session() as session:
        for version in ("v1", "v2", "v3"):
            _adapter(session, "acme", version)
        set_champion(session, "acme", "queue", "v1")
    assert _statuses(db, "acme") == {"v1": "champion", "v2": "candidate", "v3": "candidate"}
    with db.session() as session:
        set_champion(session, "acme", "queue", "v2")
        set_champion(session, "acme", "queue", "v2")  # already champion: no change
    assert _statuses(db, "acme") == {"v1": "retired", "v2": "champion", "v3": "candidate"}
    # A failure later in the same unit of work undoes the whole switch.
    with pytest.raises(RuntimeError), db.session() as session:
        set_champion(session, "acme", "queue", "v3")
        raise RuntimeError("deploy failed")
    assert _statuses(db, "acme") == {"v1": "retired", "v2": "champion", "v3": "candidate"}


def test_upsert_as_champion_retires_the_old_one(db: Database) -> None:
    with db.session() as session:
        _adapter(session, "acme", "v1", status="champion")
        _adapter(session, "acme", "v2", status="champion")
    assert _statuses(db, "acme") == {"v1": "retired", "v2": "champion"}


def test_database_refuses_two_champions(db: Database) -> None:
    with db.session() as session:
        _adapter(session, "acme", "v1", status="champion")
        _adapter(session, "acme", "v2")
    with pytest.raises(sqlalchemy.exc.IntegrityError), db.session() as session:
        session.execute(sqlalchemy.update(AdapterRecord).values(status="champion"))


def test_set_champion_unknown_version(db: Database) -> None:
    with db.session() as session:
        _adapter(session, "acme", "v1")
        with pytest.raises(AdapterNotFoundError):
            set_champion(session, "acme", "queue", "v9")
        with pytest.raises(AdapterNotFoundError):
            set_champion(session, "nobody", "queue", "v1")


def test_adapters_are_per_tenant(db: Database) -> None:
    with db.session() as session:
        _adapter(session, "tenant-a", "v1", status="champion")
        _adapter(session, "tenant-b", "v1")
        with pytest.raises(AdapterNotFoundError):
            set_champion(session, "tenant-b", "queue", "v2")
        _adapter(session, "tenant-a", "v2")
        with pytest.raises(AdapterNotFoundError):
            set_champion(session, "tenant-b", "queue", "v2")
        set_champion(session, "tenant-b", "queue", "v1")
    assert _statuses(db, "tenant-a") == {"v1": "champion", "v2": "candidate"}
    assert _statuses(db, "tenant-b") == {"v1": "champion"}
    with db.session() as session:
        assert list_adapter_records(session, "tenant-c") == []
        assert list_adapter_records(session, "tenant-a", "other-task") == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("status", "live"), ("kind", "Bad Kind"), ("metrics", {"x": float("nan")}), ("version", "")],
)
def test_bad_adapter_input(db: Database, field: str, value: object) -> None:
    arguments: dict[str, object] = {
        "kind": "classifier",
        "base_model": "m",
        "metrics": {},
        "status": "candidate",
        "version": "v1",
    }
    arguments[field] = value
    with db.session() as session, pytest.raises(InputDataError):
        upsert_adapter(session, "acme", "queue", **arguments)  # type: ignore[arg-type]


def _prediction(label: str, score: float, abstained: bool = False) -> Prediction:
    return Prediction(
        label=label,
        score=score,
        abstained=abstained,
        alternatives=(Alternative(label, score),),
        task="queue",
        adapter_version="v1",
    )


def test_record_predictions_round_trip(db: Database) -> None:
    texts = ["printer on fire", "refund please", "printer on fire"]
    predictions = [
        _prediction("it", 0.91),
        _prediction("billing", 0.55, abstained=True),
        _prediction("it", 0.9),
    ]
    with db.session() as session:
        tenant = get_or_create_tenant(session, "acme")
        ids = record_predictions(session, tenant.id, "queue", texts, predictions)
        assert record_predictions(session, tenant.id, "queue", [], []) == []
    assert len(ids) == 3 and len(set(ids)) == 3
    with db.session() as session:
        rows = {r.id: r for r in session.scalars(sqlalchemy.select(PredictionRecord))}
        assert count_predictions(session, "acme") == 3
        assert count_predictions(session, "acme", "queue") == 3
        assert count_predictions(session, "acme", "priority") == 0
    for row_id, text, prediction in zip(ids, texts, predictions, strict=True):
        row = rows[row_id]
        assert row.input_hash == hashlib.sha256(text.encode()).hexdigest()
        assert (row.label, row.abstained, row.adapter_version, row.task) == (
            prediction.label,
            prediction.abstained,
            "v1",
            "queue",
        )
        assert row.score == pytest.approx(prediction.score)
        assert row.created_at.tzinfo is not None


def test_predictions_are_per_tenant(db: Database) -> None:
    with db.session() as session:
        a = get_or_create_tenant(session, "tenant-a")
        get_or_create_tenant(session, "tenant-b")
        record_predictions(session, a.id, "queue", ["x", "y"], [_prediction("it", 0.9)] * 2)
        assert count_predictions(session, "tenant-a") == 2
        assert count_predictions(session, "tenant-b") == 0
        assert count_predictions(session, "nobody") == 0


def test_record_predictions_needs_matching_lengths(db: Database) -> None:
    with db.session() as session:
        tenant = get_or_create_tenant(session, "acme")
        with pytest.raises(InputDataError):
            record_predictions(session, tenant.id, "queue", ["a", "b"], [_prediction("it", 0.9)])
