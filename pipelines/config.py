"""Build settings.

Settings split in two: those that change the output (``OutputSettings``: seed, splits, shard size, image
sizes, thresholds and limits) are stored in the output folder and must match on a re-run, otherwise a resumed
build would mix samples made two different ways; the rest (Ray address, parallelism) only change how fast it
goes. Every output setting can be given in the ``--config`` YAML under ``settings:`` (``load_config_file``),
and every key of that file is checked: a misspelt threshold that silently kept its default would make a
dataset other than the one the user asked for.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unieditkit.errors import UserError, did_you_mean
from unieditkit.format import mats_params_json
from unieditkit.mats import MatsParams

from .stages.model_stages import MODEL_STAGES, StageResources

if TYPE_CHECKING:
    from .models.weights import ModelSpec

#: how often Ray runs a task again after its worker died (a native crash, an OOM kill, its node lost): the stage
#: tasks and actor calls, the units re-run alone, the probes and the shard writers. It is also what rebuilds a
#: block lost with a dead node's object store: Ray's lineage reconstruction runs the task that made the block
#: again, and only a task with retries left can be run again. Bounded, unlike Ray Data's default (forever), so a
#: poison sample ends in quarantine instead of a loop (``runner.py``).
TASK_RETRIES = 2


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
    box_threshold: float = 0.35
    text_threshold: float = 0.25
    max_objects: int = 3
    top_k: int = 3
    against: tuple[str, ...] = ()
    eval_overlap_hamming: int = 6
    #: how rough the MATS rough masks are (``unieditkit.mats.MatsParams``); training's ``rough_source: regenerate``
    #: reads them back from ``build_config.json`` (``unieditkit.format.recorded_mats_params``)
    mats: MatsParams = field(default_factory=MatsParams)

    def __post_init__(self) -> None:
        if len(self.split_ratios) != 3 or any(r < 0 for r in self.split_ratios) or abs(sum(self.split_ratios) - 1) > 1e-6:
            raise UserError(f"--splits {self.split_ratios}: need three non-negative train,val,test ratios summing to 1, e.g. 0.9,0.05,0.05")
        if self.units_per_shard < 1:
            raise UserError(f"--units-per-shard {self.units_per_shard}: must be at least 1")
        if not 0 <= self.min_area_frac < self.max_area_frac <= 1:
            raise UserError("area bounds: need 0 <= min_area_frac < max_area_frac <= 1")
        for name in ("min_detector_score", "min_category_score", "min_main_component", "box_threshold", "text_threshold"):
            if not 0 <= getattr(self, name) <= 1:
                raise UserError(f"{name} {getattr(self, name)}: must lie in [0, 1]")
        for name in ("max_side", "ref_size", "max_objects", "top_k", "max_aspect"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} {getattr(self, name)}: must be at least 1")
        if not -1 <= self.dedupe_hamming <= 64 or not -1 <= self.eval_overlap_hamming <= 64:
            raise UserError("dedupe_hamming and eval_overlap_hamming: bits of a 64-bit hash, 0..64 (-1 turns the check off)")
        for folder in self.against:
            if not Path(folder).is_dir():
                raise UserError(f"--against {folder}: not a folder; pass a folder of evaluation images (searched recursively)")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["split_ratios"] = list(self.split_ratios)
        d["mats"] = mats_params_json(self.mats)
        # the folders' contents, not only their names: a resumed build against a changed eval set would mix
        d["against"] = [folder_fingerprint(f) for f in self.against]
        return d


#: file endings of images in an --against folder
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def image_files(folder: str | Path) -> list[Path]:
    """The images under ``folder`` (recursively), in a fixed order."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def folder_fingerprint(folder: str | Path) -> str:
    """``PATH N HASH``: the folder, its image count and a hash of their relative names and sizes (cheap: no
    decoding), so a changed evaluation set changes the build fingerprint."""
    root = Path(folder).resolve()
    h = hashlib.sha256()
    files = image_files(root)
    for p in files:
        h.update(f"{p.relative_to(root).as_posix()}\0{p.stat().st_size}\0".encode())
    return f"{root} {len(files)} {h.hexdigest()[:16]}"


@dataclass(frozen=True)
class ModelStagesConfig:
    """Which model stages run (``stages``: "auto" = what the sources need) and on what resources; their
    thresholds change the output, so they are ``OutputSettings``."""

    stages: str | tuple[str, ...] = "auto"
    resources: dict[str, StageResources] = field(default_factory=dict)

    def resources_for(self, stage: str) -> StageResources:
        """The ``--config`` entry of ``stage``, else its declared defaults (``stages/model_stages.py``)."""
        return self.resources.get(stage) or MODEL_STAGES[stage].resources


@dataclass(frozen=True)
class BuildConfig:
    domain: str
    out_dir: str
    sources: tuple[str, ...] = ()
    settings: OutputSettings = field(default_factory=OutputSettings)
    ray_address: str = ""
    num_workers: int = 0
    batch_size: int = 32  # units per CPU-stage Ray task: 32 amortises the per-task overhead better than 16 (BENCHMARKS)
    taxonomy_path: str = ""
    progress: bool = True
    models: "ModelSpec | None" = None
    model_stages: ModelStagesConfig = field(default_factory=ModelStagesConfig)


@dataclass(frozen=True)
class ConfigFile:
    """What a ``--config`` YAML holds: model-stage resources and output settings (thresholds, limits)."""

    resources: dict[str, StageResources] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


#: top-level keys of a --config file
CONFIG_SECTIONS = ("stages", "settings")


