"""The model stages, one declaration each: what the runner, ``--config``, ``--models`` and the weight check read.

A model stage is more than its class: a build must know its name (``--models detect,...``, ``--config
stages.NAME``), the weights it needs (checked for all stages before a build starts, ``models/weights.py``),
whether ``--models auto`` runs it for the input at hand, the resources its actors take when ``--config`` says
nothing, and where in the chain it sits. These facts were once spread over six files, so a stage added in five
of them ran without its weight check or could not be given resources. Each ``ModelStage`` below holds all of
them, and adding a stage is its module plus one entry in ``MODEL_STAGES`` (``docs/STAGES.md``).

A declaration names its class and its weight check as ``"module:attribute"`` strings, imported only by a build
that runs the stage: this module sits below the configuration and the weight check that read it, and a
model-free build never imports torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

if TYPE_CHECKING:
    from ..sources.base import WorkUnit


@dataclass(frozen=True)
class StageResources:
    """How one model stage runs on Ray: actors (each loads the model once), batch size and resources.

    ``num_gpus`` may be fractional to pack several actors on one GPU; ``num_cpus`` 0 means "share the CPUs
    fairly between the model stages" (a model actor that reserves a whole core each would leave nothing for
    the CPU stages on a small machine).
    """

    batch_size: int = 8
    concurrency: int = 1
    num_gpus: float = 0.0
    num_cpus: float = 0.0


@dataclass(frozen=True)
class ModelStage:
    """One model stage of the build.

    ``reads`` places it in the chain: ``"images"`` stages read the units' input images before the pair stage
    and share one decode in one actor (their class is an ``images.ImageStage``); ``"samples"`` stages read the
    cut reference and target after it. ``auto`` is asked of every unit of a ``--models auto`` build: the stage
    runs when any unit needs it. ``weights`` names a function of the ``ModelSpec`` that returns one check per
    item the stage loads, each raising a one-line ``UserError`` naming the missing file and how to get it.
    The class is built with ``spec``, ``device``, ``batch_size`` when ``batched`` (images per forward pass,
    the ``--config`` entry's) and ``options``: constructor argument -> attribute of the ``BuildConfig``
    (``"settings.top_k"``), so every value that changes the output comes from the recorded build settings.
    """

    name: str
    cls: str
    reads: Literal["images", "samples"]
    auto: Callable[[WorkUnit], bool]
    weights: str = ""
    resources: StageResources = StageResources()
    batched: bool = False
    options: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.reads not in ("images", "samples"):
            raise ValueError(f"model stage {self.name}: reads {self.reads!r}; use 'images' or 'samples'")
        for ref in (self.cls, *([self.weights] if self.weights else [])):
            if ref.count(":") != 1:
                raise ValueError(f"model stage {self.name}: {ref!r} is not 'module:attribute'")


def resolve(ref: str) -> Any:
    """The object a ``"module:attribute"`` reference of a declaration names."""
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _unannotated(unit: WorkUnit) -> bool:
    return unit.needs_detection


def _unmasked(unit: WorkUnit) -> bool:
    """Detected objects and box-only annotations both arrive without a mask."""
    return unit.needs_detection or any(not o.segmentation and not o.mask_uri for o in unit.objects)


_STAGES = "unieditkit.pipelines.stages"
_WEIGHTS = "unieditkit.pipelines.models.weights"
_DOMAIN = {"domain": "domain", "taxonomy_path": "taxonomy_path"}

#: every model stage by name; within ``reads``, the chain runs them in this order
MODEL_STAGES: dict[str, ModelStage] = {s.name: s for s in (
    ModelStage("detect", cls=f"{_STAGES}.detect:DetectStage", reads="images", auto=_unannotated,
               weights=f"{_WEIGHTS}:detect_weights", batched=True,
               options={**_DOMAIN, "max_objects": "settings.max_objects", "box_threshold": "settings.box_threshold",
                        "text_threshold": "settings.text_threshold"}),
    ModelStage("segment", cls=f"{_STAGES}.segment:SegmentStage", reads="images", auto=_unmasked,
               weights=f"{_WEIGHTS}:segment_weights", batched=True),
    ModelStage("caption", cls=f"{_STAGES}.caption:CaptionStage", reads="samples", auto=_unannotated,
               weights=f"{_WEIGHTS}:caption_weights"),
    ModelStage("categorize", cls=f"{_STAGES}.categorize:CategorizeStage", reads="samples", auto=_unannotated,
               weights=f"{_WEIGHTS}:categorize_weights",
               options={**_DOMAIN, "top_k": "settings.top_k", "min_score": "settings.min_category_score"}),
)}
