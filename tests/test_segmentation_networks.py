"""The study's networks and the small default network: shapes, settings, local ImageNet weights."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from napari_vbmd.errors import VbmdError
from napari_vbmd.segmentation.networks import (
    SmallUNet2D,
    UNet3D,
    build_network,
    count_parameters,
    unet2d_resnet34,
)

torch.set_num_threads(1)


def test_unet2d_resnet34_matches_the_study():
    model = unet2d_resnet34()
    assert model.encoder.conv1.in_channels == 1
    decoder_out = [block.conv2[0].out_channels for block in model.decoder.blocks]
    assert decoder_out == [256, 128, 64, 32, 16]
    assert len(model.encoder.out_channels) == 6  # depth 5 (+ the input)
    with torch.no_grad():
        out = model.eval()(torch.zeros(1, 1, 64, 64))
    assert out.shape == (1, 1, 64, 64)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_resnet34_encoder_from_a_local_imagenet_file(tmp_path, suffix):
    import torchvision

    reference = torchvision.models.resnet34(weights=None)  # stands in for the ImageNet file
    state = reference.state_dict()
    path = tmp_path / f"resnet34{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = build_network("unet2d_resnet34", encoder_weights_path=str(path))
    expected_conv1 = state["conv1.weight"].sum(dim=1, keepdim=True)  # smp's RGB -> grey rule
    assert torch.allclose(model.encoder.conv1.weight, expected_conv1)
    assert torch.equal(model.encoder.layer3[2].conv1.weight, state["layer3.2.conv1.weight"])


def test_encoder_weights_that_are_not_resnet34_are_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "bogus": torch.zeros(3)}, path)
    with pytest.raises(VbmdError, match="other.pth"):
        unet2d_resnet34(encoder_weights_path=path)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a weights file")
    with pytest.raises(VbmdError, match="garbage.pth"):
        unet2d_resnet34(encoder_weights_path=garbage)


def test_unet3d_isensee_settings():
    model = UNet3D()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    stage_channels = [model.stem.out_channels] + [d.out_channels for d in model.downsample]
    assert stage_channels == [2, 4, 8, 16, 32]
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout3d)]
    assert len(dropouts) == 1 and dropouts[0].p == pytest.approx(0.6)
    assert dropouts[0] in list(model.context[0].modules())
    assert any(isinstance(m, nn.LeakyReLU) for m in model.modules())
    assert any(isinstance(m, nn.InstanceNorm3d) for m in model.modules())
    assert not any(isinstance(m, (nn.ReLU, nn.BatchNorm3d)) for m in model.modules())
    assert len(convs) > 10
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 1, 16, 32, 32))
    assert out.shape == (1, 1, 16, 32, 32)


def test_small_unet_is_small_and_keeps_shape():
    model = SmallUNet2D()
    assert 300_000 <= count_parameters(model) <= 1_500_000
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 1, 40, 56))
    assert out.shape == (2, 1, 40, 56)


def test_unknown_architecture_and_bad_settings():
    with pytest.raises(VbmdError, match="unknown network architecture"):
        build_network("vnet")
    with pytest.raises(VbmdError, match="bad settings"):
        build_network("unet2d_small", colour=3)
