"""What every source yields: work units with stable ids.

A *work unit* is the smallest piece of input the pipeline processes as one: one annotated image, one
(reference, target) pair from a manifest, one video, one multi-view object. Its ``unit_id`` is derived from
the input alone (a relative path, an annotation id), so the same input always gives the same units, the same
shard assignment and the same sample keys — that is what makes resume and byte-identical rebuilds possible.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol, runtime_checkable


@dataclass(frozen=True)
class AnnotatedObject:
    """One object known before any model runs (from annotations) or found by the detect/segment stages.

    ``segmentation`` is COCO-style: a list of polygons or an RLE dict, in the coordinates of the target image
    whose size is ``image_size``; ``mask_uri`` points at a mask image instead. Either may be empty, in which
    case the segment stage has to produce the mask from ``bbox``.
    """

    category: str
    bbox: tuple[float, float, float, float]
    object_id: str
    subcategory: str = ""
    segmentation: Any = None
    mask_uri: str = ""
    image_size: tuple[int, int] = (0, 0)
    score: float = 1.0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["bbox"] = [float(v) for v in self.bbox]
        d["image_size"] = list(self.image_size)
        return d


@dataclass(frozen=True)
class WorkUnit:
    """One input item; ``ref_uri`` is empty for ``self`` pairs (the reference is cut from the target).

    ``needs_detection`` marks unannotated input: its objects come from the detect/segment stages, so an empty
    ``objects`` is expected rather than a reason to skip the unit. ``category_hint`` is what the input's layout
    says the object is (e.g. a multi-view folder named ``chair``): a prompt for the detector, not a label.
    """

    unit_id: str
    group_id: str
    source_kind: str
    pair_kind: str
    tgt_uri: str
    ref_uri: str = ""
    ref_mask_uri: str = ""
    objects: tuple[AnnotatedObject, ...] = field(default_factory=tuple)
    needs_detection: bool = False
    source_root: str = ""
    category_hint: str = ""

    def relative(self, uri: str) -> str:
        """A path as stored in sample metadata: relative to the source, so shards do not depend on where the input lived."""
        if not uri or not self.source_root:
            return uri
        return os.path.relpath(uri, self.source_root).replace(os.sep, "/")

    def objects_json(self) -> str:
        return json.dumps([o.to_json() for o in self.objects], sort_keys=True)


class Source(Protocol):
    """A source of work units; ``describe()`` names it in messages and stats."""

    kind: str

    def units(self) -> Iterator[WorkUnit]: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class ProbeRequest:
    """A measurement planning needs that decodes an input (a clip's frame count and shots): named so the build can
    run all of them as parallel Ray tasks and keep the answers in its output folder (``pipelines/probe.py``),
    instead of the source measuring one input after another on the driver on every run.

    ``key`` names the input by its place in the source plus every setting the answer depends on; ``path`` is the
    file, whose size and modification time must also match for a kept answer to be used again. ``measure()``
    returns a JSON-able answer; one with an ``"error"`` entry (the input could not be read) is used but not
    kept, since the cause may be the worker's (a clip missing on one node's mount) rather than the file's.
    """

    key: str
    path: str
    measure: Callable[[], dict[str, Any]]


@runtime_checkable
class ProbedSource(Protocol):
    """A source whose units depend on measurements of its inputs; without ``use_probes`` it measures them itself."""

    def probe_requests(self) -> list[ProbeRequest]: ...

    def use_probes(self, answers: Mapping[str, dict[str, Any]]) -> None: ...
