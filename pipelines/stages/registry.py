"""The stage registry: which stages a build runs, in which order, built from their names.

The chain is the order a row flows through (``chain_names``): the model stages that read the input images, the
CLIP embedding of mined objects, the pair stage, the model stages that read the cut samples, the filter and the
MATS masks. Model stages are declared in ``model_stages.py`` and built here from their declaration; the other
stages map their name to a builder that returns the stage for this build, or None when the build does not need
it. The runner never changes. Builders import their stage lazily, so a model-free build never imports torch.
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, Callable

from .base import Stage
from .model_stages import MODEL_STAGES, ModelStage, StageResources, resolve

if TYPE_CHECKING:
    from ..config import BuildConfig
    from ..models.weights import ModelSpec

Builder = Callable[["BuildConfig", "ModelSpec | None"], "Stage | None"]

REGISTRY: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def add(builder: Builder) -> Builder:
        REGISTRY[name] = builder
        return builder

    return add


def chain_names() -> tuple[str, ...]:
    """The order a row flows through (model stages only where the build runs them)."""
    images = [s.name for s in MODEL_STAGES.values() if s.reads == "images"]
    samples = [s.name for s in MODEL_STAGES.values() if s.reads == "samples"]
    return (*images, "embed", "pair", *samples, "filter", "mats")


def build_chain(config: BuildConfig, models: ModelSpec | None) -> list[Stage]:
    """The stages of this build, in chain order, consecutive image model stages fused into one actor."""
    clash = sorted(set(MODEL_STAGES) & set(REGISTRY))
    if clash:
        raise RuntimeError(f"model stages named like a built-in stage: {clash}")
    stages = [model_stage(MODEL_STAGES[name], config, models) if name in MODEL_STAGES else REGISTRY[name](config, models)
              for name in chain_names()]
    return fuse_image_stages([st for st in stages if st is not None])


def model_stage(declared: ModelStage, config: BuildConfig, models: ModelSpec | None) -> Stage | None:
    """A declared model stage as this build runs it, or None when ``--models`` leaves it out."""
    if models is None or declared.name not in models.stages:
        return None
    from .images import ImageStage

    cls = resolve(declared.cls)
    if (declared.reads == "images") != issubclass(cls, ImageStage):
        raise TypeError(f"model stage {declared.name}: reads {declared.reads}, so {declared.cls} must "
                        f"{'' if declared.reads == 'images' else 'not '}be an ImageStage (stages/images.py)")
    res = config.model_stages.resources_for(declared.name)
    kwargs = _model_kwargs(models, res)
    if declared.batched:
        kwargs["batch_size"] = res.batch_size
    kwargs.update({arg: attrgetter(path)(config) for arg, path in declared.options.items()})
    return Stage(declared.name, cls, kwargs, res)


def _model_kwargs(models: ModelSpec, res: StageResources) -> dict[str, object]:
    return {"spec": models, "device": "cuda" if res.num_gpus > 0 else "cpu"}


def fuse_image_stages(chain: list[Stage]) -> list[Stage]:
    """Each run of consecutive image model stages (detect, segment, embed) becomes one ``ImageStages`` actor, so
    each image is decoded once for all of them (``images.py``). The actor holds every member's model, so it takes,
    field by field, the largest of their resources (rows per call, actors, GPU and CPU share); each member still
    feeds its model ``batch_size`` images at a time from its own ``stages.yaml`` entry."""
    from dataclasses import fields

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


@register("embed")
def _embed(config: BuildConfig, models: ModelSpec | None) -> Stage | None:
    if models is None or not {"detect", "categorize"} <= set(models.stages):
        return None  # CLIP is loaded anyway: mined pairs are matched on its features
    from .embed import EmbedStage

    res = config.model_stages.resources_for("categorize")
    return Stage("embed", EmbedStage, _model_kwargs(models, res), res)


@register("pair")
def _pair(config: BuildConfig, models: ModelSpec | None) -> Stage:
    from ..models.weights import sam2_checkpoint, tracker_choice
    from .pair import PairStage
    from .track import TrackerSpec

    tracker = TrackerSpec()
    if models is not None and tracker_choice(models) == "sam2":
        tracker = TrackerSpec("sam2", models.sam2_config, str(sam2_checkpoint(models)))
    return Stage("pair", PairStage(config.domain, config.settings, config.taxonomy_path, tracker))


@register("filter")
def _filter(config: BuildConfig, models: ModelSpec | None) -> Stage:
    from .filter import FilterStage

    return Stage("filter", FilterStage(config.settings, random_init=bool(models and models.random_init)))


@register("mats")
def _mats(config: BuildConfig, models: ModelSpec | None) -> Stage:
    from .mats import MatsStage

    return Stage("mats", MatsStage(config.settings.seed, config.settings.mats))