def settable_keys() -> tuple[str, ...]:
    """The ``settings:`` keys of a --config file: every output setting."""
    return tuple(f.name for f in fields(OutputSettings))


def load_config_file(path: str) -> ConfigFile:
    """Read a ``--config`` YAML; any key that is not a known section, stage or setting is a one-line error."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"--config {path}: cannot read YAML ({' '.join(str(exc).split())}); see README 'Build settings' for an example") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping with {' and/or '.join(CONFIG_SECTIONS)}, e.g. settings: {{min_sharpness: 10}}")
    unknown = sorted(set(map(str, data)) - set(CONFIG_SECTIONS))
    if unknown:
        raise UserError(f"{path}: {unknown[0]}: unknown key; {did_you_mean(unknown[0], CONFIG_SECTIONS)}use "
                        f"{', '.join(CONFIG_SECTIONS)} (thresholds go under settings:)")
    return ConfigFile(_stage_resources(path, data.get("stages") or {}), _settings(path, data.get("settings") or {}))


def _stage_resources(path: str, stages: Any) -> dict[str, StageResources]:
    if not isinstance(stages, dict):
        raise UserError(f"{path}: 'stages' must map stage names to settings, e.g. stages: {{detect: {{num_gpus: 1}}}}")
    names = [f.name for f in fields(StageResources)]
    out = {}
    for name, values in stages.items():
        if name not in MODEL_STAGES:
            raise UserError(f"{path}: stages.{name}: unknown stage; {did_you_mean(str(name), MODEL_STAGES)}use "
                            f"{', '.join(MODEL_STAGES)}")
        values = values or {}
        if not isinstance(values, dict):
            raise UserError(f"{path}: stages.{name}: expected a mapping of {', '.join(names)}")
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise UserError(f"{path}: stages.{name}.{unknown[0]}: unknown setting; "
                            f"{did_you_mean(str(unknown[0]), names)}use {', '.join(names)}")
        for key, value in values.items():
            _check_type(path, f"stages.{name}.{key}", value, getattr(StageResources, key))
        out[name] = StageResources(**values)
    return out


def _settings(path: str, settings: Any) -> dict[str, Any]:
    if not isinstance(settings, dict):
        raise UserError(f"{path}: 'settings' must map setting names to values, e.g. settings: {{min_sharpness: 10}}")
    allowed = settable_keys()
    unknown = sorted(set(map(str, settings)) - set(allowed))
    if unknown:
        raise UserError(f"{path}: settings.{unknown[0]}: unknown setting; {did_you_mean(unknown[0], allowed)}use "
                        f"{', '.join(allowed)}")
    defaults = OutputSettings()
    out: dict[str, Any] = {}
    for key, value in settings.items():
        default = getattr(defaults, key)
        if key == "mats":
            value = _mats_params(path, value)
        elif isinstance(default, tuple):
            if not isinstance(value, list):
                raise UserError(f"{path}: settings.{key}: expected a list, e.g. {key}: [{', '.join(map(str, default)) or '...'}]")
            value = tuple(value)
            for item in value:
                _check_type(path, f"settings.{key}[]", item, default[0] if default else "")
            if key == "against":  # relative to the config file, like any path in it
                value = tuple(os.path.join(os.path.dirname(os.path.abspath(path)), os.path.expanduser(v)) for v in value)
        else:
            value = _scalar(path, f"settings.{key}", value, default)
        out[key] = value
    return out


def _mats_params(path: str, values: Any) -> MatsParams:
    """``settings: {mats: {dilate_frac: [0.05, 0.3], octaves: 3}}``: any ``MatsParams`` field, the rest default."""
    names = [f.name for f in fields(MatsParams)]
    if not isinstance(values, dict):
        raise UserError(f"{path}: settings.mats: expected a mapping of {', '.join(names)}, e.g. mats: {{dilate_frac: [0.05, 0.3]}}")
    unknown = sorted(set(map(str, values)) - set(names))
    if unknown:
        raise UserError(f"{path}: settings.mats.{unknown[0]}: unknown MATS parameter; "
                        f"{did_you_mean(unknown[0], names)}use {', '.join(names)}")
    defaults = MatsParams()
    out: dict[str, Any] = {}
    for key, value in values.items():
        default = getattr(defaults, key)
        if isinstance(default, tuple):
            if not isinstance(value, list) or len(value) != len(default):
                raise UserError(f"{path}: settings.mats.{key}: expected [low, high], e.g. {key}: {list(default)}")
            for item in value:
                _check_type(path, f"settings.mats.{key}[]", item, default[0])
            value = tuple(float(v) for v in value)
        else:
            value = _scalar(path, f"settings.mats.{key}", value, default)
        out[key] = value
    try:
        return MatsParams(**out)
    except UserError as exc:
        raise UserError(f"{path}: settings.mats: {exc}") from None


def _scalar(path: str, where: str, value: Any, default: Any) -> Any:
    """A checked scalar setting, an int given for a float stored as the float it stands for."""
    _check_type(path, where, value, default)
    return float(value) if isinstance(default, float) else value


#: how a type is named in an error ("is not an integer", not "is not a int")
_KIND_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _check_type(path: str, where: str, value: Any, default: Any) -> None:
    """YAML gives ``0.5`` as float and ``1`` as int; an int is fine where a float is expected, not the reverse."""
    kind = type(default)
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise UserError(f"{path}: {where}: {value!r} is not {_KIND_NAMES.get(kind, kind.__name__)} "
                        f"(default {default!r})")
