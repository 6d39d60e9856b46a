"""MATS curriculum: which mask variant each training sample uses at a given step.

The run is split by step fraction into three stages, fine -> rough -> box (``curriculum.boundaries`` gives where
rough and box begin). Each stage draws every sample's variant from its own mixing probabilities, so earlier,
easier masks stay in the mix (e.g. 20% fine masks during the rough stage) and the model does not forget them.
"""

from __future__ import annotations

import random

from unieditkit.format import MASK_VARIANTS
from unieditkit.training.config import CURRICULUM_STAGES, CurriculumConfig


class Curriculum:
    def __init__(self, cfg: CurriculumConfig, max_steps: int) -> None:
        self.max_steps = max_steps
        self.rough_start, self.box_start = cfg.boundaries
        self.mixes: dict[str, tuple[list[str], list[float]]] = {}
        for stage in CURRICULUM_STAGES:
            mix = getattr(cfg, stage)
            names = [v for v in MASK_VARIANTS if mix.get(v, 0.0) > 0]
            total = sum(mix[v] for v in names)
            self.mixes[stage] = (names, [mix[v] / total for v in names])

    def stage(self, step: int) -> str:
        """The stage at ``step`` (0-based); boundaries are fractions of ``max_steps``."""
        frac = step / self.max_steps
        fine, rough, box = CURRICULUM_STAGES
        if frac >= self.box_start:
            return box
        if frac >= self.rough_start:
            return rough
        return fine

    def variant(self, step: int, rng: random.Random) -> str:
        """Draw one sample's mask variant for ``step``; one ``rng.random()`` call per sample, always."""
        names, probs = self.mixes[self.stage(step)]
        u = rng.random()
        acc = 0.0
        for name, prob in zip(names, probs):
            acc += prob
            if u < acc:
                return name
        return names[-1]
