"""Video files → (reference frame, target frame) pairs of the same object, AnyDoor style.

Two frames of one clip show the same object with a natural change of pose, lighting and background, which is
exactly what a reference-guided editor must learn and what a ``self`` pair cannot teach. But only within one
shot: across a hard cut the "same" place shows a different scene, and the object found there is another one.
So an unannotated clip is first cut into shots (PySceneDetect's ContentDetector, ``cut_threshold``; see
``unieditkit.video.shots``, cached between builds), and both frames of a pair lie in one shot. The frame gap
is bounded on both sides, as fractions of the shot's length: at least ``min_gap_frac`` (nearer frames are
near-copies; AnyDoor: a tenth) and at most ``max_gap_frac`` (farther frames lose the object, and the
tracker that follows it from one frame to the other, ``pipelines/stages/track.py``, goes astray; a pair whose
track cannot tell an object from a look-alike is rejected as ``ambiguous_identity``, never guessed).

Which pairs: per clip (or per annotated instance), ``pairs_per_video`` distinct pairs drawn AnyDoor-style
(a shot in proportion to its pairs, first frame uniform, second within the gap bounds) from a generator
seeded by the clip's relative path and ``seed``, so the same input always gives the same pairs. All units of
a clip share one group (one split). Annotated clips get the gap bounds over their annotated frames and no
shot detection: their annotation already says which object is which in every frame.

Layout, with optional video-segmentation annotation (DAVIS / YouTube-VOS style) beside a clip::

    clips/dog.mp4
    clips/dog/00000.png  clips/dog/00005.png ...   frame index in the name; pixel value (palette index or
                                                  grey level) = instance id, 0 = background; any subset of
                                                  frames may be annotated (YouTube-VOS: every 5th)
    clips/dog.json       {"1": "dog", "2": "person"}   instance id → category name

A clip without annotation gives ``needs_detection`` units (objects come from the detect/segment stages).
An annotated clip gives one unit per (pair, instance), pairs drawn among the frames where that instance is
visible, with masks referenced as ``clips/dog/00012.png#labels=2`` (see ``unieditkit.imageio.load_mask_uri``).

Clips live on a local or shared filesystem; ``video:s3://…`` is refused with that fix. OpenCV decodes local
files only, and a clip is decoded whole on the driver (frame count, shots) and again by every worker that
reads one of its pairs: downloading it at each of those places would move each clip several times, where
copying the folder once (``aws s3 sync``) moves it once.

Broken inputs: an unreadable annotation mask only drops that frame (counted in ``skipped_mask_frames``); a
frame of an annotated clip that the video lacks is rejected by the pair stage, with its reason. A clip that cannot be opened, or has too few decodable frames for one pair, is skipped and
counted (``skipped`` and one warning per source). It cannot become a unit: without a frame count there are no
frame numbers to refer to. Frames are counted with ``unieditkit.video.frame_count``, which does not trust the
header of a truncated file, so the pairs of a partly broken clip only use frames that decode.

Counting and shot detection decode the clip, so a build asks for them up front (``probe_requests``), runs them
as parallel Ray tasks and keeps the answers in its output folder (``pipelines/probe.py``); the units are the
same whether a clip was probed there, taken from that cache, or probed here on the spot (no build).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

import numpy as np

from unieditkit.errors import UserError
from unieditkit.imageio import ImageReadError, load_label_map
from unieditkit.uri import is_url, with_fragment
from unieditkit.video import DEFAULT_CUT_THRESHOLD, VIDEO_EXTENSIONS, frame_count, shot_settings, shots

from .base import AnnotatedObject, ProbeRequest, WorkUnit
from .config import format_spec
from .files import Tree

log = logging.getLogger(__name__)


def _gap_bounds(length: int, min_gap_frac: float, max_gap_frac: float) -> tuple[int, int]:
    """Smallest and largest frame gap of a pair inside ``length`` frames (empty when ``lo > hi``)."""
    return max(1, math.ceil(min_gap_frac * length)), min(length - 1, math.floor(max_gap_frac * length))


def _pairs_in(length: int, lo: int, hi: int) -> int:
    return sum(length - d for d in range(lo, hi + 1)) if hi >= lo else 0


def choose_pairs(
    n: int, min_gap_frac: float, count: int, key: str, seed: int, max_gap_frac: float = 1.0, shots: list[tuple[int, int]] | None = None
) -> list[tuple[int, int]]:
    """Up to ``count`` distinct index pairs ``(a, b)`` in ``range(n)``, both in one of ``shots`` (``[start, end)``
    ranges; default: all of ``range(n)``), with ``ceil(min_gap_frac * L) <= b - a <= floor(max_gap_frac * L)``
    (at least 1) for the shot's length ``L``.

    Deterministic in all arguments; sorted. Empty when no shot is long enough for the gap. A shot is drawn in
    proportion to the pairs it holds, then ``a`` uniformly, then ``b`` uniformly within the gap bounds.
    """
    spans = []
    for start, end in shots if shots is not None else [(0, n)]:
        lo, hi = _gap_bounds(end - start, min_gap_frac, max_gap_frac)
        if _pairs_in(end - start, lo, hi):
            spans.append((start, end, lo, hi))
    if not spans:
        return []
    available = sum(_pairs_in(e - s, lo, hi) for s, e, lo, hi in spans)
    weights = np.array([_pairs_in(e - s, lo, hi) for s, e, lo, hi in spans], dtype=np.float64)
    rng = np.random.default_rng([seed, int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:15], 16)])
    pairs: set[tuple[int, int]] = set()
    for _ in range(50 * count):
        if len(pairs) >= min(count, available):
            break
        start, end, lo, hi = spans[int(rng.choice(len(spans), p=weights / weights.sum()))] if len(spans) > 1 else spans[0]
        a = int(rng.integers(start, end - lo))
        pairs.add((a, int(rng.integers(a + lo, min(a + hi, end - 1) + 1))))
    return sorted(pairs)


class VideoSource:
    kind = "video"
    OPTIONS: ClassVar[dict[str, type]] = {
        "min_gap_frac": float, "max_gap_frac": float, "cut_threshold": float, "pairs_per_video": int, "seed": int
    }

    def __init__(
        self, path: str, min_gap_frac: float = 0.1, max_gap_frac: float = 0.5, cut_threshold: float = DEFAULT_CUT_THRESHOLD,
        pairs_per_video: int = 2, seed: int = 0,
    ) -> None:
        self.path = Path(path)
        self.options: dict[str, Any] = {"min_gap_frac": min_gap_frac, "max_gap_frac": max_gap_frac, "cut_threshold": cut_threshold,
                                        "pairs_per_video": pairs_per_video, "seed": seed}
        if not 0.0 < min_gap_frac < 1.0:
            raise UserError(f"{self.describe()}: min_gap_frac must be in (0, 1), e.g. 0.1 (a tenth of the shot)")
        if not min_gap_frac <= max_gap_frac <= 1.0:
            raise UserError(f"{self.describe()}: max_gap_frac must be in [min_gap_frac, 1], e.g. 0.5 (half the shot)")
        if cut_threshold < 0:
            raise UserError(f"{self.describe()}: cut_threshold must be >= 0 (PySceneDetect ContentDetector, default 27; 0 = no shot detection)")
        if pairs_per_video < 1:
            raise UserError(f"{self.describe()}: pairs_per_video must be at least 1")
        if is_url(path):
            raise UserError(f"video:{path}: videos are decoded by OpenCV, which reads local files only; copy the clips to a local "
                            "or shared folder (aws s3 sync, gsutil rsync) and pass --source video:/that/folder/")
        if self.path.is_file():
            if self.path.suffix.lower() not in VIDEO_EXTENSIONS:
                raise UserError(f"video:{path}: not a video file ({', '.join(sorted(VIDEO_EXTENSIONS))})")
            self.root, self.videos = self.path.parent, [self.path]
        elif self.path.is_dir():
            found = Tree(f"video:{path}", path, "pass --source video:/path/to/clips/").find(VIDEO_EXTENSIONS)
            self.root, self.videos = self.path, [self.path / rel for rel in found]
            if not self.videos:
                raise UserError(f"video:{path}: no video files found (looked for {', '.join(sorted(VIDEO_EXTENSIONS))}, any case)")
        else:
            raise UserError(f"video:{path}: not found; pass --source video:/path/to/clips/ or a single video file")
        self.min_gap_frac, self.max_gap_frac, self.cut_threshold = min_gap_frac, max_gap_frac, cut_threshold
        self.pairs_per_video, self.seed = pairs_per_video, seed
        self.skipped: Counter[str] = Counter()
        self.skipped_mask_frames: Counter[str] = Counter()
        self.probes: dict[str, dict[str, Any]] = {}

    def describe(self) -> str:
        return format_spec(self.kind, str(self.path), self.options)

    def probe_requests(self) -> list[ProbeRequest]:
        """One per unannotated clip (an annotated clip's frames are named by its masks: nothing to measure)."""
        return [ProbeRequest(self._probe_key(video), str(video), functools.partial(probe_clip, str(video), self.cut_threshold))
                for video in self.videos if not _annotated(video)]

    def use_probes(self, answers: Mapping[str, dict[str, Any]]) -> None:
        self.probes = dict(answers)

    def _probe_key(self, video: Path) -> str:
        return f"{self._unit_base(video.relative_to(self.root).as_posix())}?{shot_settings(self.cut_threshold)}"

    def units(self) -> Iterator[WorkUnit]:
        self.skipped, self.skipped_mask_frames = Counter(), Counter()
        examples: dict[str, str] = {}
        for video in self.videos:
            rel = video.relative_to(self.root).as_posix()
            try:
                yield from self._video_units(video, rel)
            except ImageReadError as exc:
                self.skipped[exc.reason] += 1
                examples.setdefault(exc.reason, exc.detail)
        if self.skipped:
            what = "; ".join(f"{reason} {n} (e.g. {examples[reason]})" for reason, n in sorted(self.skipped.items()))
            log.warning("%s: skipped %d of %d videos: %s", self.describe(), sum(self.skipped.values()), len(self.videos), what)
        if self.skipped_mask_frames:
            what = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped_mask_frames.items()))
            log.warning("%s: ignored unreadable annotation masks: %s", self.describe(), what)

    def _unit_base(self, rel: str) -> str:
        return f"video/{self.root.resolve().name}/{rel}"

    def _video_units(self, video: Path, rel: str) -> Iterator[WorkUnit]:
        if _annotated(video):
            yield from self._annotated_units(video, rel, video.with_suffix(""), video.with_suffix(".json"))
            return
        probe = self.probes.get(self._probe_key(video)) or probe_clip(str(video), self.cut_threshold)
        if "error" in probe:
            raise ImageReadError(*probe["error"])
        n, cuts = probe["frames"], [(start, end) for start, end in probe["shots"]]
        pairs = choose_pairs(n, self.min_gap_frac, self.pairs_per_video, rel, self.seed, self.max_gap_frac, cuts)
        if not pairs:
            raise ImageReadError("video_too_short", f"{video} has {n} decodable frames in {len(cuts)} shots, too few for one pair")
        base = self._unit_base(rel)
        for a, b in pairs:
            yield WorkUnit(
                unit_id=f"{base}#frames={a}-{b}",
                group_id=base,
                source_kind=self.kind,
                pair_kind="video",
                tgt_uri=with_fragment(str(video), frame=b),
                ref_uri=with_fragment(str(video), frame=a),
                needs_detection=True,
                source_root=str(self.root),
            )

    def _annotated_units(self, video: Path, rel: str, ann_dir: Path, ann_json: Path) -> Iterator[WorkUnit]:
        categories = read_categories(ann_json, ann_dir)
        masks = sorted((int(p.stem), p) for p in ann_dir.glob("*.png") if p.stem.isdigit())
        if not masks:
            raise UserError(f"{ann_dir}: no per-frame masks named by frame index (00000.png, 00005.png, ...); add them or remove {ann_json.name}")
        seen: dict[int, list[tuple[int, Path, tuple[float, float, float, float], tuple[int, int]]]] = {k: [] for k in categories}
        for frame, mask_path in masks:
            try:
                labels = load_label_map(mask_path)
            except ImageReadError as exc:
                self.skipped_mask_frames[exc.reason] += 1
                continue
            h, w = labels.shape
            for inst in seen:
                ys, xs = np.nonzero(labels == inst)
                if xs.size:
                    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
                    seen[inst].append((frame, mask_path, box, (w, h)))
        base = self._unit_base(rel)
        for inst, frames in sorted(seen.items()):
            for a, b in choose_pairs(len(frames), self.min_gap_frac, self.pairs_per_video, f"{rel}#obj={inst}", self.seed, self.max_gap_frac):
                fa, mask_a, _, _ = frames[a]
                fb, mask_b, box_b, size_b = frames[b]
                obj = AnnotatedObject(
                    category=categories[inst],
                    bbox=box_b,
                    object_id=str(inst),
                    mask_uri=with_fragment(str(mask_b), labels=inst),
                    image_size=size_b,
                )
                yield WorkUnit(
                    unit_id=f"{base}#frames={fa}-{fb}&obj={inst}",
                    group_id=base,
                    source_kind=self.kind,
                    pair_kind="video",
                    tgt_uri=with_fragment(str(video), frame=fb),
                    ref_uri=with_fragment(str(video), frame=fa),
                    ref_mask_uri=with_fragment(str(mask_a), labels=inst),
                    objects=(obj,),
                    source_root=str(self.root),
                )


