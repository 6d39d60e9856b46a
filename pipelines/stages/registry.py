"""The stage registry: which stages a build runs, in which order, built from their names.

``CHAIN`` is the order a row flows through; each name maps to a builder that returns the stage for this build,
or None when the build does not need it (model stages run only when ``--models`` or the input asks for them).
Adding a stage is one builder here and its module; the runner never changes. Builders import their stage
lazily, so a model-free build never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .base import Stage

if TYPE_CHECKING:
    from ..config import BuildConfig
    from ..models.weights import ModelSpec

Builder = Callable[["BuildConfig", "ModelSpec | None"], "Stage | None"]

#: the order a row flows through (model stages only where the build runs them)
CHAIN = ("detect", "segment", "embed", "pair", "caption", "categorize", "filter", "mats")
REGISTRY: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def add(builder: Builder) -> Builder:
        REGISTRY[name] = builder
        return builder

    return add


def build_chain(config: BuildConfig, models: ModelSpec | None) -> list[Stage]:
    """The stages of this build, in ``CHAIN`` order, consecutive image model stages fused into one actor."""
    missing = [n for n in CHAIN if n not in REGISTRY]
    if missing:
        raise RuntimeError(f"stages without a builder: {missing}")
    return fuse_image_stages([st for st in (REGISTRY[name](config, models) for name in CHAIN) if st is not None])


def fuse_image_stages(chain: list[Stage]) -> list[Stage]:
    """Each run of consecutive image model stages (detect, segment, embed) becomes one ``ImageStages`` actor, so
    each image is decoded once for all of them (``images.py``). The actor holds every member's model, so it takes,
    field by field, the largest of their resources (rows per call, actors, GPU and CPU share); each member still
    feeds its model ``batch_size`` images at a time from its own ``stages.yaml`` entry."""
    from dataclasses import fields

    from ..config import StageResources
    from .images import ImageStage, ImageStages

    fused: list[Stage] = []
    run: list[Stage] = []
    for st in [*chain, None]:
        if st is not None and isinstance(st.fn, type) and issubclass(st.fn, ImageStage):
            run.append(st)
            continue
        if len(run) == 1:
            fused.append(run[0])
        elif run:
            res = [r.resources for r in run if r.resources is not None]
            merged = StageResources(**{f.name: max(getattr(r, f.name) for r in res) for f in fields(StageResources)})
            fused.append(Stage("+".join(r.name for r in run), ImageStages, {"members": [(r.fn, r.kwargs) for r in run]}, merged))
        run = []
        if st is not None:
            fused.append(st)
    return fused


def _runs(models: ModelSpec | None, *names: str) -> bool:
    return models is not None and all(n in models.stages for n in names)


def _model_stage(name: str, cls: type, config: BuildConfig, models: ModelSpec | None, resources_of: str = "", **kwargs: Any) -> Stage:
    res = config.model_stages.resources_for(resources_of or name)
    return Stage(name, cls, {"spec": models, "device": "cuda" if res.num_gpus > 0 else "cpu", **kwargs}, res)


def _batched_model_stage(name: str, cls: type, config: BuildConfig, models: ModelSpec | None, **kwargs: Any) -> Stage:
    """A model stage that feeds its model ``batch_size`` images per forward pass (its ``stages.yaml`` entry)."""
    batch_size = config.model_stages.resources_for(name).batch_size
    return _model_stage(name, cls, config, models, batch_size=batch_size, **kwargs)


@register("detect")
def _detect(config: BuildConfig, models: ModelSpec | None) -> Stage | None:
    if not _runs(models, "detect"):
        return None
    from .detect import DetectStage

    s = config.settings
    return _batched_model_stage("detect", DetectStage, config, models, domain=config.domain, taxonomy_path=config.taxonomy_path,
                        max_objects=s.max_objects, box_threshold=s.box_threshold, text_threshold=s.text_threshold)


@register("segment")
def _segment(config: BuildConfig, models: ModelSpec | None) -> Stage | None:
    if not _runs(models, "segment"):
        return None
    from .segment import SegmentStage

    return _batched_model_stage("segment", SegmentStage, config, models)


@register("embed")
def _embed(config: BuildConfig, models: ModelSpec | None) -> Stage | None:
    if not _runs(models, "detect", "categorize"):  # CLIP is loaded anyway: mined pairs are matched on its features
        return None
    from .embed import EmbedStage

    return _model_stage("embed", EmbedStage, config, models, resources_of="categorize")


@register("pair")
def _pair(config: BuildConfig, models: ModelSpec | None) -> Stage:
    from ..models.weights import sam2_checkpoint, tracker_choice
    from .pair import PairStage
    from .track import TrackerSpec

    tracker = TrackerSpec()
    if models is not None and tracker_choice(models) == "sam2":
        tracker = TrackerSpec("sam2", models.sam2_config, str(sam2_checkpoint(models)))
    return Stage("pair", PairStage(config.domain, config.settings, config.taxonomy_path, tracker))


@register("caption")
def _caption(config: BuildConfig, models: ModelSpec | None) -> Stage | None:
    if not _runs(models, "caption"):
        return None
    from .caption import CaptionStage

    return _model_stage("caption", CaptionStage, config, models)


@register("categorize")
def _categorize(config: BuildConfig, models: ModelSpec | None) -> Stage | None:
    if not _runs(models, "categorize"):
        return None
    from .categorize import CategorizeStage

    s = config.settings
    return _model_stage("categorize", CategorizeStage, config, models, domain=config.domain, taxonomy_path=config.taxonomy_path,
                        top_k=s.top_k, min_score=s.min_category_score)


@register("filter")
def _filter(config: BuildConfig, models: ModelSpec | None) -> Stage:
    from .filter import FilterStage

    return Stage("filter", FilterStage(config.settings, random_init=bool(models and models.random_init)))


@register("mats")
def _mats(config: BuildConfig, models: ModelSpec | None) -> Stage:
    from .mats import MatsStage

    return Stage("mats", MatsStage(config.settings.seed, config.settings.mats))
