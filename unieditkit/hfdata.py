"""Images stored in rows of a Hugging Face dataset, addressed by row number.

A dataset is named either ``hf://OWNER/NAME`` (the Hub; read from the local Hugging Face cache when offline)
or by a local path (a ``save_to_disk`` folder, or a folder/file that ``datasets.load_dataset`` understands:
parquet, imagefolder, ...). Rows are read by index, so the dataset is opened as a memory-mapped Arrow table,
not streamed: a streamed dataset can only reach row N by reading the N rows before it, in every worker.

Opened datasets are cached per process (each Ray worker opens a dataset once). The image column is read
undecoded and decoded by :func:`unieditkit.imageio.decode_rgb`, so a row image is treated exactly like a file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError
from .imageio import ImageReadError, decode_rgb, read_bytes

HUB_PREFIX = "hf://"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_OPEN: dict[tuple[str, str, str], Any] = {}


def is_hub(ref: str) -> bool:
    return ref.startswith(HUB_PREFIX)


def _load(ref: str, split: str) -> Any:
    import datasets

    if is_hub(ref):
        name = ref[len(HUB_PREFIX) :]
        try:
            return datasets.load_dataset(name, split=split)
        except ValueError as exc:
            raise UserError(f"hf:{name}: {exc}".splitlines()[0] + "; pick one with ?split=NAME") from None
        except Exception as exc:  # offline, not cached, gated, renamed: datasets raises many types
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(
                f"hf:{name}: dataset not available ({first}); download it once while online "
                f"(python -c \"import datasets; datasets.load_dataset('{name}', split='{split}')\") or pass a local path"
            ) from None
    path = Path(ref)
    if not path.exists():
        raise UserError(f"hf:{ref}: no such local dataset; pass a save_to_disk folder, a parquet/imagefolder path or a Hub name OWNER/NAME")
    try:
        if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise UserError(f"hf:{ref}: no split '{split}'; available: {', '.join(loaded)}; pick one with ?split=NAME")
                return loaded[split]
            return loaded
        return datasets.load_dataset(str(path), split=split)
    except UserError:
        raise
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"hf:{ref}: cannot open as a dataset ({type(exc).__name__}: {first}); check the path and ?split=") from None


def hub_ref(name_or_path: str) -> str:
    """The dataset reference stored in URIs: an absolute path when it exists locally, else ``hf://NAME``."""
    path = Path(name_or_path)
    if path.exists():
        return str(path.resolve())
    if _HUB_ID.match(name_or_path):
        return HUB_PREFIX + name_or_path
    raise UserError(f"hf:{name_or_path}: not found locally and not a Hub name (OWNER/NAME); fix the path")


def open_dataset(ref: str, split: str, column: str) -> Any:
    """The dataset with ``column`` as undecoded image bytes; cached per (ref, split, column) in this process."""
    key = (ref, split, column)
    if key not in _OPEN:
        from datasets import Image

        ds = _load(ref, split)
        if column not in ds.column_names:
            raise UserError(f"hf:{ref}: no column '{column}'; columns: {', '.join(ds.column_names)}; pick one with ?image_column=NAME")
        if not isinstance(ds.features[column], Image):
            raise UserError(f"hf:{ref}: column '{column}' is {ds.features[column]!r}, not an Image feature; pick the image column with ?image_column=NAME")
        _OPEN[key] = ds.cast_column(column, Image(decode=False))
    return _OPEN[key]


def read_row_image(ref: str, split: str, column: str, row: int) -> np.ndarray:
    """RGB uint8 image of one row; a missing row or undecodable bytes raise :class:`ImageReadError`."""
    ds = open_dataset(ref, split, column)
    where = f"{ref}#split={split}&column={column}&row={row}"
    if not 0 <= row < len(ds):
        raise ImageReadError("row_missing", f"{where}: the split has {len(ds)} rows")
    value = ds[row][column]
    if not value:
        raise ImageReadError("empty_file", f"{where}: the image cell is empty")
    data = value.get("bytes")
    if not data and value.get("path"):
        data = read_bytes(value["path"])
    return decode_rgb(data or b"", where)
