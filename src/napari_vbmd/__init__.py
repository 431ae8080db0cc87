"""napari-vbmd: volumetric bone mineral density of the second metacarpal in HR-pQCT scans."""
try:
    from importlib.metadata import version as _version

    __version__ = _version("napari-vbmd")
except Exception:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from .errors import VbmdError
from .scan import Calibration, Scan

__all__ = ["Calibration", "Scan", "VbmdError", "__version__"]
