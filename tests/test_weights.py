"""The bundled encoder: present, small, documented, loadable without key surgery, and the default."""

from pathlib import Path

import pytest
import torch

from ecgadapt.models import create_model
from ecgadapt.train.config import build_config
from ecgadapt.weights import BUNDLED, DEFAULT_MODEL, bundled_path


def test_unknown_model_has_no_bundled_checkpoint() -> None:
    assert bundled_path("xresnet1d101") is None


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_encoder_is_shipped_small_and_documented(name: str) -> None:
    path = bundled_path(name)
    assert path is not None, f"src/ecgadapt/weights/{BUNDLED[name]} is missing"
    assert path.stat().st_size <= 20 * 2**20
    card = path.with_suffix(".md").read_text()
    for heading in ("## Corpus", "## Training", "## Reproduce", "## What it is not", "## Evaluation"):
        assert heading in card, heading
    for figure in (f"{name}_loss.png", f"{name}_reconstruction.png"):
        assert figure in card and (path.parent / figure).is_file(), figure


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_encoder_loads_into_create_model_and_changes_features(name: str) -> None:
    torch.manual_seed(0)
    random_init = create_model(name, num_classes=5).eval()
    torch.manual_seed(0)
    pretrained = create_model(name, num_classes=5, pretrained=bundled_path(name)).eval()
    x = torch.randn(2, 12, 1000)
    with torch.no_grad():
        assert not torch.allclose(random_init.forward_features(x), pretrained.forward_features(x))
    # the head is new (seeded), the backbone comes from the file
    assert torch.equal(random_init.get_classifier().weight, pretrained.get_classifier().weight)


def test_the_default_model_is_the_bundled_small_cnn_and_its_card_names_the_file_it_describes() -> None:
    import hashlib

    assert DEFAULT_MODEL == "xresnet1d_small" and build_config().model.name == DEFAULT_MODEL
    path = bundled_path(DEFAULT_MODEL)
    assert hashlib.sha256(path.read_bytes()).hexdigest() in path.with_suffix(".md").read_text()


@pytest.mark.parametrize("flags", [{}, {"model__name": "ecg_vit_tiny"}])
def test_default_finetune_starts_from_the_bundled_encoder(tmp_path: Path, flags: dict) -> None:
    cfg = build_config(data__root=str(tmp_path), out=str(tmp_path / "run"), **flags)
    assert cfg.model.weights == "bundled"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [({"model__weights": "none"}, None), ({"model__name": "xresnet1d101"}, None)],
)
def test_explicit_none_or_other_model_keeps_random_init(
    tmp_path: Path, flags: dict, expected: object
) -> None:
    cfg = build_config(data__root=str(tmp_path), out=str(tmp_path / "run"), **flags)
    assert cfg.model.weights is expected


def test_candidates_card_says_what_each_encoder_saw_and_warns_about_fold_10(shared: Path) -> None:
    card = (Path(bundled_path("ecg_vit_tiny")).parent / "candidates.md").read_text()
    assert "## What each encoder has seen" in card
    assert "The real records come from the full PTB-XL and may include some of its fold 10" in card
    for name in ("ecg_vit_tiny_p50", "xresnet1d_tiny", "ptbxl-unlabelled-1785"):
        assert name in card, name
    ids_file = shared / "data" / "ptbxl-unlabelled-1785" / "ecg_ids.csv"
    if not ids_file.is_file():
        pytest.skip(f"{ids_file} not found")
    ids = ids_file.read_text().split()[1:]
    assert len(ids) == 1785 and ", ".join(ids) in card  # every ecg_id, in row order


def test_the_default_encoder_saw_no_validation_or_test_record_of_ptbxl_2285(
    shared: Path, tmp_path: Path
) -> None:
    """Issue 19: the shipped default was pretrained on ptbxl-2285's folds 1-8 only (records and patients)."""
    from ecgadapt.data.cache import load_or_prepare
    from ecgadapt.runs.hashing import file_sha256
    from ecgadapt.train.config import DataConfig
    from ecgadapt.train.finetune import pretraining_overlap

    root = shared / "data" / "ptbxl-2285"
    if not (root / "ptbxl_database.csv").is_file():
        pytest.skip(f"{root} not found")
    path = bundled_path(DEFAULT_MODEL)
    cache = load_or_prepare(root, 100, cache_dir=tmp_path / "cache", progress=False)
    data = DataConfig(root=str(root), rate=100)
    overlap = pretraining_overlap(cache, data, file_sha256(path), path)
    assert overlap["val"] == 0 and overlap["test"] == 0
    assert overlap["train"] == 1773  # every record of folds 1-8, as its card says
    assert overlap["same_patient"]["val"] == 0 and overlap["same_patient"]["test"] == 0
    assert overlap["n_unidentified"] == {"train": 0, "val": 0, "test": 0} and overlap["unknown"] == []
