"""Blinded two-contour rating studies: create, rate (append-only store), analyse. No napari here."""
from __future__ import annotations

from .analysis import analyze, analyze_study, fleiss_kappa, wilson_interval
from .session import CHOICES, RatingSession, case_order, presentation
from .store import AnswerStore, load_all_answers, read_jsonl
from .study import COLOURS, Study, create_study, load_mapping, load_study, read_manifest

__all__ = [
    "AnswerStore", "CHOICES", "COLOURS", "RatingSession", "Study", "analyze", "analyze_study", "case_order",
    "create_study", "fleiss_kappa", "load_all_answers", "load_mapping", "load_study", "presentation",
    "read_jsonl", "read_manifest", "wilson_interval",
]
