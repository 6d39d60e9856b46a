"""The bundled taxonomy's content and the loader's validation."""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from unieditkit.taxonomy import (
    DEFAULT_TAXONOMY_PATH,
    EXPECTED_DOMAINS,
    EXPECTED_SUBCATEGORIES,
    load_taxonomy,
    normalize_name,
)
from unieditkit.errors import TaxonomyError, UserError

# Changing the bundled taxonomy changes what shards mean: bump its version and update this pin together.
PINNED_VERSION = "1.0.0"
PINNED_FINGERPRINT = "fb8aa89aac7912769419fad227dc123048583d03c097f28f070bbf73e3cf0438"

COCO_CATEGORIES = {
    "person": "person", "bicycle": "bicycle", "car": "car", "motorcycle": "motorcycle", "airplane": "airplane",
    "bus": "bus", "train": "train", "truck": "truck", "boat": "boat", "traffic light": "traffic_light",
    "fire hydrant": "fire_hydrant", "stop sign": "street_sign", "bench": "bench", "bird": "bird", "cat": "cat",
    "dog": "dog", "horse": "horse", "sheep": "sheep", "cow": "cow", "elephant": "elephant", "bear": "bear",
    "zebra": "zebra", "giraffe": "giraffe", "backpack": "backpack", "umbrella": "umbrella", "handbag": "handbag",
    "tie": "necktie", "suitcase": "suitcase", "frisbee": "sports_equipment", "skis": "board_sports",
    "snowboard": "board_sports", "sports ball": "sports_ball", "kite": "sports_equipment",
    "baseball bat": "sports_equipment", "baseball glove": "sports_equipment", "skateboard": "board_sports",
    "surfboard": "board_sports", "tennis racket": "sports_equipment", "bottle": "bottle", "wine glass": "wine_glass",
    "cup": "cup", "fork": "utensils", "knife": "utensils", "spoon": "utensils", "bowl": "bowl", "banana": "food",
    "apple": "food", "sandwich": "food", "hot dog": "food", "pizza": "food", "donut": "food", "cake": "food",
    "chair": "chair", "couch": "sofa", "potted plant": "potted_plant", "bed": "bed", "dining table": "dining_table",
    "toilet": "toilet", "tv": "television", "laptop": "laptop", "mouse": "computer_peripheral",
    "remote": "remote_control", "keyboard": "computer_peripheral", "cell phone": "smartphone",
    "microwave": "kitchen_appliance", "oven": "kitchen_appliance", "toaster": "kitchen_appliance",
    "sink": "sink", "refrigerator": "kitchen_appliance", "book": "book", "clock": "clock", "vase": "vase",
    "scissors": "utensils", "teddy bear": "stuffed_toy", "hair drier": "personal_care_device",
    "toothbrush": "personal_care_device",
}


@pytest.fixture(scope="module")
def tx():
    return load_taxonomy()


def small_taxonomy() -> dict:
    """A valid custom taxonomy with other counts than the bundled one."""
    return {
        "name": "mini",
        "version": "0.1",
        "domains": [
            {"key": "garments", "name": "Garments", "description": "Clothes.", "subcategories": [
                {"id": 0, "key": "t_shirt", "name": "T-Shirt", "prompts": ["t-shirt"], "synonyms": ["tee"],
                 "rigid": False},
                {"id": 1, "key": "hat", "name": "Hat", "prompts": ["hat", "cap"], "synonyms": [], "rigid": False},
            ]},
            {"key": "vehicles", "name": "Vehicles", "description": "Things that move.", "subcategories": [
                {"id": 7, "key": "baseball_cap", "name": "Baseball Cap", "prompts": ["baseball cap"],
                 "rigid": False},
            ]},
        ],
    }


