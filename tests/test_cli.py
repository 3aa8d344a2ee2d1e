"""The CLI frame: help, version, error reporting, and flags that read the same in every command."""

import argparse
import re

import pytest

from ecgadapt import __version__
from ecgadapt.cli import build_parser, main


def test_version_flag_prints_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_every_command_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert "demo" in sub.choices
    for name, p in sub.choices.items():
        assert p.format_help(), name


def _subparser(*names: str) -> argparse.ArgumentParser:
    """The parser of ``ecgadapt NAME [NAME ...]``."""
    parser = build_parser()
    for name in names:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


@pytest.mark.parametrize(
    "argv, dest",
    [
        (["data", "stats", "{flag}", "D", "--task", "rhythm"], "data"),
        (["prepare", "folder", "{flag}", "D"], "data"),
        (["prepare", "ptbxl", "{flag}", "D", "--rate", "100"], "data"),
    ],
)
def test_datasets_are_given_with_data_and_the_old_root_still_works_unlisted(argv, dest) -> None:
    new = build_parser().parse_args([a.replace("{flag}", "--data") for a in argv])
    old = build_parser().parse_args([a.replace("{flag}", "--root") for a in argv])
    assert getattr(new, dest) == getattr(old, dest) == "D"
    help_text = _subparser(*argv[:2]).format_help()
    assert "--data DIR" in help_text and "--root" not in help_text
    with pytest.raises(SystemExit):  # still required, under its one listed name
        build_parser().parse_args(argv[:2] + ["--task", "rhythm"] if argv[0] == "data" else argv[:2])


def test_run_tools_take_the_run_directory_first_and_predict_keeps_run_unlisted() -> None:
    for command in ("evaluate", "predict", "calibrate", "robustness"):
        positionals = [a.dest for a in _subparser(command)._actions if not a.option_strings]
        assert positionals[0] in ("run_dir", "run_dirs"), command
    args = build_parser().parse_args(["predict", "RUN", "a.hea", "b.npy"])
    assert (args.run_dir, args.inputs, args.run) == ("RUN", ["a.hea", "b.npy"], None)
    old = build_parser().parse_args(["predict", "--run", "RUN", "a.hea"])
    assert old.run == "RUN" and [old.run_dir, *old.inputs] == ["a.hea"]  # the handler reads it this way
    assert "--run" not in _subparser("predict").format_help()


def test_predict_without_an_input_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["predict", "RUN"])
    assert exc.value.code == 2 and "INPUT" in capsys.readouterr().err


def test_shared_flags_read_the_same_everywhere_with_their_defaults() -> None:
    for command in ("finetune", "evaluate", "benchmark"):
        text = " ".join(_subparser(command).format_help().split())
        assert "a folder of WFDB records labelled by a CSV" in text and "PTB-XL-layout" not in text, command
        assert "layout of --data: ptbxl, cinc" in text and "labels CSV record,labels[,fold]" in text, command
    for command in ("finetune", "evaluate", "predict", "robustness", "pretrain"):
        text = " ".join(_subparser(command).format_help().split())
        assert "auto (CUDA if available), cpu, cuda or cuda:N (default: auto)" in text, command
    evaluate = " ".join(_subparser("evaluate").format_help().split())
    assert "(default: folder)" in evaluate and "(default: test)" in evaluate


def test_finetune_help_shows_the_configs_defaults() -> None:
    from ecgadapt.runs.hashing import flat_config
    from ecgadapt.train.config import FinetuneConfig

    defaults = flat_config(FinetuneConfig().to_dict())
    defaults["recipe"] = defaults.pop("recipe.name")
    shown = 0
    for action in _subparser("finetune")._actions:
        key = action.dest.replace("__", ".")
        match = re.search(r"\(default: ([^)]+)\)$", action.help or "")
        if key in defaults and match and defaults[key] is not None:
            assert match.group(1) == str(defaults[key]), action.dest
            shown += 1
    assert (
        shown == 11
    )  # task, model, recipe, fraction, seed, rate, source, batch size, workers, device, windows


@pytest.mark.parametrize(
    "argv",
    [
        ["benchmark", "--spec", "SPEC.yaml", "--data", "DATA", "--out", "OUT"],
        ["finetune", "--data", "DATA", "--out", "OUT", "--epochs", "1", "--tune", "lr=1e-4,1e-3"],
    ],
)
def test_commands_that_train_several_runs_refuse_torchrun(argv, tmp_path, monkeypatch, capsys) -> None:
    """torchrun would start one whole grid per process: one clear error, and nothing written."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "without torchrun" in err and "WORLD_SIZE=2" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
