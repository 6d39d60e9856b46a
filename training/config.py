"""Training configuration: dataclasses with defaults, loaded from YAML with strict key and type checks.

A misspelt key in a YAML file would otherwise be ignored and the run would silently use the default, so every
unknown key and every wrongly typed value is a one-line ``UserError`` naming the file and the dotted key.
The defaults are the small built-in editor that trains on a CPU (64x64 images, 4 layers, width 128); with
``model.backbone: flux-fill`` the keys the user leaves unset take the public FLUX LoRA recipes' values instead
(``FLUX_FILL_DEFAULTS``, each with its source), which the run's ``config.yaml`` records and its log announces.
The command-line flags that override keys live here too, beside the keys they fill: ``unieditkit train`` and
``python -m unieditkit.training.train`` (what torchrun starts) both read them, and neither imports the other.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import yaml

from unieditkit.errors import UserError, did_you_mean
from unieditkit.format import BOX, FINE, MASK_VARIANTS, ROUGH

DIT_MOT_PATTERNS = [
    r"blocks\.\d+\.attn\.(q|k|v|o)",
    r"blocks\.\d+\.mlp\.(fc1|fc2)",
]


#: ``model.backbone_quant``: how the frozen FLUX.1-Fill transformer's linear weights are stored (what the run log
#: says; ``flux_adapter.quantization_config`` builds each, ``memory.py`` counts each). Everything else of the
#: backbone (norms, biases) stays bf16; the experts and the router are fp32 in every case.
BACKBONE_QUANTS = {
    "none": "model.backbone_dtype weights, not quantized",
    "int8": "torchao int8 weight-only (an fp32 scale and an int8 zero point per output row), dequantized to bf16 in "
            "each matmul",
    "fp8": "torchao float8 e4m3 weight-only (one fp32 scale per output row), dequantized to bf16 in each matmul",
    "nf4": "bitsandbytes NF4 (4-bit blocks of 64, double-quantized scales), dequantized to bf16 in each matmul",
}


@dataclass
class ModelConfig:
    backbone: Literal["builtin", "flux-fill"] = "builtin"
    pretrained: str = ""
    backbone_dtype: Literal["bf16", "fp32"] = "bf16"
    backbone_quant: Literal[tuple(BACKBONE_QUANTS)] = "none"  # type: ignore[valid-type]
    guidance: float = 30.0
    max_sequence_length: int = 512
    prompt_template: str = "a photo of {name}"
    image_size: int = 64
    patch_size: int = 4
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    num_experts: int = 8
    rank: int = 16
    alpha: float = 16.0
    top_k: int = 2
    prior_scale: float = 2.0
    anchor_floor: float = 0.25
    routing: Literal["anchor", "random"] = "anchor"
    mot_patterns: list[str] = field(default_factory=list)
    taxonomy: str = ""
    train_backbone: Literal["auto", True, False] = "auto"
    init_checkpoint: str = ""
    gradient_checkpointing: bool = False


@dataclass
class DataConfig:
    root: str = ""
    split: Literal["train", "val", "test"] = "train"
    domains: list[str] = field(default_factory=list)
    num_workers: int = 2
    batches_per_epoch: int = 0
    shuffle_buffer: int = 64
    cache: str = ""
    skip_duplicates: bool = True
    val_samples: int = 16


#: the MATS curriculum's stages, from easy to hard, each named after the mask drawing it moves to and each a field
#: of ``CurriculumConfig`` holding its mix over ``MASK_VARIANTS``
CURRICULUM_STAGES = (FINE, ROUGH, BOX)


@dataclass
class CurriculumConfig:
    """The paper gives the order of the stages, not where each begins. The default boundaries scored the lowest
    mean masked MSE (fine, rough, box) in ``bench/sweep_curriculum.py`` among the schedules that keep that order,
    on data the learning bench does not score: fine-only training is short, and most of the run is the box
    stage's mix (BENCHMARKS.md)."""

    boundaries: list[float] = field(default_factory=lambda: [0.1, 0.25])
    fine: dict[str, float] = field(default_factory=lambda: {FINE: 1.0})
    rough: dict[str, float] = field(default_factory=lambda: {FINE: 0.2, ROUGH: 0.8})
    box: dict[str, float] = field(default_factory=lambda: {FINE: 0.1, ROUGH: 0.2, BOX: 0.7})
    rough_source: Literal["stored", "regenerate", "resample"] = "stored"


