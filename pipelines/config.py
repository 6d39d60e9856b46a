"""Build settings.

Settings split in two: those that change the output (``OutputSettings``: seed, splits, shard size, image
sizes, filters) are stored in the output folder and must match on a re-run, otherwise a resumed build would
mix samples made two different ways; the rest (Ray address, parallelism) only change how fast it goes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from unieditkit.errors import UserError

if TYPE_CHECKING:
    from .models.weights import ModelSpec

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class OutputSettings:
    seed: int = 0
    split_ratios: tuple[float, float, float] = (0.90, 0.05, 0.05)
    units_per_shard: int = 256
    max_side: int = 1024
    ref_size: int = 384
    min_area_frac: float = 0.005
    max_area_frac: float = 0.80
    min_box_side: int = 16
    augment_self_pairs: bool = True
    min_detector_score: float = 0.35
    min_category_score: float = 0.15
    min_sharpness: float = 5.0
    max_aspect: float = 6.0
    min_main_component: float = 0.6
    dedupe_hamming: int = 4
    min_match_similarity: float = 0.3

    def __post_init__(self) -> None:
        if len(self.split_ratios) != 3 or any(r < 0 for r in self.split_ratios) or abs(sum(self.split_ratios) - 1) > 1e-6:
            raise UserError(f"--splits {self.split_ratios}: need three non-negative train,val,test ratios summing to 1, e.g. 0.9,0.05,0.05")
        if self.units_per_shard < 1:
            raise UserError(f"--units-per-shard {self.units_per_shard}: must be at least 1")
        if not 0 <= self.min_area_frac < self.max_area_frac <= 1:
            raise UserError("area bounds: need 0 <= min_area_frac < max_area_frac <= 1")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["split_ratios"] = list(self.split_ratios)
        return d


MODEL_STAGES = ("detect", "segment", "caption", "categorize")


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
class ModelStagesConfig:
    """Which model stages run (``stages``: "auto" = what the sources need) and how."""

    stages: str | tuple[str, ...] = "auto"
    resources: dict[str, StageResources] = field(default_factory=dict)
    box_threshold: float = 0.35
    text_threshold: float = 0.25
    max_objects: int = 3
    top_k: int = 3

    def resources_for(self, stage: str) -> StageResources:
        return self.resources.get(stage, StageResources())


@dataclass(frozen=True)
class BuildConfig:
    domain: str
    out_dir: str
    sources: tuple[str, ...] = ()
    settings: OutputSettings = field(default_factory=OutputSettings)
    ray_address: str = ""
    num_workers: int = 0
    batch_size: int = 16
    taxonomy_path: str = ""
    progress: bool = True
    models: "ModelSpec | None" = None
    model_stages: ModelStagesConfig = field(default_factory=ModelStagesConfig)


def load_stage_resources(path: str) -> dict[str, StageResources]:
    """``stages: {detect: {batch_size: 8, concurrency: 2, num_gpus: 0.5}, ...}`` from a YAML file."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"--config {path}: cannot read YAML ({exc}); see README 'Scale' for an example") from None
    stages = data.get("stages", {}) if isinstance(data, dict) else None
    if not isinstance(stages, dict):
        raise UserError(f"{path}: 'stages' must map stage names to settings, e.g. stages: {{detect: {{num_gpus: 1}}}}")
    fields = set(StageResources.__dataclass_fields__)
    out = {}
    for name, values in stages.items():
        if name not in MODEL_STAGES:
            raise UserError(f"{path}: stages.{name}: unknown stage; use {', '.join(MODEL_STAGES)}")
        values = values or {}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise UserError(f"{path}: stages.{name}.{unknown[0]}: unknown setting; use {', '.join(sorted(fields))}")
        out[name] = StageResources(**values)
    return out
