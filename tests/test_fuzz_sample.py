"""A small fixed sample of benchmarks/fuzz_inputs.py, so CI runs the harness on every reader and on
checkpoint configs: each input is refused in one line or accepted with finite figures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_a_fixed_sample_of_hostile_inputs_is_refused_or_measured(tmp_path):
    out = tmp_path / "summary.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fuzz_inputs.py"), "--per-reader", "4",
                           "--seed", "2026", "--time-limit", "60", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert set(summary["readers"]) == {"aim", "isq", "gobj", "dicom", "nifti", "tiff", "checkpoint"}
    for reader, row in summary["readers"].items():
        assert row["refused"] + row["accepted"] == 4, (reader, row["problems"])
        assert row["refused"] >= 1  # the first input of every reader is a FIFO
