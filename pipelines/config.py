"""Build settings.

Settings split in two: those that change the output (``OutputSettings``: seed, splits, shard size, image
sizes, filters) are stored in the output folder and must match on a re-run, otherwise a resumed build would
mix samples made two different ways; the rest (Ray address, parallelism) only change how fast it goes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from unieditkit.errors import UserError

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
