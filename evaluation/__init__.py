"""Benchmarks for deskpilot classifiers: dataset loaders and numpy-only metrics.

Light to import (numpy and the standard library): no torch, no scikit-learn.
"""

from __future__ import annotations

from deskpilot.evaluation.datasets import (
    OOS_LABEL,
    Dataset,
    LabelledSplit,
    banking77,
    banking77_fewshot,
    bitext,
    bitext_pairs,
    clinc150,
    company_documents,
    data_dir,
    holdout,
    load_file,
    multilingual_tickets,
    split_validation,
    stratified_indices,
    with_oos,
)
from deskpilot.evaluation.metrics import (
    ABSTAIN,
    ABSTAIN_ALL_THRESHOLD,
    accuracy,
    classification_report,
    coverage_curve,
    expected_calibration_error,
    macro_f1,
    threshold_for_precision,
)

__all__ = [
    "ABSTAIN",
    "ABSTAIN_ALL_THRESHOLD",
    "OOS_LABEL",
    "Dataset",
    "LabelledSplit",
    "accuracy",
    "banking77",
    "banking77_fewshot",
    "bitext",
    "bitext_pairs",
    "classification_report",
    "clinc150",
    "company_documents",
    "coverage_curve",
    "data_dir",
    "expected_calibration_error",
    "holdout",
    "load_file",
    "macro_f1",
    "multilingual_tickets",
    "split_validation",
    "stratified_indices",
    "threshold_for_precision",
    "with_oos",
]