def write(tmp_path, data, name="taxonomy.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# --- the bundled taxonomy -------------------------------------------------------------------------------------

def test_bundled_counts_and_order(tx):
    assert tuple(tx.domains) == EXPECTED_DOMAINS
    assert len(tx.subcategories) == EXPECTED_SUBCATEGORIES == 209
    assert sum(len(d.subcategories) for d in tx.domains.values()) == 209
    file_order = [s.id for d in tx.domains.values() for s in d.subcategories]
    assert file_order == list(range(209)) == [s.id for s in tx.subcategories]
    assert tx.name == "unieditkit-taxonomy"
    assert tx.path == DEFAULT_TAXONOMY_PATH


def test_bundled_fields_are_well_formed(tx):
    keys = [s.key for s in tx.subcategories]
    prompts = [p for s in tx.subcategories for p in s.prompts]
    assert len(set(keys)) == len(keys)
    assert len(set(prompts)) == len(prompts)
    for d in tx.domains.values():
        assert d.name and d.description.endswith(".")
        for s in d.subcategories:
            assert s.domain == d.key
            assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", s.key)
            assert 1 <= len(s.prompts) <= 3 and len(s.synonyms) <= 5
            assert all(p == p.lower() for p in s.prompts + s.synonyms)
            assert isinstance(s.rigid, bool)


def test_every_name_looks_up_its_own_subcategory(tx):
    for s in tx.subcategories:
        for name in s.names():
            assert tx.lookup(name) is s, (name, s.key)


def test_rigidity_follows_domain_nature(tx):
    assert all(s.rigid for d in ("vehicles", "architecture") for s in tx.domain(d).subcategories)
    assert not any(s.rigid for d in ("garments", "persons", "animals") for s in tx.domain(d).subcategories)


def test_pinned_version_and_fingerprint(tx):
    assert (tx.version, tx.fingerprint()) == (PINNED_VERSION, PINNED_FINGERPRINT)


# --- lookup ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(COCO_CATEGORIES))
def test_coco_categories_map(tx, name):
    assert tx.lookup(name).key == COCO_CATEGORIES[name]


@pytest.mark.parametrize("name,key", [
    ("Dining_Table", "dining_table"), ("dining-table", "dining_table"), ("  COUCH ", "sofa"),
    ("short sleeve top", "t_shirt"), ("sling dress", "dress"), ("rucksack", "backpack"),
    ("fire engine", "emergency_vehicle"), ("Human face", "face"), ("tshirt", "t_shirt"), ("T-Shirt", "t_shirt"),
])
def test_lookup_synonyms_and_spellings(tx, name, key):
    assert tx.lookup(name).key == key


@pytest.mark.parametrize("name", ["spaceship", "", "dining", "orange", "tables", "t shirts"])
def test_lookup_unknown_is_none(tx, name):
    assert tx.lookup(name) is None


def test_normalize_name():
    assert normalize_name(" Dining__Table-top ") == "dining table top"


# --- accessors ------------------------------------------------------------------------------------------------

def test_domain_error_suggests_closest(tx):
    with pytest.raises(TaxonomyError) as err:
        tx.domain("garment")
    assert str(err.value) == (
        "unknown domain 'garment'; did you mean 'garments'? valid: garments, accessories, persons, animals, "
        "vehicles, furniture, architecture, products"
    )
    assert isinstance(err.value, UserError)


def test_by_key_and_by_id(tx):
    assert tx.by_key("jeans") is tx.by_id(tx.by_key("jeans").id)
    assert tx.by_id(0).key == "t_shirt" and tx.by_id(208).domain == "products"
    with pytest.raises(TaxonomyError, match="unknown subcategory 'tshirt'; did you mean 't_shirt'"):
        tx.by_key("tshirt")
    with pytest.raises(TaxonomyError, match=r"unknown subcategory id 209; valid ids are 0\.\.208"):
        tx.by_id(209)


def test_default_is_cached(tx):
    assert load_taxonomy() is tx
    assert load_taxonomy(str(DEFAULT_TAXONOMY_PATH)) is tx


# --- serialisation --------------------------------------------------------------------------------------------

def test_to_dict_round_trip(tx, tmp_path):
    data = tx.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data == yaml.safe_load(DEFAULT_TAXONOMY_PATH.read_text(encoding="utf-8"))
    again = load_taxonomy(write(tmp_path, data), strict_counts=True)
    assert again.to_dict() == data
    assert again.fingerprint() == tx.fingerprint()


def test_fingerprint_tracks_content_only(tx, tmp_path):
    data = tx.to_dict()
    reformatted = tmp_path / "flow.yaml"
    reformatted.write_text("# a comment\n" + yaml.safe_dump(data, default_flow_style=True), encoding="utf-8")
    assert load_taxonomy(reformatted).fingerprint() == tx.fingerprint()
    changed = copy.deepcopy(data)
    changed["domains"][0]["subcategories"][0]["prompts"].append("graphic tee")
    assert load_taxonomy(write(tmp_path, changed)).fingerprint() != tx.fingerprint()


# --- custom files and strict counts ---------------------------------------------------------------------------

def test_custom_taxonomy_may_have_other_counts(tmp_path):
    path = write(tmp_path, small_taxonomy())
    custom = load_taxonomy(path)
    assert list(custom.domains) == ["garments", "vehicles"]
    assert [s.id for s in custom.subcategories] == [0, 1, 7]
    assert custom.lookup("tee").key == "t_shirt" and custom.by_id(7).synonyms == ()
    with pytest.raises(TaxonomyError, match=r"taxonomy\.yaml: domains: expected the 8 domains .*strict_counts=False"):
        load_taxonomy(path, strict_counts=True)


def test_strict_counts_catches_a_missing_subcategory(tx, tmp_path):
    data = tx.to_dict()
    del data["domains"][-1]["subcategories"][-1]
    path = write(tmp_path, data)
    with pytest.raises(TaxonomyError, match="has 208 subcategories, expected 209"):
        load_taxonomy(path, strict_counts=True)
    assert len(load_taxonomy(path).subcategories) == 208


def test_strict_counts_requires_ids_in_file_order(tx, tmp_path):
    data = tx.to_dict()
    garments = data["domains"][0]["subcategories"]
    garments[0]["id"], garments[1]["id"] = 1, 0
    with pytest.raises(TaxonomyError, match="subcategory #0 in file order has id 1, expected 0"):
        load_taxonomy(write(tmp_path, data), strict_counts=True)


# --- validation errors ----------------------------------------------------------------------------------------

def _sub(data, d, s):
    return data["domains"][d]["subcategories"][s]


BAD = {
    "duplicate_prompt": (
        lambda t: _sub(t, 1, 0)["prompts"].append("cap"),
        "domains[1].subcategories[0].prompts: duplicate prompt 'cap' (also in hat); prompts must be unique"),
    "rigid_not_bool": (
        lambda t: _sub(t, 0, 1).update(rigid="sometimes"),
        "domains[0].subcategories[1].rigid: expected true or false, got 'sometimes' (str)"),
    "id_not_int": (
        lambda t: _sub(t, 0, 1).update(id="1"),
        "domains[0].subcategories[1].id: expected a non-negative integer, got '1' (str)"),
    "prompts_not_list": (
        lambda t: _sub(t, 0, 0).update(prompts="t-shirt"),
        "domains[0].subcategories[0].prompts: expected a list of 1 to 3 strings"),
    "prompts_empty": (
        lambda t: _sub(t, 0, 0).update(prompts=[]),
        "domains[0].subcategories[0].prompts: has 0 entries; give 1 to 3"),
    "too_many_synonyms": (
        lambda t: _sub(t, 0, 0).update(synonyms=["a", "b", "c", "d", "e", "f"]),
        "domains[0].subcategories[0].synonyms: has 6 entries; give 0 to 5"),
    "upper_case_prompt": (
        lambda t: _sub(t, 0, 0).update(prompts=["T-shirt"]),
        "domains[0].subcategories[0].prompts[0]: 'T-shirt' is not lower-case; write 't-shirt'"),
    "key_not_snake": (
        lambda t: _sub(t, 0, 0).update(key="T-Shirt"),
        "domains[0].subcategories[0].key: 'T-Shirt' is not snake_case"),
    "duplicate_id": (
        lambda t: _sub(t, 1, 0).update(id=1),
        "domains[1].subcategories[0].id: id 1 is already used by 'hat'"),
    "duplicate_key": (
        lambda t: _sub(t, 1, 0).update(key="hat"),
        "domains[1].subcategories[0].key: duplicate subcategory key 'hat'"),
    "upper_case_synonym": (
        lambda t: _sub(t, 1, 0).update(synonyms=["Hat"]),
        "domains[1].subcategories[0].synonyms[0]: 'Hat' is not lower-case"),
    "ambiguous_name": (
        lambda t: _sub(t, 1, 0).update(synonyms=["t shirt"]),
        "domains[1].subcategories[0].synonyms[0]: 't shirt' also names subcategory 't_shirt' (its key); "
        "lookup must be unambiguous"),
    "unknown_field": (
        lambda t: _sub(t, 0, 0).update(promts=["x"]),
        "domains[0].subcategories[0].promts: unknown field; did you mean 'prompts'?"),
    "missing_field": (
        lambda t: _sub(t, 0, 0).pop("rigid"),
        "domains[0].subcategories[0].rigid: missing"),
    "version_not_string": (
        lambda t: t.update(version=1.0),
        "version: expected a non-empty string, got 1.0 (float); quote it in the YAML"),
    "duplicate_domain": (
        lambda t: t["domains"][1].update(key="garments"),
        "domains[1].key: duplicate domain key 'garments'"),
    "no_subcategories": (
        lambda t: t["domains"][1].update(subcategories=[]),
        "domains[1].subcategories: expected a non-empty list of subcategories"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_validation_errors_name_file_and_field(tmp_path, case):
    mutate, expected = BAD[case]
    data = small_taxonomy()
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(TaxonomyError) as err:
        load_taxonomy(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {expected}")
    assert "\n" not in message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(TaxonomyError, match=r"nope\.yaml: taxonomy file not found; pass an existing YAML file"):
        load_taxonomy(path)
    with pytest.raises(TaxonomyError, match="is a directory"):
        load_taxonomy(tmp_path)


@pytest.mark.parametrize("text,expected", [
    ("name: x\ndomains: [unclosed\n", "invalid YAML at line 3, column 1"),
    ("name: a\nname: b\n", "invalid YAML at line 2, column 1: duplicate key 'name'"),
    ("- just\n- a list\n", "expected a mapping with name, version, domains, got ['just', 'a list'] (list)"),
    ("", "expected a mapping with name, version, domains, got None (NoneType)"),
])
def test_bad_yaml(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TaxonomyError) as err:
        load_taxonomy(path)
    assert str(err.value).startswith(f"{path}: {expected}")
    assert "\n" not in str(err.value)
