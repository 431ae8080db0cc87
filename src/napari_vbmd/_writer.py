"""napari writers: masks (labels) as AIM/NIfTI/TIFF, scans (images) as AIM/NIfTI."""
from __future__ import annotations

from .errors import VbmdError


def write_labels(path: str, data, meta: dict) -> list[str]:
    from .io import write_mask
    from .layers import layer_to_scan

    try:
        mask = layer_to_scan(data, meta.get("metadata"), meta.get("scale"), meta.get("translate"), kind="mask")
        # The layer's metadata carries its scan's processing log, which the AIM writer keeps.
        written = write_mask(path, mask)
    except VbmdError as exc:
        _notify(str(exc))
        return []
    return [str(written)]


def write_image(path: str, data, meta: dict) -> list[str]:
    from .io import write_image as write_scan
    from .layers import layer_to_scan, native_if_lossless

    try:
        scan = layer_to_scan(data, meta.get("metadata"), meta.get("scale"), meta.get("translate"), kind="image")
        if path.lower().endswith(".aim"):
            scan = native_if_lossless(scan)
        written = write_scan(path, scan)
    except VbmdError as exc:
        _notify(str(exc))
        return []
    return [str(written)]


def _notify(message: str) -> None:
    try:
        from napari.utils.notifications import show_error

        show_error(message)
    except Exception:  # pragma: no cover
        pass
