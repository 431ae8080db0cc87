"""The case session: one scan from segmentation to export, with its masks and audit trail (no Qt).

The workflow widget is a thin front end over this package; scripts and tests drive it the same way.
"""
from __future__ import annotations

from .case import RUN_STAGES, CaseRun, CaseSession, ModelCache, RunSettings, case_name, plural, run_case
from .flags import FlagContext
from .history import MaskHistory, mask_sha256
from .progress import StagedProgress

__all__ = [
    "RUN_STAGES", "CaseRun", "CaseSession", "FlagContext", "MaskHistory", "ModelCache", "RunSettings",
    "StagedProgress", "case_name", "mask_sha256", "plural", "run_case",
]
