# SPDX-License-Identifier: BSD-3-Clause
"""Evaluation: pixel AUROC, sample AUROC/AP, FROC with bootstrap CIs; test sets; reports."""

from .evaluate import EvalOptions, Evaluation, TestItem, evaluate, load_csv_test_set, load_volume_test_set, score_maps
from .metrics import FROC_RATES, auroc_from_histograms, extract_candidates, froc, match_candidates, sample_score

__all__ = [
    "EvalOptions",
    "Evaluation",
    "FROC_RATES",
    "TestItem",
    "auroc_from_histograms",
    "evaluate",
    "extract_candidates",
    "froc",
    "load_csv_test_set",
    "load_volume_test_set",
    "match_candidates",
    "sample_score",
    "score_maps",
]
