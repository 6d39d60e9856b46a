"""Write a tiny, randomly initialised FLUX.1-Fill snapshot: ``python scripts/make_tiny_flux.py DIR [--seed N]``.

The folder has the layout of the ``black-forest-labs/FLUX.1-Fill-dev`` repository (``model_index.json``,
``transformer/``, ``vae/``, ``text_encoder/``, ``text_encoder_2/``, ``tokenizer/``, ``tokenizer_2/``,
``scheduler/``) and is written by diffusers' and transformers' own ``save_pretrained``, so
``diffusers.FluxFillPipeline.from_pretrained(DIR)`` loads it and ``unieditkit train --backbone flux-fill
--pretrained DIR`` takes the same code path a real snapshot takes. Everything is scaled down consistently:

* VAE: 16 latent channels, as FLUX's, and 3 down blocks (8x smaller latents, as FLUX's), but 8-16 conv
  channels; so the packing is FLUX.1-Fill's own: a packed 2x2 latent patch has ``4 * 16 = 64`` channels, the
  packed mask ``8 * 8 * 4 = 256``, and the transformer takes ``64 (noisy) + 64 (masked image) + 256 (mask) = 384``
  channels in and gives 64 out, FLUX.1-Fill-dev's ``in_channels`` / ``out_channels``;
* transformer: one double-stream and one single-stream block, 2 heads of 16, guidance embedding, text width 32
  (``--heads``, ``--head-dim``, ``--double``, ``--single`` and ``--dtype bf16`` make it larger: at FLUX's width,
  24 heads of 128, ``bench/bench_flux_load.py`` measures loading it);
* CLIP text encoder (pooled width 32) with a byte-level BPE vocabulary generated here, and a T5 encoder
  (width 32) with a character-level Unigram ``tokenizer.json`` built here: nothing comes from the hub.

The weights are random: the snapshot is for tests and plumbing, never for images worth looking at.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import string
import sys
import tempfile

LATENT_CHANNELS = 16  # FLUX's VAE
WIDTH = 32  # text width of both encoders = the transformer's joint_attention_dim and pooled_projection_dim
#: the transformer's size (FluxTransformer2DModel arguments); the rest of its config follows from the VAE and WIDTH
TINY_TRANSFORMER = {"num_layers": 1, "num_single_layers": 1, "num_attention_heads": 2, "attention_head_dim": 16}


def clip_tokenizer(folder: pathlib.Path):
    """A CLIPTokenizer over single byte-level characters (no merges): every string tokenizes, offline."""
    from transformers import CLIPTokenizer
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {tok: i for i, tok in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def t5_tokenizer():
    """A T5TokenizerFast with T5's special tokens (pad 0, eos 1, unk 2) over a fixed character Unigram."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    pieces = ["<pad>", "</s>", "<unk>", "\u2581"] + list(string.ascii_letters + string.digits + string.punctuation)
    pieces += ["\u2581" + c for c in string.ascii_letters + string.digits]
    tok = Tokenizer(models.Unigram([(p, -float(i)) for i, p in enumerate(pieces)], unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                           extra_ids=0, model_max_length=512)


def build_pipeline(seed: int = 0, transformer_size: dict | None = None, dtype: str = "fp32"):
    """The tiny FluxFillPipeline, deterministic for a seed; ``transformer_size`` overrides ``TINY_TRANSFORMER``
    keys, and ``dtype`` is the transformer's (FLUX.1-Fill-dev ships bf16; the tiny default keeps fp32 exact)."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxFillPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = clip_tokenizer(pathlib.Path(tmp))
    tokenizer_2 = t5_tokenizer()
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, norm_num_groups=8, sample_size=64, scaling_factor=0.3611, shift_factor=0.1159,
        use_quant_conv=False, use_post_quant_conv=False,
    )
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    packed = 4 * LATENT_CHANNELS
    size = TINY_TRANSFORMER | (transformer_size or {})
    head = size["attention_head_dim"]
    before = torch.get_default_dtype()
    torch.set_default_dtype({"fp32": torch.float32, "bf16": torch.bfloat16}[dtype])  # built in it: no fp32 copy
    try:
        transformer = FluxTransformer2DModel(
            patch_size=1, in_channels=2 * packed + 4 * scale * scale, out_channels=packed, joint_attention_dim=WIDTH,
            pooled_projection_dim=WIDTH, guidance_embeds=True,
            axes_dims_rope=(head // 4, 3 * head // 8, 3 * head // 8), **size,
        )
    finally:
        torch.set_default_dtype(before)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=WIDTH,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    text_encoder_2 = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer_2), d_model=WIDTH, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    ))
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096,
    )
    return FluxFillPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                            text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer)


def make_tiny_flux(out: str | pathlib.Path, seed: int = 0, transformer_size: dict | None = None,
                   dtype: str = "fp32") -> pathlib.Path:
    """Write the snapshot to ``out`` (created) and return it."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    build_pipeline(seed, transformer_size, dtype).save_pretrained(str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write the snapshot into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heads", type=int, default=TINY_TRANSFORMER["num_attention_heads"],
                        help="attention heads (FLUX: 24)")
    parser.add_argument("--head-dim", type=int, default=TINY_TRANSFORMER["attention_head_dim"],
                        help="width per head, a multiple of 8 (FLUX: 128)")
    parser.add_argument("--double", type=int, default=TINY_TRANSFORMER["num_layers"],
                        help="double-stream blocks (FLUX: 19)")
    parser.add_argument("--single", type=int, default=TINY_TRANSFORMER["num_single_layers"],
                        help="single-stream blocks (FLUX: 38)")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="the transformer's weights on disk")
    args = parser.parse_args(argv)
    size = {"num_attention_heads": args.heads, "attention_head_dim": args.head_dim, "num_layers": args.double,
            "num_single_layers": args.single}
    path = make_tiny_flux(args.out, args.seed, size, args.dtype)
    print(f"tiny FLUX.1-Fill snapshot (random weights) written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