def _annotated(video: Path) -> bool:
    """A clip with ``NAME.json`` or per-frame masks in ``NAME/`` (which ``read_categories`` then checks)."""
    ann_dir = video.with_suffix("")
    return video.with_suffix(".json").is_file() or (ann_dir.is_dir() and any(p.stem.isdigit() for p in ann_dir.glob("*.png")))


def probe_clip(path: str, cut_threshold: float) -> dict[str, Any]:
    """What planning needs of an unannotated clip, as JSON (a build runs it in a Ray task and keeps the answer):
    how many frames decode and the shots as ``[start, end)``; ``{"error": [reason, detail]}`` for a clip that
    cannot be read, which the source then skips and counts as it always did."""
    try:
        n = frame_count(path)
        return {"frames": n, "shots": [[start, end] for start, end in shots(path, n, cut_threshold)]}
    except ImageReadError as exc:
        return {"error": [exc.reason, exc.detail]}


def read_categories(ann_json: Path, ann_dir: Path) -> dict[int, str]:
    """``NAME.json`` ({instance id: category}) of an annotated clip; both it and ``NAME/`` must exist."""
    if not ann_dir.is_dir():
        raise UserError(f"{ann_json}: found, but the mask folder {ann_dir}/ is missing; add the per-frame masks or remove the JSON")
    if not ann_json.is_file():
        raise UserError(f"{ann_dir}/: mask folder without {ann_json.name}; add {{\"instance id\": \"category\"}} there")
    try:
        data = json.loads(ann_json.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{ann_json}: not a readable JSON file ({exc}); expected {{\"1\": \"dog\", ...}}") from None
    if not isinstance(data, dict) or not data:
        raise UserError(f"{ann_json}: expected a non-empty object {{\"instance id\": \"category\"}}")
    categories: dict[int, str] = {}
    for key, value in data.items():
        if not str(key).isdigit() or int(key) == 0 or not isinstance(value, str) or not value:
            raise UserError(f"{ann_json}: entry {key!r}: {value!r}: keys must be instance ids >= 1, values category names")
        categories[int(key)] = value
    return categories
