"""Model fixtures: real photos from scikit-image and random-weight backends, each built once per session.

The backends come from ``build_*`` with ``ModelSpec(random_init=True)``, so the factory path the pipeline uses
is the one under test; outputs are meaningless but have the real shapes, types and code paths.
"""

from __future__ import annotations

import numpy as np
import pytest

from unieditkit.pipelines.models import ModelSpec


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Real RGB photos of three different sizes (astronaut 512x512, chelsea 451x300, coffee 600x400)."""
    from skimage import data

    return {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee()}


@pytest.fixture(scope="session")
def random_spec() -> ModelSpec:
    return ModelSpec(random_init=True)


@pytest.fixture(scope="session")
def garments():
    """The garments domain of the bundled taxonomy (35+ subcategories, long enough to need prompt chunks)."""
    from unieditkit.taxonomy import load_taxonomy

    return load_taxonomy().domain("garments").subcategories


@pytest.fixture(scope="session")
def detector(random_spec):
    from unieditkit.pipelines.models.factory import build_detector

    return build_detector(random_spec)


@pytest.fixture(scope="session")
def sam(random_spec):
    from unieditkit.pipelines.models.factory import build_segmenter

    return build_segmenter(random_spec)


@pytest.fixture(scope="session")
def captioner(random_spec):
    from unieditkit.pipelines.models.factory import build_captioner

    return build_captioner(random_spec, max_len=8)


@pytest.fixture(scope="session")
def categorizer(random_spec):
    from unieditkit.pipelines.models.factory import build_categorizer

    # one template instead of eight: on 2 CPU cores the text tower costs ~0.1 s per prompt
    return build_categorizer(random_spec, templates=("a photo of a {}.",))
