"""ONNX export: the merged graph computes what the engine computes, int8 is checked first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from adapters_support import Trained, copy_adapter, peft_warning

from deskpilot.adapters.onnx_export import (
    INT8_FILE,
    ONNX_DIR,
    REPORT_FILE,
    OnnxClassifier,
    export_onnx,
    training_sample,
)
from deskpilot.errors import DeskpilotError

pytest.importorskip("onnxruntime")
pytestmark = peft_warning  # the export merges the adapter through a PeftModel


@pytest.fixture(scope="module")
def exported(trained_intent: Trained, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Trained]:
    folder = copy_adapter(trained_intent.directory, tmp_path_factory.mktemp("onnx") / "intent")
    export_onnx(
        folder,
        trained_intent.card,
        check_texts=trained_intent.heldout,
        check_labels=trained_intent.heldout_labels,
    )
    return folder, trained_intent


def test_fp32_export_matches_the_training_time_model(exported: tuple[Path, Trained]) -> None:
    folder, trained = exported
    onnx = OnnxClassifier(folder, trained.card, int8=False, threads=1)
    logits = onnx.logits(trained.heldout)
    scaled = logits / trained.card.calibration["temperature"]
    probs = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    assert np.allclose(probs, trained.expected.numpy(), atol=1e-4)
    labels = [label for label, _ in onnx.predict(trained.heldout)]
    expected = [trained.card.labels[i] for i in trained.expected.argmax(-1).tolist()]
    assert labels == expected


def test_int8_export_is_checked_and_recorded(exported: tuple[Path, Trained]) -> None:
    folder, trained = exported
    report = json.loads((folder / ONNX_DIR / REPORT_FILE).read_text())
    assert report["checked_texts"] == len(trained.heldout)
    assert 0.0 <= report["int8_agreement"] <= 1.0
    assert report["int8_ok"] == (report["int8_loss_points"] <= 0.5)
    assert (folder / ONNX_DIR / INT8_FILE).stat().st_size < (folder / ONNX_DIR / "model.onnx").stat().st_size


def test_an_int8_export_that_failed_its_check_is_refused(
    exported: tuple[Path, Trained], tmp_path: Path
) -> None:
    folder, trained = exported
    copy = copy_adapter(folder, tmp_path / "failed")  # the export comes along
    report = json.loads((folder / ONNX_DIR / REPORT_FILE).read_text())
    report.update(int8_ok=False, int8_loss_points=1.8)
    (copy / ONNX_DIR / REPORT_FILE).write_text(json.dumps(report))
    with pytest.raises(DeskpilotError, match=r"lost 1\.8 accuracy points"):
        OnnxClassifier(copy, trained.card, int8=True)
    assert len(OnnxClassifier(copy, trained.card, int8=True, unchecked=True).predict(["x"])) == 1
    (copy / ONNX_DIR / REPORT_FILE).unlink()
    with pytest.raises(DeskpilotError, match="never checked"):
        OnnxClassifier(copy, trained.card, int8=True)


def test_no_export_is_a_clear_error(trained_intent: Trained, tmp_path: Path) -> None:
    folder = copy_adapter(trained_intent.directory, tmp_path / "plain")
    with pytest.raises(DeskpilotError, match="export-onnx"):
        OnnxClassifier(folder, trained_intent.card)


def test_the_default_check_texts_are_a_seeded_sample_of_the_training_rows(tmp_path: Path) -> None:
    assert training_sample(tmp_path) == []  # an adapter that kept no rows: nothing to check on
    rows = [{"text": f"ticket {i}", "label": "a"} for i in range(50)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sample = training_sample(tmp_path, n=10, seed=3)
    assert len(set(sample)) == 10 and set(sample) <= {r["text"] for r in rows}
    assert sample == training_sample(tmp_path, n=10, seed=3) != training_sample(tmp_path, n=10, seed=4)
    assert len(training_sample(tmp_path, n=500)) == 50
