"""Event-loop latency of napari while the Segment & measure widget runs CPU inference.

A 10 ms QTimer ticks in the GUI thread while the widget's worker segments a phantom; the lateness
of each tick (actual interval minus 10 ms) is how long the viewer could not react to a key or a
mouse move. Measured idle, and during runs with torch limited to all cores but one (the widget's
default) and with all cores.

    xvfb-run -a python benchmarks/bench_gui_latency.py [--slices 110] [--out docs/workflow_latency.json]

Without a bundled default model, the network is the default's architecture (small 2D U-Net, 0.3 mm
working grid) with random weights: inference costs the same as with trained weights.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _checkpoint(folder: Path, spacing: float) -> Path:
    import torch

    from napari_vbmd.segmentation.checkpoint import ModelConfig, save_checkpoint
    from napari_vbmd.segmentation.networks import build_network

    torch.manual_seed(0)
    net = build_network("unet2d_small")
    config = ModelConfig("unet2d_small", {}, spacing_mm=(spacing, spacing, spacing), mean=200.0, std=400.0,
                         name=f"unet2d_small_random_{spacing}")
    json_path, _ = save_checkpoint(folder / f"bench_{spacing}", net, config)
    return json_path


def _stats(lateness_ms: list[float]) -> dict:
    a = np.asarray(lateness_ms) if lateness_ms else np.zeros(1)
    return {"ticks": len(lateness_ms), "median_ms": round(float(np.median(a)), 2),
            "p95_ms": round(float(np.percentile(a, 95)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "max_ms": round(float(a.max()), 2), "over_50ms": int((a > 50).sum()), "over_100ms": int((a > 100).sum())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=110)
    parser.add_argument("--spacing", type=float, default=0.082)
    parser.add_argument("--models", nargs="+", default=["net0.3", "net0.15", "classical"],
                        help="netS = random small 2D U-Net at working spacing S mm; classical; default; a path")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtCore import QElapsedTimer, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_vbmd.phantom import PhantomSpec, generate_phantom, write_phantom
    from napari_vbmd.widgets.workflow import SegmentMeasureWidget

    work = Path(tempfile.mkdtemp(prefix="vbmd-latency-"))
    t = time.perf_counter()
    phantom = generate_phantom(PhantomSpec(seed=11, n_slices=args.slices, spacing_mm=args.spacing))
    image_path = write_phantom(phantom, work, "latency")["image"]
    print(f"phantom {phantom.image.shape} in {time.perf_counter() - t:.1f} s", flush=True)

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    viewer.open(str(image_path), plugin="napari-vbmd")
    widget = SegmentMeasureWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment & measure")
    widget.run_tab.device.value = "cpu"
    app = QApplication.instance()

    from qtpy.QtCore import QEventLoop, Qt

    handling = {"seconds": 0.0, "busy": False}
    original_handler = widget._on_segmented

    def timed_handler(payload):  # the result's layer is added in the GUI thread: timed on its own
        handling["busy"] = True
        t0 = time.perf_counter()
        original_handler(payload)
        handling["seconds"] = time.perf_counter() - t0
        handling["busy"] = False
        handling["reset"] = True

    widget._on_segmented = timed_handler

    stalls: list[tuple[float, float]] = []  # (seconds since start, lateness ms) of ticks > 50 ms late

    def measure(run: bool, seconds: float = 3.0) -> tuple[list[float], float]:
        """Lateness of a 10 ms timer while the worker runs (the result's hand-over excluded)."""
        lateness: list[float] = []
        stalls.clear()
        clock = QElapsedTimer()
        timer = QTimer()
        timer.setTimerType(Qt.PreciseTimer)
        timer.setInterval(10)
        last = [None]

        def tick():
            now = clock.elapsed()
            if handling.pop("reset", False):
                last[0] = None
            if last[0] is not None:
                lateness.append(max(0.0, now - last[0] - 10.0))
                if lateness[-1] > 50:
                    stalls.append((round(now / 1000.0, 2), round(lateness[-1])))
            last[0] = now

        timer.timeout.connect(tick)
        loop = QEventLoop()
        watch = QTimer()
        watch.setInterval(20)
        watch.timeout.connect(lambda: None if (run and widget.busy) else loop.quit())
        clock.start()
        timer.start()
        started = time.perf_counter()
        if run:
            widget.run()
            handling["seconds"] = 0.0
            watch.start()
        else:
            QTimer.singleShot(int(seconds * 1000), loop.quit)
        loop.exec_()
        elapsed = time.perf_counter() - started
        timer.stop()
        watch.stop()
        return lateness, elapsed

    cores = os.cpu_count() or 1
    results = {"machine": {"cpu_count": cores, "platform": platform.platform(), "python": sys.version.split()[0]},
               "scan_shape": list(phantom.image.shape), "spacing_mm": args.spacing, "runs": []}
    lateness, _ = measure(run=False)
    results["idle"] = _stats(lateness)
    print("idle", results["idle"], flush=True)
    for model in args.models:
        if model.startswith("net"):
            widget.run_tab.model.value = "checkpoint file"
            widget.run_tab.checkpoint.line_edit.value = str(_checkpoint(work, float(model[3:])))
        elif model in ("classical", "default", "unet2d", "unet3d"):
            widget.run_tab.model.value = model
        else:
            widget.run_tab.model.value = "checkpoint file"
            widget.run_tab.checkpoint.line_edit.value = model
        widget.threads = max(1, cores - 1)
        measure(run=True)  # warm-up: loads and caches the model
        for threads in sorted({max(1, cores - 1), cores}):
            widget.threads = threads
            lateness, elapsed = measure(run=True)
            entry = {"model": model, "torch_threads": threads, "run_seconds": round(elapsed, 2),
                     "result_handover_ms": round(1000 * handling["seconds"], 1), **_stats(lateness),
                     "stalls_s_ms": list(stalls)}
            if widget.result is None:
                entry["error"] = widget.status_label.text()
            results["runs"].append(entry)
            print(entry, flush=True)
    viewer.close()
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
