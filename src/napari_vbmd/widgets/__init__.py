"""napari dock widgets: thin front ends over the engine."""
import os
import sys


def _keep_triton_out() -> None:
    """Stop torch from loading Triton inside napari.

    Triton's libtriton carries its own LLVM; Mesa's OpenGL drivers (llvmpipe, radeonsi) load the
    system's LLVM when napari's canvas starts. Importing Triton after that crashes the process
    (segmentation fault in ``triton/knobs.py``), and torchvision imports it through ``torch._dynamo``
    the first time a network is built. Inference does not need Triton (no ``torch.compile``), so in
    the napari process it is made unimportable; torch then reports that Triton is absent.
    Set NAPARI_VBMD_ALLOW_TRITON=1 to keep it (e.g. with a vendor GL driver and torch.compile).
    """
    if "triton" in sys.modules or os.environ.get("NAPARI_VBMD_ALLOW_TRITON"):
        return
    sys.modules["triton"] = None


_keep_triton_out()
