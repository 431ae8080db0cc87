"""napari sample data: a synthetic HR-pQCT scan of the MCP joint with its MC2 truth mask.

The sample is made on the fly (no download) at 1.5x the scanner's voxel size so it appears in a
couple of seconds; `vbmd phantom` makes full-resolution ones. The layers carry the same geometry
and metadata as a scan opened from an AIM file, so the plugin's widgets and writers treat the
sample like a real scan (the image can be saved back to a calibrated AIM, the labels to char 127).
"""
from __future__ import annotations

SAMPLE_SPEC = dict(seed=2026, hand="right", fov="cropped", n_slices=72, spacing_mm=0.123, motion_grade=0,
                   erosions=1, scanner="xtremect1")


def make_phantom_sample():
    from .layers import scan_to_layer_data
    from .phantom import PhantomSpec, generate_phantom

    phantom = generate_phantom(PhantomSpec(**SAMPLE_SPEC))
    info = phantom.truth_info
    name = f"phantom {info['seed']} ({info['hand']} hand)"
    image = scan_to_layer_data(phantom.image, name=f"{name} (mg HA/cm3)")
    image[1]["contrast_limits"] = (-150.0, 1200.0)  # soft tissue grey, cortex white, as a reader sets a window
    image[1]["metadata"]["vbmd_truth"] = info
    labels = scan_to_layer_data(phantom.truth, name=f"{name} truth (MC2)")
    labels[1]["opacity"] = 0.35
    labels[1]["metadata"]["vbmd_truth"] = info
    return [image, labels]
