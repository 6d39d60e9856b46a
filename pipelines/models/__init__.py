"""Model backends of the mining pipeline: detect (GroundingDINO), segment (SAM / GrabCut), caption (CoCa),
categorize (CLIP zero-shot), each behind a small interface so Ray stages can swap implementations.

This package imports only the interfaces and the weight checks; the torch-heavy backends are imported on first
use (``from unieditkit.pipelines.models.detect import GroundingDinoDetector`` or the ``build_*`` factories), so a process
that only validates a configuration does not pay for loading them.
"""

from .base import Captioner, Categorizer, Detection, Detector, Segmenter
from .weights import ModelSpec, check_weights, require_weights

__all__ = [
    "Captioner",
    "Categorizer",
    "Detection",
    "Detector",
    "ModelSpec",
    "Segmenter",
    "check_weights",
    "require_weights",
]
