"""``python -m ecgadapt`` runs the command line (what ``torchrun ... -m ecgadapt finetune`` starts)."""

from __future__ import annotations

import runpy
import sys

import pytest

from ecgadapt import __version__


def test_python_m_ecgadapt_is_the_command_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["ecgadapt", "--version"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_module("ecgadapt", run_name="__main__")
    assert stop.value.code == 0 and __version__ in capsys.readouterr().out