@dataclass
class OptimConfig:
    optimizer: Literal["auto", "adamw", "adamw8bit"] = "auto"
    lr: float = 3e-4
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 100
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    balance_coef: float = 0.01


@dataclass
class TrainConfig:
    run_dir: str = ""
    max_steps: int = 10000
    stop_after: int = 0
    batch_size: int = 8
    grad_accum: int = 1
    ema_decay: float = 0.0
    seed: int = 0
    precision: Literal["fp32", "bf16"] = "fp32"
    strategy: Literal["ddp", "fsdp"] = "ddp"
    t_sampling: Literal["logit_normal", "uniform"] = "logit_normal"
    log_every: int = 10
    save_every: int = 500
    keep_last: int = 3
    preview_every: int = 500
    preview_samples: int = 4
    preview_steps: int = 20
    val_every: int = 0
    tensorboard: bool = True
    progress: bool = True


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    #: the dotted keys ``load_config`` filled from ``FLUX_FILL_DEFAULTS`` because neither the YAML nor a flag set
    #: them; not a config key (never read from or written to YAML), only what the run log announces
    backbone_defaults: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def epoch_batches(self) -> int:
        """Batches per rank in one data epoch; defaults to the checkpoint interval so resuming never replays."""
        return self.data.batches_per_epoch or self.train.save_every


#: ``model.backbone: flux-fill`` values for the keys a user leaves unset (dotted key -> (value, source)). The
#: built-in defaults size a small editor for a CPU (64 px, batch 8, lr 3e-4, no checkpointing); on FLUX.1-Fill
#: they train a 64-px editor nobody would keep. These are what the public FLUX LoRA recipes use.
FLUX_FILL_DEFAULTS: dict[str, tuple[Any, str]] = {
    "model.image_size": (512, "diffusers examples/dreambooth/train_dreambooth_lora_flux.py --resolution default and "
                              "its README_flux.md LoRA command; the smallest bucket of ai-toolkit's "
                              "config/examples/train_lora_flux_24gb.yaml"),
    "model.gradient_checkpointing": (True, "ai-toolkit train_lora_flux_24gb.yaml (on unless the GPU has memory to "
                                           "spare); kohya sd-scripts docs/flux_train_network.md example command"),
    "train.batch_size": (1, "diffusers README_flux.md LoRA command (--train_batch_size=1); ai-toolkit "
                            "train_lora_flux_24gb.yaml (batch_size: 1)"),
    "train.grad_accum": (4, "diffusers README_flux.md LoRA command (--gradient_accumulation_steps=4)"),
    "optim.lr": (1e-4, "diffusers train_dreambooth_lora_flux.py --learning_rate default; ai-toolkit "
                       "train_lora_flux_24gb.yaml (lr: 1e-4); kohya flux_train_network.md (--learning_rate=1e-4)"),
}
#: a flux-fill run below this many pixels per half gets a warning in its log (FLUX.1-Fill works at ~1024 px)
FLUX_FILL_MIN_PX = 256


