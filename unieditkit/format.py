"""The one definition of the dataset format: what a sample, a shard and a pipeline row contain, and what
the files of a built folder are called.

The writer, the catalog, the dataset card's ``features``, ``inspect``/``validate``, ``evaluate`` and training's
data loader all read from here, so a field, a mask variant or a file name added in one place cannot silently be
missing in another. This module sits on the ground floor (it imports nothing of the project but the version).
JSON fields are never null: "not measured" is ``-1.0`` for scores, ``""`` for strings and ``[]`` for lists (HF
``datasets`` would otherwise type a field as null from the first rows and fail later).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from . import __version__

if TYPE_CHECKING:
    import datasets
    import pyarrow as pa

FORMAT_VERSION = 2
SPLITS = ("train", "val", "test")

#: the grey (0-255, all channels) behind a cut-out reference and in letterbox padding
GREY = 127

#: how a MATS mask variant is drawn (:mod:`unieditkit.mats`): ``fine`` is the object's segmentation itself and the
#: one every other is drawn from, ``rough`` its dilated, noise-perturbed, block-quantised outline, ``box`` its filled
#: bounding box
FINE, ROUGH, BOX = "fine", "rough", "box"

#: the MATS mask variants from tight to loose, each with how it is drawn; each is stored as ``mask_{variant}.png``.
#: A new variant is one entry here, drawn like one of the three: the build writes it, ``validate`` checks it as its
#: drawing requires and training can mix it in (``curriculum.mix``).
MASK_VARIANTS: dict[str, str] = {FINE: FINE, ROUGH: ROUGH, BOX: BOX}


def mask_member(variant: str) -> str:
    """Tar member of a MATS mask variant (``fine`` → ``mask_fine.png``)."""
    return f"mask_{variant}.png"


def drawn_as(drawing: str) -> list[str]:
    """The variants drawn as ``drawing`` (``FINE``, ``ROUGH`` or ``BOX``), in ``MASK_VARIANTS`` order."""
    return [v for v, how in MASK_VARIANTS.items() if how == drawing]


#: the members of a sample: the reference object on grey, its mask, the target scene (the ground truth)
REF_IMAGE, REF_MASK, TARGET_IMAGE = "ref.jpg", "ref_mask.png", "tgt.jpg"
#: the member holding a sample's metadata (``empty_meta``'s fields)
META_MEMBER = "json"
MASK_MEMBERS = (REF_MASK, *(mask_member(v) for v in MASK_VARIANTS))
MEMBERS = (REF_IMAGE, REF_MASK, TARGET_IMAGE, *(mask_member(v) for v in MASK_VARIANTS))
#: the image each mask member lies on (same size)
MASKED_IMAGE = {REF_MASK: REF_IMAGE, **{mask_member(v): TARGET_IMAGE for v in MASK_VARIANTS}}
#: every file a sample has in a tar, by member suffix
SAMPLE_FILES = (*MEMBERS, META_MEMBER)


def column(member: str) -> str:
    """Arrow column holding a member's bytes between pipeline stages ("." is not allowed in column names)."""
    return member.replace(".", "_")


def mask_column(variant: str) -> str:
    """Arrow column of a MATS mask variant's PNG bytes (``fine`` → ``mask_fine_png``)."""
    return column(mask_member(variant))


BYTES_COLUMNS = tuple(column(m) for m in MEMBERS)
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
    "mats": {"seed": 0, "dilate_px": 0, "noise_amp_px": 0.0, "noise_scale": 0.0, "octaves": 0, "block_px": 1, "rough_area": 0.0, "box_area": 0.0},
    "augment": {"flip": False, "scale": 1.0, "rotate_deg": 0.0, "perspective": 0.0, "brightness": 0.0, "contrast": 1.0, "gamma": 1.0},
    "taxonomy_version": "",
    "tool_version": __version__,
    "random_init": False,
}


def empty_meta() -> dict[str, Any]:
    """A fresh metadata dict with every field present at its "not measured" value."""
    return copy.deepcopy(_META_TEMPLATE)


def hf_features() -> datasets.Features:
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


