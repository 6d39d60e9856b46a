"""A newcomer's first hour (issue 21, items 8-12): help that explains itself, errors that name what exists, and
commands that say what they did and what comes next."""

from __future__ import annotations

import argparse
import re

import pytest

from unieditkit.cli import RESUMABLE, main, make_parser


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = make_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _unset(default: object) -> bool:
    return default is None or default is False or default == "" or default == [] or default is argparse.SUPPRESS


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_option_of_every_subcommand_has_help_showing_its_default_and_no_raw_markup(command):
    parser = _subcommands()[command]
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flag = "/".join(action.option_strings) or action.dest
        assert action.help, f"unieditkit {command} {flag}: no help text"
        if action.option_strings and not _unset(action.default):
            shown = parser._get_formatter()._expand_help(action)  # the help text as --help prints it
            assert "default" in shown.lower(), f"unieditkit {command} {flag}: help does not show its default"
    for markup in ("``", "**", ":mod:`", ":func:`", ":class:`"):
        assert markup not in text, f"unieditkit {command} --help shows raw markup {markup!r}"
    assert not re.search(r"::\s*$", text, re.M), f"unieditkit {command} --help shows a raw '::'"


def test_a_value_of_the_wrong_type_is_worded_in_english(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["build", "--domain", "garments", "--seed", "x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == "unieditkit build: error: argument --seed: 'x' is not an integer, e.g. 3"
    with pytest.raises(SystemExit):
        main(["build", "--domain", "garments", "--box-threshold", "high"])
    assert "argument --box-threshold: 'high' is not a number, e.g. 0.5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--max-steps", "1.5"])
    assert "argument --max-steps: '1.5' is not an integer" in capsys.readouterr().err


@pytest.mark.parametrize("command, argv, module, func", [
    ("train", ["--data", "d", "--out", "r"], "unieditkit.training.cli", "run_command"),
    ("eval", ["--pred", "p", "--data", "d"], "unieditkit.evaluate", "run"),
    ("edit", ["--checkpoint", "r", "--out", "o.png"], "unieditkit.training.edit", "run_command"),
])
def test_ctrl_c_says_re_run_to_resume_only_where_a_re_run_resumes(command, argv, module, func, monkeypatch, capsys):
    import importlib

    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(module), func, interrupted)
    assert main([command, *argv]) == 130
    err = capsys.readouterr().err.strip()
    if command in RESUMABLE:
        assert err == f"unieditkit {command}: interrupted; re-run the same command to resume"
    else:
        assert err == f"unieditkit {command}: interrupted"


@pytest.mark.parametrize("text, message", [
    ("train: {max_step: 5}\n", "unknown key 'train.max_step' (did you mean 'max_steps'? valid here: run_dir,"),
    ("trian: {}\n", "unknown key 'trian' (did you mean 'train'? valid here: model,"),
    ("model: {zzz: 1}\n", "unknown key 'model.zzz' (valid here: backbone,"),
])
def test_a_misspelt_training_config_key_gets_did_you_mean(tmp_path, text, message):
    from unieditkit.training.config import load_config
    from unieditkit.errors import UserError

    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: {message}")


@pytest.mark.slow
def test_the_build_summary_lists_the_splits_it_wrote_and_says_which_is_missing(tmp_path, ray_local):
    """The bundled `animals` sample is small enough to draw no test split, which `edit` and `eval` read by default:
    the summary says so, on the first build and on a re-run that finds every shard done."""
    from unieditkit.pipelines.build import build
    from unieditkit.pipelines.config import BuildConfig

    config = BuildConfig(domain="animals", out_dir=str(tmp_path / "out"), progress=False)
    for _ in range(2):
        lines = build(config).lines()
        assert lines[1] == ("splits: train 34 samples, val 2 samples; no test split (`unieditkit edit --data` and "
                            "`eval` read --split test unless told otherwise: pass --split val)")
