"""Image model stages (detect, segment, embed) and the actor that runs them together on one decoded image set.

Rows carry image URIs, never pixels (Ray moves rows between processes). A model stage therefore decodes the
images it reads; run as separate actors, detect, segment and embed would each decode every image again, and on
a GPU node that decoding is time the accelerator waits. So the consecutive image model stages of a build run in
one actor (``ImageStages``, as Grounded-SAM runs GroundingDINO and SAM on one loaded image): one call decodes
each distinct URI of its batch once (``DecodedImages``) and hands the pixels to every stage in turn. A frame
shared by several units (the reference view of a multi-view set, a video frame in two pairs) is also detected
and segmented once per call. The pair stage decodes once more: it is a CPU task that Ray runs apart from the
model actors, so the accelerator never waits for JPEG encoding.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import pyarrow as pa

from unieditkit.imageio import ImageReadError
from unieditkit.media import load_uri


class DecodedImages:
    """The decoded images of one actor call, by URI; an undecodable one is remembered as None (the pair stage
    decodes it again and records why it failed). Lives for one call, so it holds at most one batch's images."""

    def __init__(self) -> None:
        self._images: dict[str, np.ndarray | None] = {}

    def get(self, uri: str) -> np.ndarray | None:
        if uri not in self._images:
            try:
                self._images[uri] = load_uri(uri)
            except ImageReadError:
                self._images[uri] = None
        return self._images[uri]


class ImageStage(ABC):
    """A model stage that reads the units' input images. ``process`` updates the rows in place, taking pixels
    from ``images``, so several such stages can share one decode (``ImageStages``); alone, a stage is also a
    row stage (table in, table out)."""

    @abstractmethod
    def process(self, rows: list[dict[str, Any]], images: DecodedImages) -> None:
        """Fill in this stage's columns of ``rows``."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        self.process(rows, DecodedImages())
        return pa.Table.from_pylist(rows, schema=batch.schema)


class ImageStages:
    """Several image model stages in one Ray actor: each builds its model once, and each call decodes every
    distinct image of the batch once for all of them. ``members``: ``(stage class, its kwargs)`` in chain order."""

    def __init__(self, members: list[tuple[type[ImageStage], dict[str, Any]]]) -> None:
        self.stages = [cls(**kwargs) for cls, kwargs in members]

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        images = DecodedImages()
        for stage in self.stages:
            stage.process(rows, images)
        return pa.Table.from_pylist(rows, schema=batch.schema)