def row_schema() -> pa.Schema:
    """Arrow schema of rows between stages: bytes stay ``binary`` (numpy would strip trailing NULs)."""
    import pyarrow as pa

    return pa.schema(
        [(c, pa.binary() if c in BYTES_COLUMNS else pa.int32() if c == "unit_rows" else pa.string()) for c in ROW_COLUMNS]
    )


_INT_COLUMNS = ("subcategory_id", "tgt_width", "tgt_height", "ref_width", "ref_height")
_FLOAT_COLUMNS = ("fine_area", "rough_area", "box_area", "detector_score", "categorize_score", "sharpness")


def index_schema() -> pa.Schema:
    """Arrow schema of a shard's sidecar and of ``index.parquet`` / ``rejected.parquet``."""
    import pyarrow as pa

    return pa.schema(
        [(c, pa.int32() if c in _INT_COLUMNS else pa.float32() if c in _FLOAT_COLUMNS else pa.string()) for c in INDEX_COLUMNS]
    )


def rejected_record(key: str, shard: str, domain: str, split: str, reason: str, detail: str) -> dict[str, Any]:
    """The index row of a rejected unit or sample: every measurement at its "not measured" value."""
    rec: dict[str, Any] = {c: "" for c in INDEX_COLUMNS}
    rec.update({c: -1 for c in _INT_COLUMNS})
    rec.update({c: NOT_MEASURED for c in _FLOAT_COLUMNS})
    rec.update(key=key, shard=shard, status="rejected", reason=reason, detail=detail, domain=domain, split=split)
    return rec


# ---- files of a built folder ---------------------------------------------------------------------------------

TAR_SUFFIX = ".tar"
SIDECAR_SUFFIX = ".parquet"
#: written last, after the tar and the sidecar: a shard is done when its marker exists
DONE_MARKER_SUFFIX = "_stats.json"
SHARD_SUFFIXES = (TAR_SUFFIX, SIDECAR_SUFFIX, DONE_MARKER_SUFFIX)
SHARD_RE = re.compile(r"^(?P<domain>[a-z0-9_]+)-(?P<split>train|val|test)-(?P<number>\d{6})$")
INDEX_FILE = "index.parquet"
REJECTED_FILE = "rejected.parquet"
CARD_FILE = "README.md"
BUILD_CONFIG_FILE = "build_config.json"
#: what planning measured of the inputs (clips' frame counts and shots), kept so a re-run does not decode them again
PROBES_FILE = "probes.json"
DUPLICATES_FILE = "duplicates.parquet"
_DUPLICATES_META_KEY = b"unieditkit"


def shard_name(domain: str, split: str, index: int) -> str:
    """``DOMAIN-SPLIT-NNNNNN``: sorts by domain, split and position, and globs per split for ``datasets``."""
    return f"{domain}-{split}-{index:06d}"


def parse_shard_name(name: str) -> tuple[str, str, int] | None:
    """``(domain, split, index)`` of a shard name (without suffix), or None when it is not one."""
    m = SHARD_RE.match(name)
    return (m["domain"], m["split"], int(m["number"])) if m else None


def split_glob(domain: str, split: str) -> str:
    """The ``data_files`` pattern of one config's split in the dataset card."""
    return f"{domain}-{split}-*{TAR_SUFFIX}"


def marker_name(shard: str) -> str:
    return shard + DONE_MARKER_SUFFIX


def done_shard_names(file_names: Iterable[str], split: str | None = None, domains: Iterable[str] = ()) -> list[str]:
    """The done shards among a folder's file names (those with their marker), sorted; optionally one split and
    some domains only. A tar without its marker is an unfinished write and never counts."""
    wanted = set(domains)
    names = []
    for file in sorted(file_names):
        parsed = parse_shard_name(file[: -len(DONE_MARKER_SUFFIX)]) if file.endswith(DONE_MARKER_SUFFIX) else None
        if parsed is None or (split and parsed[1] != split) or (wanted and parsed[0] not in wanted):
            continue
        names.append(file[: -len(DONE_MARKER_SUFFIX)])
    return names


