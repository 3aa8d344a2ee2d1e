"""XResNet1d: shapes, stochastic depth schedule, init, determinism, layer ids and a tiny overfit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ecgadapt.errors import ConfigError
from ecgadapt.models import create_model, list_models, model_info
from ecgadapt.models.xresnet1d import XRESNET1D_INPUT_SPEC, XResNet1d

TINY = dict(layers=(1, 1, 1, 1), widths=(8, 8, 8, 8), stem_widths=(8, 8, 16))


def tiny(**kw) -> XResNet1d:
    torch.manual_seed(0)
    return create_model("xresnet1d50", num_classes=kw.pop("num_classes", 3), **{**TINY, **kw})


def test_registered_with_family_and_native_spec():
    assert {"xresnet1d101", "xresnet1d50"} <= set(list_models())
    info = model_info("xresnet1d101")
    assert info.family == "xresnet1d"
    assert info.input_spec == XRESNET1D_INPUT_SPEC
    assert (info.input_spec.sampling_rate, info.input_spec.length) == (100, 250)


def test_xresnet1d101_structure_and_shapes():
    model = create_model("xresnet1d101", num_classes=5).eval()
    assert [len(stage) for stage in model.stages] == [3, 4, 23, 3]
    assert model.num_features == 2 * 64 * 4
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(1.81e6, rel=0.01)
    x = torch.randn(2, 12, 250)
    with torch.no_grad():
        assert model.forward_features(x).shape == (2, 512)
        assert model(x).shape == (2, 5)


def test_image_style_widths_scale_features():
    model = tiny(widths=(8, 16, 32, 64))
    assert model.num_features == 2 * 64 * 4
    assert model.forward_features(torch.randn(2, 12, 100)).shape == (2, 512)


@pytest.mark.parametrize("length", [250, 1000, 99])
def test_any_length_and_pre_logits(length):
    model = tiny().eval()
    x = torch.randn(3, 12, length)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (3, model.num_features)
        assert torch.equal(model.forward_head(feats, pre_logits=True), feats)
        assert model(x).shape == (3, 3)


def test_bad_input_rank_raises_config_error():
    with pytest.raises(ConfigError, match="batch, leads, time"):
        tiny()(torch.randn(12, 250))


def test_unknown_override_raises_config_error():
    with pytest.raises(ConfigError, match="unknown override"):
        create_model("xresnet1d50", num_classes=2, nonsense=1)


def test_reset_classifier_linear_and_fastai_head():
    model = tiny()
    model.reset_classifier(7)
    assert isinstance(model.head, nn.Linear) and model.head.out_features == 7
    assert isinstance(model.head_drop, nn.Dropout)
    model.reset_classifier(0)
    assert model(torch.randn(2, 12, 64)).shape == (2, model.num_features)
    fast = tiny(head_hidden=16, drop_rate=0.5)
    assert isinstance(fast.head_drop, nn.Identity)
    assert [type(m) for m in fast.head] == [
        nn.BatchNorm1d,
        nn.Dropout,
        nn.Linear,
        nn.ReLU,
        nn.BatchNorm1d,
        nn.Dropout,
        nn.Linear,
    ]
    assert fast.head[1].p == 0.25 and fast.head[5].p == 0.5
    fast.reset_classifier(4)
    assert fast.head[-1].out_features == 4 and fast.eval()(torch.randn(2, 12, 64)).shape == (2, 4)


def test_drop_path_schedule_is_linear_across_all_blocks():
    model = create_model("xresnet1d50", num_classes=2, drop_path_rate=0.2)
    rates = model.drop_path_rates()
    assert len(rates) == 16
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)
    steps = [b - a for a, b in zip(rates, rates[1:])]
    assert all(s == pytest.approx(0.2 / 15) for s in steps)


def test_zero_drop_path_is_bit_identical_to_rebuilt_model():
    model = tiny(drop_path_rate=0.0).train()
    clone = tiny(drop_path_rate=0.0).train()
    clone.load_state_dict(model.state_dict())
    x = torch.randn(4, 12, 120)
    assert torch.equal(model(x), clone(x))


def test_drop_path_active_in_train_only():
    model = tiny(drop_path_rate=0.5)
    for m in model.modules():  # make the residual branches matter
        if isinstance(m, nn.BatchNorm1d):
            nn.init.ones_(m.weight)
    x = torch.randn(8, 12, 120)
    model.train()
    torch.manual_seed(1)
    a = model.forward_features(x)
    torch.manual_seed(2)
    b = model.forward_features(x)
    assert not torch.equal(a, b)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_eval_mode_is_deterministic_with_dropout_and_drop_path():
    model = tiny(drop_rate=0.5, drop_path_rate=0.3).eval()
    x = torch.randn(4, 12, 250)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_last_bn_gamma_of_every_block_is_zero():
    model = create_model("xresnet1d50", num_classes=2)
    for stage in model.stages:
        for block in stage:
            assert torch.count_nonzero(block.conv3[1].weight) == 0
            assert torch.all(block.conv1[1].weight == 1) and torch.all(block.conv2[1].weight == 1)
    assert all(torch.all(m[1].weight == 1) for m in model.stem[:3])


def test_shortcut_pools_and_projects_only_when_shape_changes():
    model = tiny()
    first, second = model.stages[0][0], model.stages[1][0]
    assert [type(m).__name__ for m in first.shortcut] == ["ConvBnAct"]  # 16 -> 32 channels, stride 1
    assert [type(m).__name__ for m in second.shortcut] == ["AvgPool1d"]  # 32 -> 32 channels, stride 2
    assert tiny(widths=(8, 16, 8, 8)).stages[1][0].shortcut[0].__class__ is nn.AvgPool1d


def test_layer_ids_stem_blocks_head():
    model = create_model("xresnet1d101", num_classes=2)
    assert model.num_layers() == 34
    assert model.layer_id("stem.0.0.weight") == 0
    assert model.layer_id("stages.0.0.conv1.0.weight") == 1
    assert model.layer_id("stages.1.0.conv1.0.weight") == 4
    assert model.layer_id("stages.2.22.conv3.1.bias") == 30
    assert model.layer_id("stages.3.2.conv3.1.bias") == 33
    assert model.layer_id("head.weight") == 34
    ids = [model.layer_id(n) for n, _ in model.named_parameters()]
    assert ids == sorted(ids) and set(ids) == set(range(35))
    assert model.no_weight_decay() == set()
    with pytest.raises(ConfigError, match="no parameter named"):
        model.layer_id("encoder.weight")


def test_tiny_model_overfits_16_samples():
    model = tiny(num_classes=4).train()
    torch.manual_seed(0)
    x = torch.randn(16, 12, 128)
    y = (torch.rand(16, 4) > 0.5).float()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# -- xresnet1d_tiny: the self-pretrained CNN candidate -----------------------------------------------------


def test_tiny_candidate_is_registered_with_the_per_lead_10s_spec():
    from ecgadapt.models.ecg_vit import ECG_VIT_INPUT_SPEC

    info = model_info("xresnet1d_tiny")
    assert info.family == "xresnet1d" and info.checkpoint_formats == ("ecgadapt",)
    assert info.input_spec == ECG_VIT_INPUT_SPEC  # same corpora and preprocessing as the ViT encoders
    model = create_model("xresnet1d_tiny", num_classes=5)
    assert model.input_spec == info.input_spec and model.num_features == 512
    assert 0.1e6 < sum(p.numel() for p in model.parameters()) < 0.3e6
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 12, 1000)).shape == (2, 5)


def _save_encoder(model: XResNet1d, path, drop: str | None = None, extra: dict | None = None):
    from ecgadapt.pretrain.pretrain import save_encoder

    save_encoder(model, path, "xresnet1d_tiny")
    if drop or extra:
        from safetensors.torch import load_file, save_file

        state = load_file(path)
        state.pop(drop, None)
        save_file({**state, **(extra or {})}, str(path))
    return path


def test_tiny_checkpoint_round_trip_is_exact_and_key_checks_are_strict(tmp_path):
    from ecgadapt.errors import CheckpointError
    from ecgadapt.models.checkpoint import detect_checkpoint

    torch.manual_seed(0)
    trained = create_model("xresnet1d_tiny", num_classes=0)
    with torch.no_grad():  # make BN statistics and the zero-init gammas non-trivial
        for p in trained.parameters():
            p.add_(0.01 * torch.randn_like(p))
        for m in trained.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.normal_()
                m.num_batches_tracked.fill_(7)
    path = _save_encoder(trained, tmp_path / "enc.safetensors")
    loaded = create_model("xresnet1d_tiny", num_classes=3, pretrained=path, drop_rate=0.2, drop_path_rate=0.1)
    ref = trained.state_dict()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in ref.items())  # every key, buffers included
    assert set(loaded.state_dict()) - set(ref) == {"head.weight", "head.bias"}  # only the head is new
    x = torch.randn(2, 12, 1000)
    with torch.no_grad():
        assert torch.equal(loaded.eval().forward_features(x), trained.eval().forward_features(x))
    assert "xresnet1d_tiny" in detect_checkpoint(path).fits
    missing = _save_encoder(trained, tmp_path / "missing.safetensors", drop="stages.0.0.conv1.0.weight")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): stages\.0\.0\.conv1\.0\.weight"):
        create_model("xresnet1d_tiny", num_classes=3, pretrained=missing)
    extra = _save_encoder(trained, tmp_path / "extra.safetensors", extra={"decoder.0.weight": torch.zeros(2)})
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): decoder\.0\.weight"):
        create_model("xresnet1d_tiny", num_classes=3, pretrained=extra)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        create_model("xresnet1d_tiny", num_classes=3, pretrained=path, widths=(32, 32, 64, 32))


def test_tiny_supports_linear_probing_and_stochastic_depth_for_post_training(tmp_path):
    from ecgadapt.engine.stages import reference_model, set_drop_rates, set_train_mode, set_trainable

    path = _save_encoder(create_model("xresnet1d_tiny", num_classes=0), tmp_path / "enc.safetensors")
    model = create_model("xresnet1d_tiny", num_classes=4, pretrained=path)
    trainable = set_trainable(model, "head")  # linear probe: the head only, backbone in eval mode
    assert {id(p) for p in trainable} == {id(p) for p in model.get_classifier().parameters()}
    set_train_mode(model, "head")
    assert not model.stages.training and model.head.training
    assert model.forward_head(model.forward_features(torch.randn(2, 12, 1000)), pre_logits=True).shape == (
        2,
        512,
    )
    set_trainable(model, "all")
    set_drop_rates(model, 0.1, 0.2, reference=reference_model("xresnet1d_tiny", 4, 0.1, 0.2))
    assert model.drop_path_rates() == pytest.approx([0.0, 0.2 / 3, 0.4 / 3, 0.2])  # rising linearly
    assert model.head_drop.p == 0.1
    model.reset_classifier(7)
    assert model(torch.randn(2, 12, 1000)).shape == (2, 7)
