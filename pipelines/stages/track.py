"""Carry reference objects from the reference frame to the target frame of a video pair, and say when the
carrying cannot be trusted.

Matching detections of two frames far apart on appearance and position alone fails exactly where it matters:
two look-alike objects (two players of one team, a pair of shoes) that moved have the same appearance and the
wrong positions. Following each object through the frames in between tells them apart, until one hides the
other.

Two trackers, each giving per object its box in every frame looked at and a confidence per frame (``Track``):

* **SAM 2's video predictor** (``Sam2Tracker``), used when the ``sam2`` package and a SAM 2 checkpoint are
  there: it follows each object's mask with a memory of the frames before, and says per frame how likely the
  object is visible at all (its object score, the confidence here), which is what occlusion needs. The box is
  the mask's; a frame where the mask vanishes keeps the last box.
* **Template tracking** (``track_boxes``, no weights): every object starts as its box in the reference frame. In
  each next frame its position is predicted from its last displacement (constant velocity) and searched for in
  a window around the prediction with normalised cross-correlation (``cv2.matchTemplate``,
  ``TM_CCOEFF_NORMED``) of two templates, the object in the reference frame and the object in the previous frame
  (stable against drift and against slow change of look). The response is lowered with the squared distance
  from the prediction (``MOTION_PENALTY`` per box side), so of two equally good look-alikes the one on the
  object's own path wins. The box keeps its size; the confidence is the reference template's correlation at the
  chosen place, 0 once the object left the frame. Frames larger than ``TRACK_SIDE`` are tracked downscaled.

**Ambiguity** (``ambiguities``), whichever tracker ran. While one look-alike hides the other, both cues of the
hidden one (appearance, position) point at the visible one: the template tracker then carries *both* boxes on
it, and the matcher, given two equal boxes, pairs a target object with the wrong reference at a high score. No
tracker output says which is which after that, so an object's track is distrusted, and a target object matched
to it is rejected as ``ambiguous_identity`` instead of being paired, when in some frame

* it met the track of another object the matcher could take for it (``confusable``: a compatible category):
  their boxes overlap with IoU >= ``CONVERGE_IOU``;
* the tracker's confidence fell below its floor (``Tracker.min_confidence``): the object was hidden or lost, and
  what the track holds after may be something else. SAM 2's object score is about the object alone, so any
  frame counts; a template also holds background, which varies on the way, so only the target frame counts;
* it jumped: it moved more than ``JUMP_SIDES`` box sides away from where its own last displacement predicted.

Rejected alternatives: a second peak in the template response (a look-alike in the search window) also fires
when look-alikes only pass near each other, which the tracker gets right; checking the overlap in the target
frame alone misses two tracks that swapped objects while they overlapped. Rejecting both objects of a crossing
loses a few correct pairs; a wrong pair teaches the editor to paste another object. Deterministic: pure array
operations (template) or a fixed network in inference mode (SAM 2).
"""

from __future__ import annotations

import functools
import io
import math
import tempfile
from contextlib import redirect_stderr
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import cv2
import numpy as np


MOTION_PENALTY = 0.5
MAX_STEPS = 48
#: frames are tracked at most this many pixels on their long side: template matching cost grows with the
#: square of the object's size, and where an object is needs no more detail than this
TRACK_SIDE = 480
#: two tracks whose boxes overlap this much in one frame can no longer be told apart
CONVERGE_IOU = 0.5
#: a step this many box sides off the object's own predicted path is a jump to something else
JUMP_SIDES = 1.0
#: the template tracker's floor, on the reference template's correlation in the target frame. Measured on the
#: synthetic videos of ``tests/test_identity_pairs.py``: an object lost behind an occluder of another look ends
#: at 0.01-0.19, a followed object whose box corners cover a busy photo at 0.29 and more
MIN_TEMPLATE_SCORE = 0.25
#: SAM 2's floor: the object is more likely hidden than visible (SAM 2's own cut, object score logit 0)
MIN_PRESENCE = 0.5

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Track:
    """One object's way from the reference frame to the target frame: its box (xyxy pixels) in each frame looked
    at, the first being the box it started from, and the tracker's confidence in each."""

    boxes: tuple[Box, ...]
    confidence: tuple[float, ...]

    @property
    def box(self) -> Box:
        """Where the object is expected in the target frame."""
        return self.boxes[-1]


