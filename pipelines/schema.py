"""The one definition of what a sample and a pipeline row contain.

The writer, the dataset card's ``features`` and the ``validate`` command all read from here, so a field
added in one place cannot silently be missing in another. JSON fields are never null: "not measured" is
``-1.0`` for scores, ``""`` for strings and ``[]`` for lists (HF ``datasets`` would otherwise type a field
as null from the first rows and fail later).
"""

from __future__ import annotations

import copy
from typing import Any

import unieditkit

FORMAT_VERSION = 2

MEMBERS = ("ref.jpg", "ref_mask.png", "tgt.jpg", "mask_fine.png", "mask_rough.png", "mask_box.png")
MASK_MEMBERS = ("ref_mask.png", "mask_fine.png", "mask_rough.png", "mask_box.png")

# Row columns between pipeline stages: member bytes use "_" instead of "." (Arrow column names).
BYTES_COLUMNS = tuple(m.replace(".", "_") for m in MEMBERS)
ROW_COLUMNS = ("key", "shard", "unit_id", "unit_rows", "status", "reason", "detail", "meta", "phash") + BYTES_COLUMNS

NOT_MEASURED = -1.0

_META_TEMPLATE: dict[str, Any] = {
    "key": "",
    "format_version": FORMAT_VERSION,
    "domain": "",
    "subcategory": "",
    "subcategory_id": -1,
    "subcategory_name": "",
    "rigid": False,
    "pair_kind": "",
    "split": "",
    "source": {"kind": "", "uri": "", "ref_uri": "", "unit_id": "", "group_id": "", "object_id": "", "ref_object_id": ""},
    "bbox": [],
    "tgt_size": [],
    "ref_size": [],
    "captions": {"ref": "", "tgt": ""},
    "labels": [],
    "label_source": "",
    "label_check": "unchecked",
    "scores": {"detector": NOT_MEASURED, "categorize": NOT_MEASURED, "match": NOT_MEASURED, "sharpness": NOT_MEASURED, "fine_area": NOT_MEASURED},
    "mask_source": "",
    "pair_method": "",
    "mats": {"seed": 0, "dilate_px": 0, "noise_amp_px": 0.0, "noise_scale": 0.0, "octaves": 0, "rough_area": 0.0, "box_area": 0.0},
    "augment": {"flip": False, "scale": 1.0, "rotate_deg": 0.0, "perspective": 0.0, "brightness": 0.0, "contrast": 1.0, "gamma": 1.0},
    "taxonomy_version": "",
    "tool_version": unieditkit.__version__,
    "random_init": False,
}


def empty_meta() -> dict[str, Any]:
    """A fresh metadata dict with every field present at its "not measured" value."""
    return copy.deepcopy(_META_TEMPLATE)


def hf_features() -> "datasets.Features":  # type: ignore[name-defined]  # noqa: F821
    """Explicit Hugging Face features for one config (no inference from the first rows)."""
    from datasets import Features, Image, List, Value

    def s(**fields: Any) -> dict[str, Any]:
        return fields

    meta = s(
        key=Value("string"),
        format_version=Value("int32"),
        domain=Value("string"),
        subcategory=Value("string"),
        subcategory_id=Value("int32"),
        subcategory_name=Value("string"),
        rigid=Value("bool"),
        pair_kind=Value("string"),
        split=Value("string"),
        source=s(**{k: Value("string") for k in _META_TEMPLATE["source"]}),
        bbox=List(Value("int32")),
        tgt_size=List(Value("int32")),
        ref_size=List(Value("int32")),
        captions=s(ref=Value("string"), tgt=Value("string")),
        labels=List(s(key=Value("string"), score=Value("float32"))),
        label_source=Value("string"),
        label_check=Value("string"),
        scores=s(**{k: Value("float32") for k in _META_TEMPLATE["scores"]}),
        mask_source=Value("string"),
        pair_method=Value("string"),
        mats=s(
            seed=Value("int64"),
            dilate_px=Value("int32"),
            noise_amp_px=Value("float32"),
            noise_scale=Value("float32"),
            octaves=Value("int32"),
            rough_area=Value("float32"),
            box_area=Value("float32"),
        ),
        augment=s(
            flip=Value("bool"),
            scale=Value("float32"),
            rotate_deg=Value("float32"),
            perspective=Value("float32"),
            brightness=Value("float32"),
            contrast=Value("float32"),
            gamma=Value("float32"),
        ),
        taxonomy_version=Value("string"),
        tool_version=Value("string"),
        random_init=Value("bool"),
    )
    features: dict[str, Any] = {m: Image() for m in MEMBERS}
    features["json"] = meta
    features["__key__"] = Value("string")
    features["__url__"] = Value("string")
    return Features(features)


INDEX_COLUMNS = (
    "key", "shard", "status", "reason", "detail", "domain", "split", "subcategory", "subcategory_id", "pair_kind",
    "tgt_width", "tgt_height", "ref_width", "ref_height", "fine_area", "rough_area", "box_area",
    "detector_score", "categorize_score", "sharpness", "source_uri", "group_id",
)  # fmt: skip


def index_record(meta: dict[str, Any], shard: str) -> dict[str, Any]:
    """Flatten one sample's metadata into an index row (same columns for every row)."""
    return {
        "key": meta["key"],
        "shard": shard,
        "status": "ok",
        "reason": "",
        "detail": "",
        "domain": meta["domain"],
        "split": meta["split"],
        "subcategory": meta["subcategory"],
        "subcategory_id": meta["subcategory_id"],
        "pair_kind": meta["pair_kind"],
        "tgt_width": meta["tgt_size"][0],
        "tgt_height": meta["tgt_size"][1],
        "ref_width": meta["ref_size"][0],
        "ref_height": meta["ref_size"][1],
        "fine_area": meta["scores"]["fine_area"],
        "rough_area": meta["mats"]["rough_area"],
        "box_area": meta["mats"]["box_area"],
        "detector_score": meta["scores"]["detector"],
        "categorize_score": meta["scores"]["categorize"],
        "sharpness": meta["scores"]["sharpness"],
        "source_uri": meta["source"]["uri"],
        "group_id": meta["source"]["group_id"],
    }


def row_schema() -> "pa.Schema":  # type: ignore[name-defined]  # noqa: F821
    """Arrow schema of rows between stages: bytes stay ``binary`` (numpy would strip trailing NULs)."""
    import pyarrow as pa

    return pa.schema(
        [(c, pa.binary() if c in BYTES_COLUMNS else pa.int32() if c == "unit_rows" else pa.string()) for c in ROW_COLUMNS]
    )
