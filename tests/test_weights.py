"""The bundled encoder: present, small, documented, loadable without key surgery, and the default."""

from pathlib import Path

import pytest
import torch

from ecgadapt.models import create_model
from ecgadapt.train.config import build_config
from ecgadapt.weights import BUNDLED, bundled_path


def test_unknown_model_has_no_bundled_checkpoint() -> None:
    assert bundled_path("xresnet1d101") is None


def test_bundled_encoder_is_shipped_small_and_documented() -> None:
    path = bundled_path("ecg_vit_tiny")
    assert path is not None, f"src/ecgadapt/weights/{BUNDLED['ecg_vit_tiny']} is missing"
    assert path.stat().st_size <= 20 * 2**20
    card = path.with_suffix(".md").read_text()
    for heading in ("## Corpus", "## Training", "## Reproduce", "## What it is not", "## Evaluation"):
        assert heading in card, heading
    for figure in ("ecg_vit_tiny_loss.png", "ecg_vit_tiny_reconstruction.png"):
        assert figure in card and (path.parent / figure).is_file(), figure


def test_bundled_encoder_loads_into_create_model_and_changes_features() -> None:
    torch.manual_seed(0)
    random_init = create_model("ecg_vit_tiny", num_classes=5).eval()
    torch.manual_seed(0)
    pretrained = create_model("ecg_vit_tiny", num_classes=5, pretrained=bundled_path("ecg_vit_tiny")).eval()
    x = torch.randn(2, 12, 1000)
    with torch.no_grad():
        assert not torch.allclose(random_init.forward_features(x), pretrained.forward_features(x))
    # the head is new (seeded), the backbone comes from the file
    assert torch.equal(random_init.head.weight, pretrained.head.weight)


def test_default_finetune_starts_from_the_bundled_encoder(tmp_path: Path) -> None:
    cfg = build_config(data__root=str(tmp_path), model__name="ecg_vit_tiny", out=str(tmp_path / "run"))
    assert cfg.model.weights == "bundled"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [({"model__weights": "none"}, None), ({"model__name": "xresnet1d101"}, None)],
)
def test_explicit_none_or_other_model_keeps_random_init(tmp_path: Path, flags: dict, expected: object) -> None:
    cfg = build_config(data__root=str(tmp_path), out=str(tmp_path / "run"), **flags)
    assert cfg.model.weights is expected