class Tracker(Protocol):
    """Follows boxes through frames of one size (RGB, time order, reference frame first)."""

    name: str
    min_confidence: float
    #: whether a confidence below ``min_confidence`` in any frame distrusts a track, or only in the target frame
    whole_path: bool

    def track(self, frames: Sequence[np.ndarray], boxes: Sequence[Sequence[float]]) -> list[Track]: ...


def step_indices(a: int, b: int, max_steps: int = MAX_STEPS) -> list[int]:
    """Frames to look at from ``a`` to ``b`` (both included): every frame, or evenly spaced when far apart."""
    n = min(b - a, max_steps)
    return sorted({a + round(i * (b - a) / n) for i in range(n + 1)}) if b > a else [a]


def _window(cx: float, cy: float, half_w: float, half_h: float, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    return (max(0, math.floor(cx - half_w)), max(0, math.floor(cy - half_h)),
            min(w, math.ceil(cx + half_w)), min(h, math.ceil(cy + half_h)))


def _crop(frame: np.ndarray, box: Sequence[float]) -> np.ndarray:
    x0, y0, x1, y1 = _window((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, (box[2] - box[0]) / 2, (box[3] - box[1]) / 2, frame.shape)
    return frame[y0:y1, x0:x1]


def _track_one(frames: Sequence[np.ndarray], box: Sequence[float]) -> tuple[list[tuple[float, float]], list[float]]:
    """Centres and correlation per frame of one object (template tracking)."""
    first = _crop(frames[0], box)
    bw, bh = first.shape[1], first.shape[0]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    centres, scores = [(cx, cy)], [1.0]
    if bw < 2 or bh < 2:
        return centres * len(frames), [0.0] * len(frames)  # nothing to correlate: not followed at all
    vx = vy = 0.0
    previous = first
    for frame in frames[1:]:
        px, py = cx + vx, cy + vy
        reach = 0.75 * max(bw, bh) + math.hypot(vx, vy)
        x0, y0, x1, y1 = _window(px, py, bw / 2 + reach, bh / 2 + reach, frame.shape)
        region = frame[y0:y1, x0:x1]
        if region.shape[0] < bh or region.shape[1] < bw:
            break  # the object left the frame: its last position stays, with no confidence
        own = np.nan_to_num(cv2.matchTemplate(region, first, cv2.TM_CCOEFF_NORMED), nan=-1.0)
        response = own
        if previous.shape == first.shape:
            response = 0.5 * (own + np.nan_to_num(cv2.matchTemplate(region, previous, cv2.TM_CCOEFF_NORMED), nan=-1.0))
        ys, xs = np.mgrid[0 : response.shape[0], 0 : response.shape[1]]
        dist2 = ((x0 + xs + bw / 2 - px) ** 2 + (y0 + ys + bh / 2 - py) ** 2) / float(max(bw, bh) ** 2)
        best = np.unravel_index(int(np.argmax(response - MOTION_PENALTY * dist2)), response.shape)
        nx, ny = x0 + best[1] + bw / 2, y0 + best[0] + bh / 2
        vx, vy, cx, cy = nx - cx, ny - cy, nx, ny
        previous = frame[y0 + best[0] : y0 + best[0] + bh, x0 + best[1] : x0 + best[1] + bw]
        centres.append((cx, cy))
        scores.append(float(own[best]))
    lost = len(frames) - len(centres)
    return centres + [(cx, cy)] * lost, scores + [0.0] * lost


def _check_frames(frames: Sequence[np.ndarray]) -> None:
    if not frames:
        raise ValueError("track: need at least the reference frame")
    if any(f.shape != frames[0].shape for f in frames):
        raise ValueError("track: frames of one video must have one size")


def track_boxes(frames: Sequence[np.ndarray], boxes: Sequence[Sequence[float]]) -> list[Track]:
    """Template tracking of ``boxes`` (xyxy pixels in ``frames[0]``) through ``frames`` (see module doc)."""
    _check_frames(frames)
    h, w = frames[0].shape[:2]
    scale = min(1.0, TRACK_SIDE / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
    tracks = []
    for box in boxes:
        centres, scores = _track_one(frames, [v * scale for v in box])
        half_w, half_h = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
        path = tuple((cx / scale - half_w, cy / scale - half_h, cx / scale + half_w, cy / scale + half_h) for cx, cy in centres)
        tracks.append(Track(path, tuple(scores)))
    return tracks


class TemplateTracker:
    """``track_boxes`` as a ``Tracker``: no weights, always available."""

    name = "template"
    min_confidence = MIN_TEMPLATE_SCORE
    #: a box template holds background, which varies on the way: only whether the object is at the expected box
    #: in the target frame is measured reliably
    whole_path = False

    def track(self, frames: Sequence[np.ndarray], boxes: Sequence[Sequence[float]]) -> list[Track]:
        return track_boxes(frames, boxes)


@dataclass(frozen=True)
class TrackerSpec:
    """Which tracker a pair stage uses, picklable and small (the stage travels to every Ray task):
    ``template``, or ``sam2`` with its config name, checkpoint (``None``: random weights, tests only), device and
    hydra overrides."""

    name: str = "template"
    config: str = "sam2.1_hiera_t"
    checkpoint: str | None = None
    device: str = "auto"
    overrides: tuple[str, ...] = ()

    def build(self) -> Tracker:
        return TemplateTracker() if self.name == "template" else _sam2_tracker(self)


@functools.lru_cache(maxsize=2)
def _sam2_tracker(spec: TrackerSpec) -> Sam2Tracker:
    """One model per process: the pair stage is a stateless function that Ray runs as many tasks in a few
    worker processes, and loading SAM 2 for each would cost more than tracking. Those tasks reserve no GPU, so
    with ``device="auto"`` SAM 2 tracks on their CPUs, far slower than the template tracker (a GPU track stage
    would need its own entry in ``stages.yaml``)."""
    return Sam2Tracker(spec.config, spec.checkpoint, spec.device, spec.overrides)


class Sam2Tracker:
    """SAM 2's video predictor (``SAM2VideoPredictor``) prompted with each box in the reference frame.

    ``config`` is a SAM 2 config name (``sam2.1_hiera_t`` ...), ``checkpoint`` its weights file (``None``: seeded
    random weights, for tests only), ``overrides`` hydra overrides (tests shrink the model). The predictor reads a
    folder of JPEG frames, so the frames are written to a temporary one, no larger than the network's input.
    """

    name = "sam2"
    min_confidence = MIN_PRESENCE
    #: the object score is about the object alone: one frame where it is more likely hidden than visible suffices
    whole_path = True

    def __init__(self, config: str = "sam2.1_hiera_t", checkpoint: str | Path | None = None, device: str = "cpu",
                 overrides: tuple[str, ...] = ()) -> None:
        from sam2.build_sam import build_sam2_video_predictor

        from ..models.device import resolve_device
        from ..models.segment import build_sam2_checked

        self.device = resolve_device(device)
        predictor = build_sam2_checked(build_sam2_video_predictor, config, checkpoint, overrides)
        self.predictor = predictor.to(self.device).eval()

    def track(self, frames: Sequence[np.ndarray], boxes: Sequence[Sequence[float]]) -> list[Track]:
        import torch

        _check_frames(frames)
        if not boxes:
            return []
        h, w = frames[0].shape[:2]
        scale = min(1.0, self.predictor.image_size / max(h, w))
        paths: list[list[Box]] = [[tuple(float(v) for v in box)] for box in boxes]  # type: ignore[misc]
        scores: list[list[float]] = [[1.0] for _ in boxes]
        # SAM 2 draws two progress bars per call (frame loading, propagation): noise in a build's log, once per pair
        with tempfile.TemporaryDirectory(prefix="unieditkit-track-") as folder, torch.inference_mode(), redirect_stderr(io.StringIO()):
            for i, frame in enumerate(frames):
                if scale < 1.0:
                    frame = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
                cv2.imwrite(str(Path(folder) / f"{i:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            state = self.predictor.init_state(folder, offload_video_to_cpu=True, offload_state_to_cpu=self.device.type == "cpu")
            for k, box in enumerate(boxes):
                self.predictor.add_new_points_or_box(state, frame_idx=0, obj_id=k, box=np.asarray(box, np.float32) * scale)
            for index, _, logits in self.predictor.propagate_in_video(state):
                if index == 0:
                    continue
                for k in range(len(boxes)):
                    out = state["output_dict_per_obj"][k]["non_cond_frame_outputs"][index]
                    presence = float(torch.sigmoid(out["object_score_logits"].float()).flatten()[0])
                    ys, xs = np.nonzero(logits[k, 0].cpu().numpy() > 0)
                    if xs.size:
                        box = (xs.min() / scale, ys.min() / scale, (xs.max() + 1) / scale, (ys.max() + 1) / scale)
                        paths[k].append(tuple(float(v) for v in box))  # type: ignore[arg-type]
                    else:
                        paths[k].append(paths[k][-1])
                        presence = 0.0
                    scores[k].append(presence)
            self.predictor.reset_state(state)
        return [Track(tuple(p), tuple(s)) for p, s in zip(paths, scores)]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two xyxy boxes in one image."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _jump(track: Track) -> tuple[int, float] | None:
    """The first step that lands more than ``JUMP_SIDES`` box sides off the path predicted from the step before."""
    centres = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in track.boxes]
    for s in range(1, len(centres)):
        vx, vy = (centres[s - 1][0] - centres[s - 2][0], centres[s - 1][1] - centres[s - 2][1]) if s >= 2 else (0.0, 0.0)
        prev = track.boxes[s - 1]
        side = max(prev[2] - prev[0], prev[3] - prev[1], 1.0)
        off = math.hypot(centres[s][0] - centres[s - 1][0] - vx, centres[s][1] - centres[s - 1][1] - vy) / side
        if off > JUMP_SIDES:
            return s, off
    return None


def ambiguities(tracks: Sequence[Track], ids: Sequence[str], frames: Sequence[int], confusable: Callable[[int, int], bool],
                tracker: Tracker) -> list[str]:
    """Why each track cannot be trusted to have followed its own object ("" when it can), see module doc.
    ``ids`` name the tracks' objects and ``frames`` are the video frame numbers of their steps (both for the
    reasons), ``confusable(i, j)`` says whether objects ``i`` and ``j`` could be matched to each other's
    partners, ``tracker`` is the one that made the tracks."""
    why = ["" for _ in tracks]
    for i, track in enumerate(tracks):
        steps = range(len(track.confidence)) if tracker.whole_path else [len(track.confidence) - 1]
        low = min(steps, key=lambda s: (track.confidence[s], s))
        if track.confidence[low] < tracker.min_confidence:
            why[i] = (f"{tracker.name} tracker confidence {track.confidence[low]:.2f} < {tracker.min_confidence} at frame "
                      f"{frames[low]} (hidden or lost)")
            continue
        jump = _jump(track)
        if jump is not None:
            why[i] = f"its {tracker.name} track jumped {jump[1]:.1f} box sides off its path at frame {frames[jump[0]]}"
    for i in range(len(tracks)):
        for j in range(i + 1, len(tracks)):
            if not confusable(i, j):
                continue
            overlaps = [iou(a, b) for a, b in zip(tracks[i].boxes, tracks[j].boxes)]
            s = int(np.argmax(overlaps))
            if overlaps[s] >= CONVERGE_IOU:
                for me, other in ((i, j), (j, i)):
                    why[me] = why[me] or (f"its {tracker.name} track met that of look-alike reference object {ids[other]} at frame "
                                          f"{frames[s]} (box IoU {overlaps[s]:.2f})")
    return why
