"""Which optional install (``pip install 'unieditkit[X]'``) each command needs, in one place.

The base install builds annotated input, reads and inspects builds; torch and the models come with extras, so a
user who only builds datasets never downloads them. A command that needs an extra checks for it before it plans,
loads or creates anything: without the check, the first ``import torch`` deep inside a build or a training run is
a traceback (and a build has already made its output folder by then). The check looks modules up without importing
them, so it costs a command nothing when the extra is there.

``setup.cfg`` declares the distributions of each extra; ``EXTRAS`` below names the import names a command checks,
and ``COMMAND_EXTRAS`` the extras each command may draw on (``tests/test_extras.py`` walks each command's imports and
holds the three to each other).
"""

from __future__ import annotations

import importlib.util

from unieditkit.errors import UserError

#: extra -> the import names it provides that a command checks for, the most basic first (the one named when
#: several are missing)
EXTRAS: dict[str, tuple[str, ...]] = {
    "models": ("torch", "torchvision", "segment_anything", "groundingdino", "open_clip", "sam2", "mobile_sam",
               "transformers"),
    "train": ("torch",),
    "flux": ("torch", "diffusers", "transformers", "peft"),
    "eval": ("torch", "torchvision", "open_clip", "timm", "torchmetrics"),
}

#: command -> the extras it may draw on: the first whenever it runs a model, the others for a feature
#: (``train``/``edit`` with ``model.backbone: flux-fill`` need ``flux``, ``dedupe --clip-model`` needs ``models``); commands not listed need none
COMMAND_EXTRAS: dict[str, tuple[str, ...]] = {
    "build": ("models",),
    "train": ("train", "flux"),
    "edit": ("train", "flux"),
    "eval": ("eval",),
    "dedupe": ("models",),
}


def missing_module(extra: str) -> str | None:
    """The first of ``extra``'s import names that cannot be found, or ``None`` when all can."""
    return next((name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None), None)


def require_extra(extra: str, feature: str) -> None:
    """Raise a one-line :class:`UserError` naming the install command when ``feature`` (what the user asked for,
    e.g. "training") cannot run because ``extra`` is not installed."""
    missing = missing_module(extra)
    if missing is not None:
        raise UserError(f"{feature}: {missing} is not installed; pip install 'unieditkit[{extra}]'")
