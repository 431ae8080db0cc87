"""Building a network after napari's OpenGL canvas exists must not crash the process.

Mesa's GL drivers load LLVM; Triton (imported by torch._dynamo through torchvision) carries its own
and segfaulted when imported second. napari_vbmd.widgets keeps Triton out of the napari process.
"""
import os
import subprocess
import sys

import pytest

SCRIPT = """
import numpy as np
import napari
viewer = napari.Viewer(show=True)
viewer.add_image(np.random.rand(8, 64, 64))
viewer.screenshot(canvas_only=True)
import napari_vbmd.widgets  # what napari imports first when a widget of the plugin opens
from napari_vbmd.segmentation.networks import build_network
net = build_network("unet2d_resnet34")
print("built", type(net).__name__)
"""


@pytest.mark.gui
def test_network_built_after_the_canvas_started(qapp):
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs an X display (pytest-xvfb provides one)")
    env = {k: v for k, v in os.environ.items() if k != "NAPARI_VBMD_ALLOW_TRITON"}
    env["OMP_NUM_THREADS"] = "1"
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-2000:]}"
    assert "built" in run.stdout
