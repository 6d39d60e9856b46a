"""CoCa captioner and CLIP categorizer (open_clip, random weights) on real photos and the bundled taxonomy."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from unieditkit.pipelines.models.caption import clean_caption
from unieditkit.pipelines.models.categorize import class_names
from unieditkit.errors import UserError


def test_captions_are_one_string_per_image_and_deterministic(captioner, photos):
    images = [photos["astronaut"], photos["chelsea"], photos["coffee"]]
    captioner.batch_size = 2  # two generate() calls: one full batch and a remainder
    captions = captioner.caption(images)
    assert len(captions) == 3
    assert all(isinstance(c, str) and "<start_of_text>" not in c and "<end_of_text>" not in c for c in captions)
    assert all(c.strip() for c in captions)
    assert captioner.caption(images) == captions
    assert captioner.caption([]) == []


def test_clean_caption_strips_special_tokens_and_final_period():
    raw = "<start_of_text>a cat sitting on a sofa . <end_of_text>!! ! junk"
    assert clean_caption(raw) == "a cat sitting on a sofa"
    assert clean_caption("<start_of_text>a red , striped shirt<end_of_text>") == "a red, striped shirt"


def test_captioner_rejects_unknown_generation(captioner):
    from unieditkit.pipelines.models.caption import CocaCaptioner

    with pytest.raises(UserError, match="beam_search, greedy"):
        CocaCaptioner(generation_type="nucleus")


def test_categories_are_taxonomy_keys_with_probabilities(categorizer, photos, garments):
    subcategories = garments[:8]
    keys = {s.key for s in subcategories}
    images = [photos["astronaut"], photos["chelsea"], photos["coffee"]]
    results = categorizer.categorize(images, subcategories, top_k=3)
    assert len(results) == 3
    for labels in results:
        assert len(labels) == 3
        assert all(key in keys for key, _ in labels)
        scores = [s for _, s in labels]
        assert scores == sorted(scores, reverse=True)
        assert all(0 < s <= 1 for s in scores) and sum(scores) <= 1 + 1e-6
    assert categorizer.categorize(images[:1], garments[:2], top_k=5)[0][0][0] in {s.key for s in garments[:2]}
    assert len(categorizer.categorize(images[:1], garments[:2], top_k=5)[0]) == 2


def test_text_embeddings_are_computed_once_per_subcategory_set(categorizer, photos, garments, monkeypatch):
    model = categorizer.clip.model
    calls = []
    original = model.encode_text
    monkeypatch.setattr(model, "encode_text", lambda tokens: calls.append(len(tokens)) or original(tokens))
    subset = garments[3:6]
    first = categorizer.categorize([photos["chelsea"]], subset, top_k=2)
    second = categorizer.categorize([photos["chelsea"]], subset, top_k=2)
    assert first == second
    assert len(calls) == len(subset)  # one ensemble per subcategory, on the first call only
    assert calls[0] == len(class_names(subset[0])) * len(categorizer.templates)


def test_class_names_merge_name_prompts_and_synonyms():
    sub = SimpleNamespace(key="t_shirt", name="T-Shirt", prompts=("t-shirt", "short  sleeve shirt"), synonyms=("tee",))
    assert class_names(sub) == ("t-shirt", "short sleeve shirt", "tee")


def test_categorize_rejects_bad_arguments(categorizer, photos, garments):
    with pytest.raises(UserError, match="no subcategories"):
        categorizer.categorize([photos["coffee"]], [])
    with pytest.raises(UserError, match="keys repeat"):
        categorizer.categorize([photos["coffee"]], [garments[0], garments[0]])
    with pytest.raises(UserError, match="top_k 0"):
        categorizer.categorize([photos["coffee"]], garments, top_k=0)


def test_text_embeddings_are_shared_through_the_disk_cache(categorizer, garments, tmp_path, monkeypatch):
    import torch

    subset = garments[6:8]
    monkeypatch.setattr(categorizer, "cache_dir", tmp_path)
    monkeypatch.setattr(categorizer, "_text", {})
    computed = categorizer.text_embeddings(subset)
    assert len(list(tmp_path.glob("clip-text-*.pt"))) == 1
    monkeypatch.setattr(categorizer, "_text", {})  # a fresh worker: memory empty, disk warm
    monkeypatch.setattr(categorizer.clip.model, "encode_text", lambda tokens: pytest.fail("text tower ran again"))
    assert torch.equal(categorizer.text_embeddings(subset), computed)
