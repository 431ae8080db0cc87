"""A site's own checkpoint file for tests that need a real one: the bundled networks copied."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from napari_vbmd.segmentation.models import DEFAULT_CHECKPOINT


def site_checkpoint(stem: Path, **config) -> Path:
    """The bundled networks copied to ``stem``.json/.safetensors with ``config``'s entries changed (a name, a
    threshold, a band). No ONNX file beside them, so torch runs them and ``load_checkpoint`` is called. Tests
    used networks whose output was a constant before 2026-12-02; their mask, the whole bone crop, runs out of the
    scan at both ends, which the pipeline refuses."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    settings = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text(encoding="utf-8"))
    settings.update(config)
    stem.with_suffix(".json").write_text(json.dumps(settings), encoding="utf-8")
    shutil.copy(DEFAULT_CHECKPOINT.with_suffix(".safetensors"), stem.with_suffix(".safetensors"))
    return stem.with_suffix(".json")
