"""Throughput of each mining backend, single process, on real photos with random weights.

Random weights cost the same FLOPs as trained ones, so the timings hold for real checkpoints, with two
exceptions noted in the output: a random CoCa never emits its end token (every caption runs to ``max_len``),
and the random GroundingDINO text encoder uses a character vocabulary, so the prompt list is cut to the token
count a real BERT vocabulary gives one domain (one 256-token chunk).

    .venv/bin/python bench/bench_models.py [--device cpu] [--reps 3] [--only sam,dino,...]

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
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BACKENDS = ("sam", "grabcut", "dino", "clip", "coca")


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
    from pipelines.models.segment import SamSegmenter

    sam = SamSegmenter("vit_b", None, device)
    image = images[0]
    seconds = timed(lambda: sam.segment(image, boxes_for(image)), reps)
    return {"model": "SAM vit_b (random init)", "unit": "image (set_image + 4 boxes in one call)",
            "seconds_per_item": seconds}


def bench_grabcut(images, reps, device):
    from pipelines.models.segment import GrabCutSegmenter

    segmenter = GrabCutSegmenter()
    image = images[0]
    seconds = timed(lambda: segmenter.segment(image, boxes_for(image)), reps) / 4
    return {"model": "OpenCV GrabCut (5 iterations, crop <= 256 px)", "unit": "box", "seconds_per_item": seconds}


def _dino_prompts(tokenizer, budget: int = 180) -> list[str]:
    """Garment prompts up to ``budget`` character tokens: what the 52 garment prompts take with BERT's vocabulary."""
    from pipelines.models.detect import PromptMap
    from taxonomy import load_taxonomy

    prompts, used = [], 0
    for prompt in PromptMap(load_taxonomy().domain("garments").subcategories).prompts:
        used += len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) + 1
        if used > budget:
            break
        prompts.append(prompt)
    return prompts


def bench_dino(images, reps, device):
    from pipelines.models.detect import GroundingDinoDetector
    from pipelines.models.random_init import write_random_text_encoder

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
    from pipelines.models.categorize import ClipCategorizer
    from taxonomy import load_taxonomy

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
    from pipelines.models.caption import CocaCaptioner

    results = []
    for generation in ("greedy", "beam_search"):
        captioner = CocaCaptioner("coca_ViT-B-32", None, device, generation_type=generation, max_len=20, batch_size=4)
        seconds = timed(lambda: captioner.caption(images), max(1, reps // 2)) / len(images)
        results.append({"model": f"CoCa ViT-B-32 (random init), {generation}, 20 tokens", "unit": "image (batch of 4)",
                        "seconds_per_item": seconds})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--only", default=",".join(BACKENDS))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "models.json"))
    args = parser.parse_args()

    import torch

    images = photos(args.max_side)
    runners = {"sam": bench_sam, "grabcut": bench_grabcut, "dino": bench_dino, "clip": bench_clip, "coca": bench_coca}
    rows = []
    for name in args.only.split(","):
        result = runners[name](images, args.reps, args.device)
        for row in result if isinstance(result, list) else [result]:
            row["items_per_second"] = 1.0 / row["seconds_per_item"]
            rows.append({"backend": name, **row})
            print(f"{name:8s} {row['items_per_second']:8.3f} {row['unit']}/s  "
                  f"({row['seconds_per_item']:.3f} s)  {row['model']}", flush=True)
    report = {"device": args.device, "torch_threads": torch.get_num_threads(), "machine": platform.processor() or
              platform.machine(), "image_max_side": args.max_side, "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
