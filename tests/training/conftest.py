"""Fixtures for the training tests: small synthetic shards in the docs/FORMAT.md layout and tiny configs.

The shards let tests choose domains, shard counts and uneven sample counts, which the bundled sample build
(``built_dataset``) does not offer.

Each sample is a coloured ellipse (the object) pasted into a noisy scene; the reference is the same object on the
neutral grey background. Only what training reads is written: the ``.tar`` (all seven members, sorted by key),
the ``.parquet`` sidecar and the ``_stats.json`` "done" marker.
"""

from __future__ import annotations

import io
import json
import pathlib

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image, ImageDraw

from unieditkit.pipelines.writer import sidecar_table
from unieditkit.format import index_record


def _png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _jpg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def make_sample(domain: str, split: str, index: int, subcategory_id: int, size: int, rng: np.random.Generator) -> dict:
    w, h = size + 16, size
    scene = rng.integers(40, 200, size=(h, w, 3), dtype=np.uint8)
    color = rng.integers(0, 256, size=3)
    x0, y0 = int(rng.integers(2, w // 2)), int(rng.integers(2, h // 2))
    x1, y1 = x0 + int(rng.integers(w // 4, w // 2)), y0 + int(rng.integers(h // 4, h // 2))
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).ellipse([x0, y0, x1, y1], fill=255)
    fine = np.asarray(canvas) > 0
    tgt = scene.copy()
    tgt[fine] = color
    ys, xs = np.nonzero(fine)
    bbox = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    rough = np.zeros_like(fine)
    rough[max(0, bbox[1] - 3): bbox[3] + 3, max(0, bbox[0] - 3): bbox[2] + 3] = fine[
        max(0, bbox[1] - 3): bbox[3] + 3, max(0, bbox[0] - 3): bbox[2] + 3]
    rough |= np.pad(fine, 2)[4:, 2:-2] | np.pad(fine, 2)[:-4, 2:-2] | np.pad(fine, 2)[2:-2, 4:] | np.pad(fine, 2)[2:-2, :-4]
    box = np.zeros_like(fine)
    box[bbox[1]: bbox[3], bbox[0]: bbox[2]] = True
    crop = fine[bbox[1]: bbox[3], bbox[0]: bbox[2]]
    ref = np.full((*crop.shape, 3), 127, dtype=np.uint8)
    ref[crop] = color
    key = f"{domain}_synthetic_{split}{index:04d}_0"
    meta = {
        "key": key, "format_version": 1, "domain": domain, "subcategory": f"sub{subcategory_id}",
        "subcategory_id": subcategory_id, "subcategory_name": f"Sub {subcategory_id}", "rigid": False,
        "pair_kind": "self", "split": split,
        "source": {"kind": "synthetic", "uri": f"mem://{key}", "ref_uri": f"mem://{key}", "unit_id": key,
                   "group_id": key, "object_id": "0"},
        "bbox": bbox, "tgt_size": [w, h], "ref_size": [crop.shape[1], crop.shape[0]],
        "captions": {"ref": "", "tgt": ""}, "labels": [{"key": f"sub{subcategory_id}", "score": 1.0}],
        "scores": {"detector": -1.0, "categorize": -1.0, "sharpness": -1.0, "fine_area": float(fine.mean())},
        "mask_source": "annotation",
        "mats": {"seed": 1000 + index, "dilate_px": 2, "noise_amp_px": 0.0, "noise_scale": 0.0, "octaves": 1,
                 "rough_area": float(rough.mean()), "box_area": float(box.mean())},
        "augment": {"flip": False, "scale": 1.0, "rotate_deg": 0.0, "perspective": 0.0, "color": 0.0},
        "taxonomy_version": "1.0.0", "tool_version": "0.1.0",
    }
    return {
        "__key__": key, "ref.jpg": _jpg(ref), "ref_mask.png": _png(crop), "tgt.jpg": _jpg(tgt),
        "mask_fine.png": _png(fine), "mask_rough.png": _png(rough), "mask_box.png": _png(box),
        "json": json.dumps(meta, sort_keys=True).encode(),
    }


def write_shards(root: pathlib.Path, counts: dict[str, list[int]], subcategory_ids: dict[str, int],
                 split: str = "train", size: int = 48, seed: int = 0, corrupt: int = 0) -> list[pathlib.Path]:
    """``counts[domain]`` lists the sample count of each of that domain's shards; the first ``corrupt`` samples
    of every shard get a ``tgt.jpg`` that is not an image."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for domain, per_shard in counts.items():
        index = 0
        for shard_no, n in enumerate(per_shard):
            name = f"{domain}-{split}-{shard_no:06d}"
            samples = []
            for _ in range(n):
                samples.append(make_sample(domain, split, index, subcategory_ids[domain] + index % 2, size, rng))
                index += 1
            samples.sort(key=lambda s: s["__key__"])
            for bad in samples[:corrupt]:
                bad["tgt.jpg"] = b"not a jpeg"
            with wds.TarWriter(str(root / f"{name}.tar")) as sink:
                for s in samples:
                    sink.write(s)
            pq.write_table(sidecar_table([index_record(json.loads(s["json"]), name) for s in samples]),
                           root / f"{name}.parquet")
            stats = {"shard": name, "domain": domain, "split": split, "units": n, "samples": n, "rejected": {},
                     "bytes": (root / f"{name}.tar").stat().st_size, "format_version": 1}
            (root / f"{name}_stats.json").write_text(json.dumps(stats, sort_keys=True))
            paths.append(root / f"{name}.tar")
    return paths


@pytest.fixture(scope="session")
def two_domain_shards(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """garments (shards of 5 and 3 samples) and vehicles (one shard of 7): uneven on purpose."""
    root = tmp_path_factory.mktemp("shards")
    write_shards(root, {"garments": [5, 3], "vehicles": [7]}, {"garments": 0, "vehicles": 130}, size=40)
    return root


TINY_CONFIG = """
model: {image_size: 32, patch_size: 4, dim: 32, depth: 2, heads: 2, num_experts: 4, rank: 4, top_k: 2}
data: {num_workers: 0, shuffle_buffer: 8, batches_per_epoch: 4}
optim: {warmup_steps: 2}
train: {batch_size: 3, save_every: 3, log_every: 1, preview_every: 4, preview_steps: 2, max_steps: 7,
        progress: false, tensorboard: true}
"""


@pytest.fixture()
def tiny_config(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG)
    return path


@pytest.fixture()
def shard_writer():
    """``write_shards`` for tests that need their own layout (bad samples, other domains)."""
    return write_shards


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch):
    """The tiny models here run in milliseconds on one thread; two intra-op threads on a machine shared with other
    jobs spend most of their time waiting for each other (measured: 13 ms vs 340 ms per step). OMP_NUM_THREADS
    keeps the trainer's own thread budget (and torchrun's ranks) at one too."""
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# 32 px and batch 2 keep the runs fast (and log the low-resolution warning); grad_accum 1 is set so each step
# reads one batch; gradient checkpointing and the lr are the flux-fill defaults (training/config.py)
TINY_FLUX_CONFIG = """
model: {backbone: flux-fill, image_size: 32, num_experts: 4, rank: 4, top_k: 2, max_sequence_length: 48}
data: {num_workers: 0, shuffle_buffer: 8, batches_per_epoch: 4}
optim: {warmup_steps: 2}
train: {batch_size: 2, grad_accum: 1, save_every: 4, log_every: 1, preview_every: 4, preview_steps: 2, max_steps: 6,
        progress: false, tensorboard: false}
"""


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A tiny random FLUX.1-Fill snapshot written by scripts/make_tiny_flux.py (the script itself, imported)."""
    import importlib.util

    script = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "make_tiny_flux.py"
    spec = importlib.util.spec_from_file_location("make_tiny_flux", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_tiny_flux(tmp_path_factory.mktemp("tiny_flux") / "FLUX.1-Fill-tiny")


@pytest.fixture()
def tiny_flux_config(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "flux.yaml"
    path.write_text(TINY_FLUX_CONFIG)
    return path


def log_losses(run_dir: pathlib.Path) -> dict[int, float]:
    """Loss per step, from a run's ``log.jsonl``."""
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def log_notes(run_dir: pathlib.Path) -> list[str]:
    """The notes a run logged (defaults taken, fallbacks), from its ``log.jsonl``."""
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r["note"] for r in rows if "note" in r]
