"""Input image references → pixels: files, video frames and rows of Hugging Face datasets.

Kept apart from :mod:`unieditkit.imageio` (decoding and encoding bytes), which :mod:`unieditkit.video` and
:mod:`unieditkit.hfdata` build on: this module sits above all three, so none of them imports back.
"""

from __future__ import annotations

import numpy as np

from .imageio import ImageReadError, load_rgb


def load_uri(uri: str) -> np.ndarray:
    """Any input image reference → RGB uint8 HxWx3 (see :mod:`unieditkit.uri` for the URI forms).

    ``PATH`` is :func:`load_rgb`; ``VIDEO#frame=N`` is frame N of a video; ``DATASET#split=S&column=C&row=N``
    is a row of a Hugging Face dataset (``hf://OWNER/NAME`` or a local dataset path).
    """
    from .uri import int_param, split_uri

    base, params = split_uri(uri)
    try:
        if not params:
            return load_rgb(uri)
        if set(params) == {"frame"}:
            from .video import read_frame

            return read_frame(base, int_param(uri, params, "frame"))
        if set(params) == {"split", "column", "row"}:
            from .hfdata import read_row_image

            return read_row_image(base, params["split"], params["column"], int_param(uri, params, "row"))
    except ValueError as exc:
        raise ImageReadError("bad_uri", str(exc)) from None
    raise ImageReadError("bad_uri", f"{uri}: not an image reference (PATH, VIDEO#frame=N or DATASET#split=S&column=C&row=N)")
