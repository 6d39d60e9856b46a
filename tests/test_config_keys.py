"""The --config YAML: every output setting settable, every unknown key a one-line error, settings fingerprinted."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from unieditkit.pipelines.cli import output_settings
from unieditkit.pipelines.config import OutputSettings, StageResources, load_config_file, settable_keys
from unieditkit.cli import main, make_parser
from unieditkit.errors import UserError

README = Path(__file__).resolve().parents[1] / "README.md"


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "build.yaml"
    path.write_text(text)
    return path


def _args(*argv: str):
    return make_parser().parse_args(["build", "--domain", "garments", *argv])


def test_every_output_setting_is_read_from_the_file(tmp_path):
    (tmp_path / "eval").mkdir()
    values = {
        "seed": 7, "split_ratios": [0.8, 0.1, 0.1], "units_per_shard": 3, "max_side": 512, "ref_size": 256,
        "min_area_frac": 0.01, "max_area_frac": 0.7, "min_box_side": 20, "augment_self_pairs": False,
        "min_detector_score": 0.4, "min_category_score": 0.2, "min_sharpness": 9, "max_aspect": 4.0,
        "min_main_component": 0.5, "dedupe_hamming": 2, "min_match_similarity": 0.5, "box_threshold": 0.3,
        "text_threshold": 0.2, "max_objects": 5, "top_k": 4, "against": ["eval"], "eval_overlap_hamming": 3,
    }
    path = _config(tmp_path, json.dumps({"settings": values, "stages": {"segment": {"batch_size": 4, "num_gpus": 0.5}}}))
    file = load_config_file(str(path))
    assert file.resources == {"segment": StageResources(batch_size=4, num_gpus=0.5)}
    settings = output_settings(_args("--config", str(path)), file)
    defaults = OutputSettings()
    for key, value in values.items():
        got = getattr(settings, key)
        assert got != getattr(defaults, key), key
        if key == "against":
            assert got == (str(tmp_path / "eval"),)  # relative to the config file
        else:
            assert got == (tuple(value) if isinstance(value, list) else value), key
    assert isinstance(settings.min_sharpness, float)


def test_flags_given_on_the_command_line_win_over_the_file(tmp_path):
    path = _config(tmp_path, "settings:\n  box_threshold: 0.3\n  seed: 5\n  min_sharpness: 2.5\n")
    args = _args("--config", str(path), "--box-threshold", "0.6", "--no-augment")
    settings = output_settings(args, load_config_file(str(path)))
    assert (settings.box_threshold, settings.seed, settings.min_sharpness, settings.augment_self_pairs) == (0.6, 5, 2.5, False)


@pytest.mark.parametrize(
    "text, message",
    [
        ("thresholds:\n  min_sharpness: 3\n", r"build.yaml: thresholds: unknown key; use stages, settings"),
        ("settings:\n  min_sharpnes: 3\n", r"build.yaml: settings.min_sharpnes: unknown setting; did you mean 'min_sharpness'\? use seed, "),
        ("setings:\n  min_sharpness: 3\n", r"build.yaml: setings: unknown key; did you mean 'settings'\? use stages, settings"),
        ("settings:\n  max_objects: 2.5\n", r"build.yaml: settings.max_objects: 2.5 is not an integer"),
        ("settings:\n  min_sharpness: high\n", r"build.yaml: settings.min_sharpness: 'high' is not a number"),
        ("settings:\n  augment_self_pairs: 1\n", r"build.yaml: settings.augment_self_pairs: 1 is not true or false"),
        ("settings:\n  against: eval\n", r"build.yaml: settings.against: expected a list"),
        ("settings: [1, 2]\n", r"build.yaml: 'settings' must map setting names to values"),
        ("stages:\n  detect: {gpus: 1}\n", r"build.yaml: stages.detect.gpus: unknown setting; did you mean 'num_gpus'\? use batch_size"),
        ("stages:\n  paint: {}\n", r"build.yaml: stages.paint: unknown stage; use detect"),
        ("stages:\n  detect: {batch_size: many}\n", r"build.yaml: stages.detect.batch_size: 'many' is not an integer"),
        ("- a\n- b\n", r"build.yaml: expected a mapping"),
        ("settings: {a: [}\n", r"--config .*build.yaml: cannot read YAML"),
    ],
)
def test_bad_keys_and_values_are_one_line_errors_naming_file_and_key(tmp_path, text, message):
    path = _config(tmp_path, text)
    with pytest.raises(UserError, match=message) as err:
        load_config_file(str(path))
    assert "\n" not in str(err.value)


def test_out_of_range_settings_are_refused(tmp_path):
    path = _config(tmp_path, "settings:\n  box_threshold: 1.5\n")
    with pytest.raises(UserError, match=r"box_threshold 1.5: must lie in \[0, 1\]"):
        output_settings(_args("--config", str(path)), load_config_file(str(path)))
    with pytest.raises(UserError, match="--against .*nowhere: not a folder"):
        OutputSettings(against=(str(tmp_path / "nowhere"),))


def test_cli_reports_an_unknown_key_in_one_line(tmp_path, capsys):
    path = _config(tmp_path, "settings:\n  top_kk: 2\n")
    assert main(["build", "--domain", "garments", "--out", str(tmp_path / "out"), "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: settings.top_kk: unknown setting" in err
    assert not (tmp_path / "out").exists()


def test_every_settable_key_is_documented_in_the_readme():
    text = README.read_text()
    section = text[text.index("### Build settings"):]
    section = section[: section.index("\n## ")]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.M))
    assert set(settable_keys()) - documented == set(), "document these --config settings in README 'Build settings'"
    assert documented - set(settable_keys()) == set(), "README documents settings that do not exist"


def test_settings_that_change_the_output_are_in_the_fingerprint(tmp_path):
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    (eval_dir / "a.png").write_bytes(b"x" * 10)
    base = OutputSettings(against=(str(eval_dir),)).to_json()
    assert set(base) == {f.name for f in dataclasses.fields(OutputSettings)}
    for change in ({"box_threshold": 0.5}, {"max_objects": 1}, {"top_k": 5}, {"eval_overlap_hamming": 1}):
        assert OutputSettings(against=(str(eval_dir),), **change).to_json() != base, change
    (eval_dir / "b.png").write_bytes(b"y" * 10)  # a changed evaluation set changes it too
    assert OutputSettings(against=(str(eval_dir),)).to_json() != base