def find_done_shards(folder: str | Path, split: str | None = None, domains: Iterable[str] = ()) -> list[str]:
    """``done_shard_names`` of a local folder."""
    return done_shard_names((p.name for p in Path(folder).glob(f"*{DONE_MARKER_SUFFIX}")), split, domains)


def split_sizes(markers: Iterable[dict[str, Any]], domains: Iterable[str] = ()) -> dict[str, int]:
    """Samples per split of done shards' markers (their ``_stats.json``), in ``SPLITS`` order; a split with no done
    shard is absent. What the build summary reports, and what a command asked for a split that a folder lacks names
    instead (a small build may have no test split at all)."""
    wanted = set(domains)
    sizes: dict[str, int] = {}
    for marker in markers:
        if not wanted or marker["domain"] in wanted:
            sizes[marker["split"]] = sizes.get(marker["split"], 0) + int(marker["samples"])
    return {split: sizes[split] for split in SPLITS if split in sizes}


def local_split_sizes(folder: str | Path, domains: Iterable[str] = ()) -> dict[str, int]:
    """``split_sizes`` of a local folder's done shards, each named by its file name (a marker's count is all
    that is read of it)."""
    folder = Path(folder)
    markers = []
    for name in find_done_shards(folder, None, domains):
        domain, split, _ = parse_shard_name(name)  # type: ignore[misc]  # a done shard's name always parses
        samples = json.loads((folder / marker_name(name)).read_text(encoding="utf-8")).get("samples", 0)
        markers.append({"domain": domain, "split": split, "samples": samples})
    return split_sizes(markers)


def describe_splits(sizes: dict[str, int]) -> str:
    """``train 34 samples, val 2 samples`` (``none`` for a folder without done shards)."""
    return ", ".join(f"{split} {n} sample{'s' if n != 1 else ''}" for split, n in sizes.items()) or "none"


def mats_params_json(params: Any) -> dict[str, Any]:
    """``MatsParams`` as recorded in ``build_config.json`` (ranges as lists, so the record compares equal to its
    JSON round trip)."""
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()}


def recorded_mats_params(folder: str | Path, domain: str) -> Any:
    """The ``MatsParams`` a folder's ``domain`` was built with, read from its ``build_config.json``: what
    training's ``rough_source: regenerate`` must use to redraw the stored rough masks bit for bit. A folder built
    before MATS parameters were recorded used the defaults, and one built before ``work_side`` existed drew every
    rough mask per pixel (``work_side: 0``)."""
    from .errors import UserError
    from .mats import MatsParams

    path = Path(folder) / BUILD_CONFIG_FILE
    try:
        domains = json.loads(path.read_text())["domains"]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: cannot read the build settings ({type(exc).__name__}); pass the output folder of `unieditkit build`") from None
    if domain not in domains:
        raise UserError(f"{path}: no domain '{domain}' (built: {', '.join(sorted(domains)) or 'none'}); pick one of those")
    recorded = domains[domain].get("settings", {}).get("mats")
    if recorded is None:
        return MatsParams(work_side=0)
    return MatsParams(**{"work_side": 0, **{k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()}})


def duplicates_coverage(shards: list[dict[str, Any]]) -> dict[str, int]:
    """What ``duplicates.parquet`` records it covered: samples per done shard (stale when the shards change)."""
    return {s["shard"]: int(s["samples"]) for s in shards}


def duplicates_info(folder: str | Path) -> dict[str, Any] | None:
    """The coverage and settings stored in ``duplicates.parquet`` (``None`` when there is none); unreadable is a
    one-line error."""
    import pyarrow.parquet as pq

    from .errors import UserError

    path = Path(folder) / DUPLICATES_FILE
    if not path.is_file():
        return None
    try:
        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta[_DUPLICATES_META_KEY])
    except Exception as exc:  # pyarrow and json raise several types for a damaged file
        raise UserError(f"{path}: unreadable ({type(exc).__name__}); re-run `unieditkit dedupe {folder}`") from None


def duplicates_metadata(info: dict[str, Any]) -> dict[bytes, str]:
    """Schema metadata that stores ``info`` in ``duplicates.parquet``."""
    return {_DUPLICATES_META_KEY: json.dumps(info, sort_keys=True)}
