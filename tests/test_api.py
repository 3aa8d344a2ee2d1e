"""The package root's public API: every exported name resolves, and importing the package stays light."""

from __future__ import annotations

import subprocess
import sys

import ecgadapt


def test_every_public_name_resolves() -> None:
    for name in ecgadapt.__all__:
        assert getattr(ecgadapt, name) is not None, name
    assert set(ecgadapt.__all__) <= set(dir(ecgadapt))


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, ecgadapt; ecgadapt.LEADS; ecgadapt.__version__; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