def load_config(path: str | pathlib.Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the YAML file (if any), then ``overrides`` (dotted keys, e.g. ``{"train.max_steps": 5}``);
    for flux-fill, ``FLUX_FILL_DEFAULTS`` where neither set a key (listed in ``Config.backbone_defaults``)."""
    data: dict[str, Any] = {}
    where = "config"
    if path is not None:
        p = pathlib.Path(path)
        where = str(p)
        if not p.is_file():
            raise UserError(f"{p}: config file not found; pass an existing YAML file to --config")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark else ""
            raise UserError(f"{p}:{line} is not valid YAML ({getattr(err, 'problem', err)}); fix the syntax") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise UserError(f"{p}: top level must be a mapping of sections (model, data, curriculum, optim, train)")
        data = loaded
    for dotted, value in (overrides or {}).items():
        _put(data, dotted, value)
    filled = _unset_backbone_defaults(data)
    for dotted, value in filled.items():
        _put(data, dotted, value)
    cfg = _build(Config, data, where, "")
    cfg.backbone_defaults = tuple(filled)
    validate(cfg, where)
    return cfg


def _put(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *heads, last = dotted.split(".")
    for h in heads:
        node = node.setdefault(h, {})
    node[last] = value


def _unset_backbone_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """The ``FLUX_FILL_DEFAULTS`` whose key ``data`` (the YAML with the flags applied) leaves unset, when its
    backbone is flux-fill. A key the user set is theirs, even when it equals the built-in default; a section that
    is not a mapping is left for ``_build`` to report."""
    model = data.get("model")
    if not isinstance(model, dict) or model.get("backbone") != "flux-fill":
        return {}
    unset = {}
    for dotted, (value, _) in FLUX_FILL_DEFAULTS.items():
        section, key = dotted.split(".")
        node = data.get(section, {})
        if isinstance(node, dict) and key not in node:
            unset[dotted] = value
    return unset


def config_notes(cfg: Config) -> list[str]:
    """What the run log says about the config itself: the keys that took the backbone's defaults, a quantized
    backbone, and a flux-fill resolution too low for an editor worth keeping (``unieditkit edit`` upsamples such
    an output into the mask)."""
    notes = []
    if cfg.backbone_defaults:
        values = []
        for dotted in cfg.backbone_defaults:
            section, key = dotted.split(".")
            value = getattr(getattr(cfg, section), key)
            values.append(f"{dotted} {str(value).lower() if isinstance(value, bool) else value}")
        notes.append(f"model.backbone flux-fill: {', '.join(values)} (set neither in the config nor by a flag: the "
                     "FLUX LoRA recipes' values, sources in docs/TRAINING.md and training/config.py)")
    m = cfg.model
    if m.backbone_quant != "none":
        notes.append(f"model.backbone_quant {m.backbone_quant}: the frozen FLUX.1-Fill transformer in "
                     f"{BACKBONE_QUANTS[m.backbone_quant]}; experts and router fp32, the only weights that train "
                     "(`unieditkit train --memory-plan` counts the bytes)")
        if not m.gradient_checkpointing:
            notes.append(f"warning: model.backbone_quant {m.backbone_quant} without model.gradient_checkpointing: "
                         "each linear keeps its weight dequantized to bf16 for the backward pass, so a step holds the "
                         "whole backbone in bf16 again; set model.gradient_checkpointing: true (the flux-fill "
                         "default), which keeps one block's at a time")
    if m.backbone == "flux-fill" and m.image_size < FLUX_FILL_MIN_PX:
        default = FLUX_FILL_DEFAULTS["model.image_size"][0]
        notes.append(f"warning: model.image_size {m.image_size} px per half is below {FLUX_FILL_MIN_PX} for "
                     "flux-fill, which works at about 1024 px: `unieditkit edit` would upsample this editor's output "
                     f"into the mask; use --image-size {default} (the flux-fill default) or more")
    return notes


def backbone_trains(m: ModelConfig) -> bool:
    """``model.train_backbone: auto`` is the paper's setting, a frozen backbone, whenever the backbone has
    pretrained weights; the built-in editor started from scratch has none, and a frozen random backbone learns
    nothing, so there auto trains it (``unieditkit.training.train`` announces which it chose)."""
    if m.train_backbone == "auto":
        return m.backbone == "builtin" and not m.init_checkpoint
    return bool(m.train_backbone)


def save_config(cfg: Config, path: pathlib.Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")


def validate(cfg: Config, where: str = "config") -> None:
    """Cross-field checks that types alone cannot express."""
    m, t, c = cfg.model, cfg.train, cfg.curriculum
    positive = {
        "model.image_size": m.image_size, "model.patch_size": m.patch_size, "model.dim": m.dim,
        "model.depth": m.depth, "model.heads": m.heads, "train.max_steps": t.max_steps,
        "train.batch_size": t.batch_size, "train.log_every": t.log_every, "train.save_every": t.save_every,
        "train.keep_last": t.keep_last, "train.preview_every": t.preview_every,
        "train.preview_steps": t.preview_steps, "train.grad_accum": t.grad_accum,
        "model.max_sequence_length": m.max_sequence_length,
    }
    for key, value in positive.items():
        if value < 1:
            raise UserError(f"{where}: {key} must be >= 1 (got {value})")
    if m.image_size % m.patch_size:
        raise UserError(f"{where}: model.image_size ({m.image_size}) must be a multiple of model.patch_size")
    if m.dim % m.heads:
        raise UserError(f"{where}: model.dim ({m.dim}) must be a multiple of model.heads ({m.heads})")
    if m.num_experts < 0 or (m.num_experts and not 1 <= m.top_k <= m.num_experts):
        raise UserError(f"{where}: model.top_k must be in 1..model.num_experts (0 experts = backbone only)")
    if not 0.0 <= m.anchor_floor < 1.0:
        raise UserError(f"{where}: model.anchor_floor must be in [0, 1) (the home expert's least routing "
                        f"weight), got {m.anchor_floor}")
    if m.backbone == "flux-fill":
        _validate_flux(m, where)
    elif m.backbone_quant != "none":
        raise UserError(f"{where}: model.backbone_quant {m.backbone_quant} is for the frozen flux-fill backbone; "
                        "the built-in editor trains its own weights: set model.backbone_quant: none")
    elif m.train_backbone is False and not m.init_checkpoint:
        raise UserError(
            f"{where}: model.train_backbone is false but model.init_checkpoint is empty: a frozen random backbone "
            "cannot learn; set model.init_checkpoint to a trained backbone or train_backbone: true (or auto)"
        )
    if len(c.boundaries) != 2 or not 0.0 <= c.boundaries[0] <= c.boundaries[1] <= 1.0:
        raise UserError(f"{where}: curriculum.boundaries must be [rough_start, box_start] with 0 <= a <= b <= 1")
    for stage in CURRICULUM_STAGES:
        mix = getattr(c, stage)
        bad = [k for k in mix if k not in MASK_VARIANTS]
        if bad:
            raise UserError(f"{where}: curriculum.{stage}.{bad[0]}: unknown mask variant; use {', '.join(MASK_VARIANTS)}")
        if any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
            raise UserError(f"{where}: curriculum.{stage} probabilities must be >= 0 and not all zero")
    if cfg.data.num_workers < 0:
        raise UserError(f"{where}: data.num_workers must be >= 0")
    if not 0.0 <= t.ema_decay < 1.0:
        raise UserError(f"{where}: train.ema_decay must be in [0, 1) (0: no EMA; 0.999 is typical), got {t.ema_decay}")
    if t.val_every < 0 or cfg.data.val_samples < 1:
        raise UserError(f"{where}: train.val_every must be >= 0 (0: no validation) and data.val_samples >= 1")


def _validate_flux(m: ModelConfig, where: str) -> None:
    """The FLUX.1-Fill backbone: a snapshot to load, images its VAE and 2x2 packing can take, a prompt template."""
    if not m.pretrained:
        raise UserError(
            f"{where}: model.backbone is flux-fill but model.pretrained is empty; pass --pretrained DIR, a "
            "FLUX.1-Fill-dev snapshot (huggingface-cli download black-forest-labs/FLUX.1-Fill-dev --local-dir DIR)"
        )
    if m.image_size % 16:
        raise UserError(f"{where}: model.image_size ({m.image_size}) must be a multiple of 16 for FLUX.1-Fill "
                        "(8x VAE, then 2x2 latent patches)")
    if m.init_checkpoint:
        raise UserError(f"{where}: model.init_checkpoint is for the built-in editor; FLUX.1-Fill loads its backbone "
                        "from model.pretrained")
    if m.train_backbone is True:
        raise UserError(f"{where}: model.train_backbone: true is not offered for flux-fill (11.9B parameters); the "
                        "backbone stays frozen and the LoRA experts and router train (use auto or false)")
    if "{name}" not in m.prompt_template:
        raise UserError(f"{where}: model.prompt_template must contain {{name}} (the subcategory's display name)")
    if m.backbone_quant != "none" and m.backbone_dtype != "bf16":
        raise UserError(f"{where}: model.backbone_quant {m.backbone_quant} computes in bf16 (the quantized weights "
                        "are dequantized to it); set model.backbone_dtype: bf16")


def _build(cls: type, data: Any, where: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise UserError(f"{where}: '{prefix.rstrip('.') or 'top level'}' must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise UserError(f"{where}: unknown key '{prefix}{key}' ({did_you_mean(str(key), fields)}valid here: "
                            f"{', '.join(fields)})")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _coerce(hints[key], value, where, f"{prefix}{key}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, f"{key}.")
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if not any(value == c and type(value) is type(c) for c in choices):
            names = [str(c).lower() if isinstance(c, bool) else str(c) for c in choices]
            raise UserError(f"{where}: {key} is {value!r}; use one of {', '.join(names)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"{where}: {key} must be a list (got {type(value).__name__})")
        (item,) = typing.get_args(tp)
        return [_coerce(item, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: {key} must be a mapping (got {type(value).__name__})")
        _, item = typing.get_args(tp)
        return {str(k): _coerce(item, v, where, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: {key} must be true or false (got {value!r})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: {key} must be an integer (got {value!r})")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: {key} must be a number (got {value!r})")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: {key} must be a string (got {value!r})")
        return value
    raise TypeError(f"unsupported config type {tp} for {key}")  # a programming error in this module


# flag -> (dotted config key, type); each overrides that key of the config file
OVERRIDES = {
    "--data": ("data.root", str),
    "--out": ("train.run_dir", str),
    "--max-steps": ("train.max_steps", int),
    "--lr": ("optim.lr", float),
    "--batch-size": ("train.batch_size", int),
    "--image-size": ("model.image_size", int),
    "--save-every": ("train.save_every", int),
    "--preview-every": ("train.preview_every", int),
    "--backbone": ("model.backbone", str),
    "--pretrained": ("model.pretrained", str),
    "--backbone-quant": ("model.backbone_quant", str),
    "--cache": ("data.cache", str),
    "--val-every": ("train.val_every", int),
}
SWITCHES = ("--overwrite", "--allow-world-size-change")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options ``unieditkit train`` and ``python -m unieditkit.training.train`` share."""
    parser.add_argument("--config", help="YAML config (default: the built-in small editor; see docs/TRAINING.md)")
    helps = {
        "--data": "dataset folder written by `unieditkit build`",
        "--out": "run folder for checkpoints, logs and previews",
        "--max-steps": "total optimizer steps",
        "--lr": "peak learning rate",
        "--batch-size": "samples per step and process",
        "--image-size": "training resolution per half in pixels, square (a multiple of 16 for flux-fill)",
        "--save-every": "checkpoint every N steps (and at the end)",
        "--preview-every": "preview image every N steps",
        "--backbone": "builtin (small DiT, trains on a CPU) or flux-fill (FLUX.1-Fill with MoT experts)",
        "--pretrained": "FLUX.1-Fill-dev snapshot folder for --backbone flux-fill",
        "--backbone-quant": "flux-fill: the frozen transformer's weights in none (bf16), int8 or fp8 (torchao, any "
                            "device) or nf4 (bitsandbytes, CUDA only); experts and router stay fp32",
        "--cache": "folder to keep VAE latents and text embeddings in (flux-fill), computed once per sample",
        "--val-every": "validation loss per mask variant on a fixed val subset every N steps (0: off)",
    }
    defaults = Config()
    for flag, (key, kind) in OVERRIDES.items():
        section, name = key.split(".")
        default = getattr(getattr(defaults, section), name)
        flux = f", {FLUX_FILL_DEFAULTS[key][0]} for flux-fill" if key in FLUX_FILL_DEFAULTS else ""
        shown = f"; default {default}{flux}" if default != "" else ""
        parser.add_argument(flag, type=kind, help=f"{helps[flag]} (overrides {key}{shown})")
    parser.add_argument("--resume", help="'latest' (the run folder's newest checkpoint, if any) or a step_*.pt path")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a run folder that already has checkpoints again from step 0 (deletes them)")
    parser.add_argument("--allow-world-size-change", action="store_true",
                        help="resume on a different number of processes, approximately (noted in log.jsonl)")


def overrides_from(args: argparse.Namespace) -> dict:
    """The dotted config keys the command line sets."""
    found = {}
    for flag, (key, _) in OVERRIDES.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            found[key] = value
    return found
