"""MATS curriculum: stages by step fraction and per-stage mixing of mask variants."""

from __future__ import annotations

import random
from collections import Counter

from unieditkit.training.config import CurriculumConfig
from unieditkit.training.model.curriculum import Curriculum


def test_stages_follow_the_boundaries():
    cur = Curriculum(CurriculumConfig(boundaries=[0.25, 0.5]), max_steps=100)
    assert [cur.stage(s) for s in (0, 24, 25, 49, 50, 99)] == ["fine", "fine", "rough", "rough", "box", "box"]


def test_each_stage_mixes_variants_with_its_probabilities():
    cur = Curriculum(CurriculumConfig(boundaries=[0.3, 0.7]), max_steps=100)  # the default mixes, stages of 30-40 %
    rng = random.Random(0)
    n = 4000
    fine = Counter(cur.variant(0, rng) for _ in range(n))
    rough = Counter(cur.variant(50, rng) for _ in range(n))
    box = Counter(cur.variant(90, rng) for _ in range(n))
    assert fine == Counter({"fine": n})
    assert abs(rough["fine"] / n - 0.2) < 0.03 and abs(rough["rough"] / n - 0.8) < 0.03 and rough["box"] == 0
    assert abs(box["box"] / n - 0.7) < 0.03 and abs(box["rough"] / n - 0.2) < 0.03


def test_unnormalised_mix_is_normalised():
    cur = Curriculum(CurriculumConfig(boundaries=[0.3, 0.7], rough={"fine": 1.0, "rough": 3.0}), max_steps=10)
    rng = random.Random(1)
    counts = Counter(cur.variant(5, rng) for _ in range(2000))
    assert abs(counts["rough"] / 2000 - 0.75) < 0.04
