"""Throughput of each mining backend, single process, on real photos with random weights.

Random weights cost the same FLOPs as trained ones, so the timings hold for real checkpoints, with two
exceptions noted in the output: a random CoCa never emits its end token (every caption runs to ``max_len``),
and the random GroundingDINO text encoder uses a character vocabulary, so the prompt list is cut to the token
count a real BERT vocabulary gives one domain (one 256-token chunk).

    .venv/bin/python bench/bench_models.py [--device cpu] [--reps 3] [--only sam,dino,...]

``dino_batch`` and ``sam_batch`` measure images/s of the pipeline's batched calls (``detect_batch``,
``segment_batch``) at batch 1 and at ``--batch`` on the same ``--batch`` images of one size (video frames, a
dataset of one resolution), the two settings interleaved rep by rep so machine load hits both alike; their
ratio is the gain of batching. ``--sam-model`` picks the SAM for ``sam_batch`` (``vit_t``: MobileSAM, for CPUs).

Writes bench/results/models.json and prints one line per backend.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BACKENDS = ("sam", "grabcut", "dino", "clip", "coca", "dino_batch", "sam_batch")


def photos(max_side: int) -> list[np.ndarray]:
    """Four real photos from scikit-image, scaled so the longer side is ``max_side``."""
    import cv2
    from skimage import data

    out = []
    for image in (data.astronaut(), data.chelsea(), data.coffee(), data.rocket()):
        scale = max_side / max(image.shape[:2])
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        out.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    return out


def timed(fn: Callable[[], object], reps: int) -> float:
    """Median seconds of ``reps`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def boxes_for(image: np.ndarray, n: int = 4) -> np.ndarray:
    h, w = image.shape[:2]
    return np.array([[w * (0.1 + 0.15 * i), h * 0.2, w * (0.45 + 0.12 * i), h * 0.8] for i in range(n)], np.float32)


def bench_sam(images, reps, device):
    from unieditkit.pipelines.models.segment import SamSegmenter

    sam = SamSegmenter("vit_b", None, device)
    image = images[0]
    seconds = timed(lambda: sam.segment(image, boxes_for(image)), reps)
    return {"model": "SAM vit_b (random init)", "unit": "image (set_image + 4 boxes in one call)",
            "seconds_per_item": seconds}


def bench_grabcut(images, reps, device):
    from unieditkit.pipelines.models.segment import GrabCutSegmenter

    segmenter = GrabCutSegmenter()
    image = images[0]
    seconds = timed(lambda: segmenter.segment(image, boxes_for(image)), reps) / 4
    return {"model": "OpenCV GrabCut (5 iterations, crop <= 256 px)", "unit": "box", "seconds_per_item": seconds}


def _dino_prompts(tokenizer, budget: int = 180) -> list[str]:
    """Garment prompts up to ``budget`` character tokens: what the 52 garment prompts take with BERT's vocabulary."""
    from unieditkit.pipelines.models.detect import PromptMap
    from unieditkit.taxonomy import load_taxonomy

    prompts, used = [], 0
    for prompt in PromptMap(load_taxonomy().domain("garments").subcategories).prompts:
        used += len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) + 1
        if used > budget:
            break
        prompts.append(prompt)
    return prompts


def bench_dino(images, reps, device):
    from unieditkit.pipelines.models.detect import GroundingDinoDetector
    from unieditkit.pipelines.models.random_init import write_random_text_encoder

    results = []
    with tempfile.TemporaryDirectory() as folder:
        encoder = write_random_text_encoder(folder, hidden_size=768, layers=12)  # bert-base size
        for image_size in (800, 512):
            detector = GroundingDinoDetector(text_encoder=str(encoder), device=device, image_size=image_size)
            prompts = _dino_prompts(detector.model.tokenizer)
            image = images[0]
            seconds = timed(lambda: detector.detect(image, prompts), reps)
            results.append({"model": f"GroundingDINO SwinT-OGC config, bert-base-size text encoder (random init), "
                                     f"shorter side resized to {image_size}", "unit": "image (one 180-token prompt chunk)",
                            "seconds_per_item": seconds})
    return results


def bench_clip(images, reps, device):
    from unieditkit.pipelines.models.categorize import ClipCategorizer
    from unieditkit.taxonomy import load_taxonomy

    categorizer = ClipCategorizer("ViT-B-32", None, device)
    subcategories = load_taxonomy().domain("garments").subcategories
    start = time.perf_counter()
    categorizer.text_embeddings(subcategories)
    text_seconds = time.perf_counter() - start
    batch = images * 4
    seconds = timed(lambda: categorizer.categorize(batch, subcategories, top_k=3), reps) / len(batch)
    return [{"model": "CLIP ViT-B-32 (random init)", "unit": "image (batch of 16)", "seconds_per_item": seconds},
            {"model": "CLIP ViT-B-32 text ensemble, garments (32 subcategories x 8 templates), once per worker",
             "unit": "domain", "seconds_per_item": text_seconds}]


def bench_coca(images, reps, device):
    from unieditkit.pipelines.models.caption import CocaCaptioner

    results = []
    for generation in ("greedy", "beam_search"):
        captioner = CocaCaptioner("coca_ViT-B-32", None, device, generation_type=generation, max_len=20, batch_size=4)
        seconds = timed(lambda: captioner.caption(images), max(1, reps // 2)) / len(images)
        results.append({"model": f"CoCa ViT-B-32 (random init), {generation}, 20 tokens", "unit": "image (batch of 4)",
                        "seconds_per_item": seconds})
    return results


def same_size(images: list[np.ndarray], count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """``count`` distinct images of one size (width, height): the photos resized, then mirrored copies."""
    import cv2

    base = [cv2.resize(image, size, interpolation=cv2.INTER_AREA) for image in images]
    return [base[i % len(base)] if (i // len(base)) % 2 == 0 else np.ascontiguousarray(base[i % len(base)][:, ::-1])
            for i in range(count)]


def batch_vs_one(run: Callable[[int], object], count: int, batch: int, reps: int) -> tuple[float, float]:
    """Median seconds for ``count`` images at batch 1 and at ``batch``, interleaved, after one warm-up of each."""
    run(1)
    run(batch)
    one, many = [], []
    for _ in range(reps):
        for size, times in ((1, one), (batch, many)):
            start = time.perf_counter()
            run(size)
            times.append(time.perf_counter() - start)
    return statistics.median(one), statistics.median(many)


def _batch_rows(model: str, unit: str, count: int, batch: int, one: float, many: float) -> list[dict]:
    return [{"model": model, "unit": f"image, batch 1 ({unit})", "seconds_per_item": one / count},
            {"model": model, "unit": f"image, batch {batch} ({unit})", "seconds_per_item": many / count,
             "speedup_vs_batch_1": one / many}]


def bench_dino_batch(images, reps, device, batch=8, frame=(512, 384)):
    from unieditkit.pipelines.models.detect import GroundingDinoDetector
    from unieditkit.pipelines.models.random_init import write_random_text_encoder

    frames = same_size(images, batch, frame)
    with tempfile.TemporaryDirectory() as folder:
        encoder = write_random_text_encoder(folder, hidden_size=768, layers=12)
        # the frames go in at their own size (shorter side = image_size)
        detector = GroundingDinoDetector(text_encoder=str(encoder), device=device, image_size=min(frame), max_size=max(frame))
        prompts = _dino_prompts(detector.model.tokenizer)
        one, many = batch_vs_one(lambda b: detector.detect_batch(frames, prompts, batch_size=b), batch, batch, reps)
    return _batch_rows(f"GroundingDINO SwinT-OGC, bert-base-size text encoder (random init), {frame[0]}x{frame[1]} input",
                       "one 180-token prompt chunk", batch, batch, one, many)


def bench_sam_batch(images, reps, device, batch=8, frame=(512, 384), sam_model="vit_b"):
    from unieditkit.pipelines.models.segment import SamSegmenter

    sam = SamSegmenter(sam_model, None, device)
    items = [(image, boxes_for(image)) for image in same_size(images, batch, frame)]
    one, many = batch_vs_one(lambda b: sam.segment_batch(items, batch_size=b), batch, batch, reps)
    return _batch_rows(f"SAM {sam_model} (random init), {frame[0]}x{frame[1]} images", "encoder + 4 boxes", batch, batch, one, many)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--only", default=",".join(BACKENDS))
    parser.add_argument("--batch", type=int, default=8, help="batch size of dino_batch and sam_batch")
    parser.add_argument("--sam-model", default="vit_b", help="SAM of sam_batch: vit_b, vit_l, vit_h or vit_t")
    parser.add_argument("--frame", default="512x384", help="WIDTHxHEIGHT of the images of dino_batch and sam_batch")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "models.json"))
    args = parser.parse_args()

    import torch

    images = photos(args.max_side)
    frame = tuple(int(v) for v in args.frame.lower().split("x"))
    runners = {"sam": bench_sam, "grabcut": bench_grabcut, "dino": bench_dino, "clip": bench_clip, "coca": bench_coca,
               "dino_batch": partial(bench_dino_batch, batch=args.batch, frame=frame),
               "sam_batch": partial(bench_sam_batch, batch=args.batch, frame=frame, sam_model=args.sam_model)}
    rows = []
    for name in args.only.split(","):
        result = runners[name](images, args.reps, args.device)
        for row in result if isinstance(result, list) else [result]:
            row["items_per_second"] = 1.0 / row["seconds_per_item"]
            rows.append({"backend": name, **row})
            speedup = f"  {row['speedup_vs_batch_1']:.2f}x batch 1" if "speedup_vs_batch_1" in row else ""
            print(f"{name:10s} {row['items_per_second']:8.3f}/s per {row['unit']}  "
                  f"({row['seconds_per_item']:.3f} s){speedup}  {row['model']}", flush=True)
    report = {"device": args.device, "torch_threads": torch.get_num_threads(), "machine": platform.processor() or
              platform.machine(), "image_max_side": args.max_side, "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
