"""``unieditkit build``: the dataset build command.

The build itself (Ray, the stages, the catalog) is imported when the command runs, not when it registers: every
``unieditkit`` command, ``--help`` included, registers this one.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from unieditkit.errors import UserError

from .config import BuildConfig, ConfigFile, ModelStagesConfig, OutputSettings, load_config_file
from .stages.model_stages import MODEL_STAGES

if TYPE_CHECKING:
    from .models.weights import ModelSpec


def _ratios(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not three comma-separated numbers, e.g. 0.9,0.05,0.05") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"'{text}': need train,val,test ratios, e.g. 0.9,0.05,0.05")
    return values  # type: ignore[return-value]


def register(sub: argparse._SubParsersAction) -> None:
    d = OutputSettings()
    p = sub.add_parser(
        "build",
        help="build WebDataset shards of (reference, target) pairs for one taxonomy domain",
        description="Build shards for one domain. With no --source, the sample bundled with unieditkit is used. "
        "Re-running the same command resumes: done shards are kept, missing ones are (re)built.",
    )
    p.add_argument("--domain", required=True, help="taxonomy domain key, e.g. garments (see `unieditkit taxonomy`)")
    p.add_argument("--out", default="out", help="output folder (default: ./out)")
    p.add_argument("--source", action="append", default=[], metavar="KIND:PATH[?opt=v]", help="input, repeatable: coco:, manifest:, images:, video:, multiview:, tryon:, hf: (see README)")
    p.add_argument("--sources-file", default="", metavar="FILE.yaml", help="sources listed in a YAML file (sources: [{kind: video, path: clips/, pairs_per_video: 2}, ...])")
    # output settings: None = not given, so the --config file's value (or the default) applies
    p.add_argument("--seed", type=int, default=None, help=f"seed for augmentations and MATS masks (default: {d.seed})")
    p.add_argument("--splits", type=_ratios, default=None, metavar="TRAIN,VAL,TEST", help="split ratios (default: 0.9,0.05,0.05)")
    p.add_argument("--units-per-shard", type=int, default=None, help=f"input units (images/pairs) per shard (default: {d.units_per_shard})")
    p.add_argument("--max-side", type=int, default=None, help=f"longest side of target images (default: {d.max_side})")
    p.add_argument("--ref-size", type=int, default=None, help=f"side of the square reference image (default: {d.ref_size})")
    p.add_argument("--no-augment", action="store_true", default=None, help="do not augment references of self pairs")
    p.add_argument("--against", action="append", default=None, metavar="DIR", help="repeatable: reject samples whose reference or target is a near-duplicate of an image in DIR (an evaluation set), reason eval_overlap")
    p.add_argument("--taxonomy", default="", help="a taxonomy YAML file instead of the bundled one")
    p.add_argument("--ray-address", default="", help="an existing Ray cluster (default: start a local Ray instance)")
    p.add_argument("--workers", type=int, default=0, help="CPUs for the local Ray instance (default: all)")
    p.add_argument("--batch-size", type=int, default=BuildConfig.batch_size, help="units per Ray Data batch (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true", help="plan only: print the unit and shard counts and what a build would (re)build, write nothing")
    p.add_argument("--config", default="", metavar="FILE.yaml", help="YAML with per-stage resources (stages.NAME: batch_size, concurrency, num_gpus, num_cpus) and every threshold and limit (settings:, see README 'Build settings'); flags given on the command line win")

    m = p.add_argument_group("model stages (mining unannotated input)")
    m.add_argument("--models", default="auto", help=f"model stages to run: auto (what the input needs), none, or a list of {','.join(MODEL_STAGES)}")
    m.add_argument("--models-dir", default=None, help="folder with checkpoints under their official names (default: $UNIEDITKIT_MODELS)")
    m.add_argument("--segmenter", default="auto", choices=("auto", "sam", "sam2", "grabcut"), help="auto: SAM when its checkpoint is found, else SAM 2 likewise, else GrabCut (announced)")
    m.add_argument("--sam-model", default="vit_b", help="SAM model type: vit_b, vit_l, vit_h, or vit_t (MobileSAM, checkpoint mobile_sam.pt)")
    m.add_argument("--sam-checkpoint", default=None, help="SAM checkpoint path, e.g. sam_vit_b_01ec64.pth")
    m.add_argument("--sam2-config", default="sam2.1_hiera_t", help="SAM 2 config name shipped with the sam2 package (sam2.1_hiera_t/s/b+/l, sam2_hiera_t/s/b+/l)")
    m.add_argument("--sam2-checkpoint", default=None, help="SAM 2 checkpoint path, e.g. sam2.1_hiera_tiny.pt")
    m.add_argument("--dino-config", default=None, help="GroundingDINO config .py (default: SwinT-OGC shipped with groundingdino-py)")
    m.add_argument("--dino-checkpoint", default=None, help="GroundingDINO checkpoint, e.g. groundingdino_swint_ogc.pth")
    m.add_argument("--dino-text-encoder", default="bert-base-uncased", help="BERT folder or hub name for GroundingDINO's text encoder")
    m.add_argument("--caption-model", default="coca_ViT-B-32", help="open_clip CoCa model name")
    m.add_argument("--caption-pretrained", default="mscoco_finetuned_laion2b_s13b_b90k", help="open_clip pretrained tag or checkpoint path")
    m.add_argument("--clip-model", default="ViT-B-32", help="open_clip model for zero-shot categorization")
    m.add_argument("--clip-pretrained", default="laion2b_s34b_b79k", help="open_clip pretrained tag or checkpoint path")
    m.add_argument("--box-threshold", type=float, default=None, help=f"GroundingDINO box threshold (default: {d.box_threshold})")
    m.add_argument("--text-threshold", type=float, default=None, help=f"GroundingDINO text threshold (default: {d.text_threshold})")
    m.add_argument("--min-category-score", type=float, default=None, help=f"reject mined samples whose CLIP label scores below this (default: {d.min_category_score})")
    m.add_argument("--min-detector-score", type=float, default=None, help=f"reject mined samples whose detection scores below this (default: {d.min_detector_score})")
    m.add_argument("--random-weights", action="store_true", help="PLUMBING TEST ONLY: random model weights, tiny configs; the output is noise")
    p.set_defaults(func=run)


def model_spec(args: argparse.Namespace) -> "ModelSpec":
    from .models.weights import ModelSpec

    return ModelSpec(
        models_dir=args.models_dir,
        segmenter=args.segmenter,
        sam_model_type=args.sam_model,
        sam_checkpoint=args.sam_checkpoint,
        sam2_config=args.sam2_config,
        sam2_checkpoint=args.sam2_checkpoint,
        dino_config=args.dino_config,
        dino_checkpoint=args.dino_checkpoint,
        dino_text_encoder=args.dino_text_encoder,
        caption_model=args.caption_model,
        caption_pretrained=args.caption_pretrained,
        clip_model=args.clip_model,
        clip_pretrained=args.clip_pretrained,
        random_init=args.random_weights,
    )


def model_stages(args: argparse.Namespace, file: ConfigFile) -> ModelStagesConfig:
    stages: str | tuple[str, ...] = args.models
    if args.models == "none":
        stages = ()
    elif args.models != "auto":
        stages = tuple(x.strip() for x in args.models.split(",") if x.strip())
    return ModelStagesConfig(stages=stages, resources=file.resources)


#: command-line flags that set an output setting: setting name -> flag value
_SETTING_FLAGS = {
    "seed": "seed", "split_ratios": "splits", "units_per_shard": "units_per_shard", "max_side": "max_side",
    "ref_size": "ref_size", "box_threshold": "box_threshold", "text_threshold": "text_threshold",
    "min_category_score": "min_category_score", "min_detector_score": "min_detector_score",
}


def output_settings(args: argparse.Namespace, file: ConfigFile) -> OutputSettings:
    """Defaults, then the --config file's ``settings:``, then the flags given on the command line."""
    values = dict(file.settings)
    values.update({name: getattr(args, flag) for name, flag in _SETTING_FLAGS.items() if getattr(args, flag) is not None})
    if args.no_augment:
        values["augment_self_pairs"] = False
    if args.against:
        values["against"] = tuple(args.against)
    return OutputSettings(**values)


def run(args: argparse.Namespace) -> int:
    from .build import build, dry_run
    from .sources import load_sources_yaml

    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
    file = load_config_file(args.config) if args.config else ConfigFile()
    settings = output_settings(args, file)
    config = BuildConfig(
        domain=args.domain,
        out_dir=args.out,
        sources=tuple(args.source) + (tuple(load_sources_yaml(args.sources_file)) if args.sources_file else ()),
        settings=settings,
        ray_address=args.ray_address,
        num_workers=args.workers,
        batch_size=args.batch_size,
        taxonomy_path=args.taxonomy,
        progress=not args.no_progress,
        models=model_spec(args),
        model_stages=model_stages(args, file),
    )
    for line in dry_run(config) if args.dry_run else build(config).lines():
        print(line)
    return 0
