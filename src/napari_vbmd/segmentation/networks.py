"""The segmentation networks: the study's 2D U-Net (ResNet34 encoder) and 3D U-Net, and a small
2D U-Net for the bundled default model.

Every network maps a (batch, channels, ...) tensor of z-scored densities to one logit per voxel.
Architectures are looked up by name in :data:`ARCHITECTURES`, so a checkpoint can say which one
its weights belong to (see :mod:`.checkpoint`).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import VbmdError
from .architectures import ARCHITECTURE_DIMS

# -- 2D U-Net with a ResNet34 encoder (the study's 2D configuration) ---------------------------------

RESNET34_DECODER_CHANNELS = (256, 128, 64, 32, 16)


def unet2d_resnet34(
    in_channels: int = 1,
    encoder_weights_path: str | Path | None = None,
    imagenet_online: bool = False,
) -> nn.Module:
    """segmentation_models_pytorch U-Net, ResNet34 encoder, depth 5, decoder 256/128/64/32/16.

    ``encoder_weights_path``: a torchvision ``resnet34`` state dict (``.pth`` or ``.safetensors``) for
    sites without internet; its first convolution is adapted to ``in_channels`` the way
    segmentation_models_pytorch does it (RGB kernels summed for one channel). ``imagenet_online``
    asks the library to download the ImageNet encoder itself; it is never done implicitly.
    """
    import segmentation_models_pytorch as smp

    if encoder_weights_path is not None and imagenet_online:
        raise VbmdError("give either a local encoder weights file or imagenet_online, not both")
    model = smp.Unet(
        encoder_name="resnet34",
        encoder_depth=5,
        encoder_weights="imagenet" if imagenet_online else None,
        decoder_channels=RESNET34_DECODER_CHANNELS,
        in_channels=in_channels,
        classes=1,
        activation=None,
    )
    if encoder_weights_path is not None:
        load_resnet34_encoder_weights(model.encoder, encoder_weights_path, in_channels)
    return model


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise VbmdError("encoder weights file not found", path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        # weights_only=True: tensors only, never arbitrary pickled objects
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or not a weights file
        raise VbmdError(f"cannot read encoder weights ({type(exc).__name__}: {exc})", path) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VbmdError("not a state dict of tensors", path)
    return state


def load_resnet34_encoder_weights(encoder: nn.Module, path: str | Path, in_channels: int = 1) -> None:
    """Load torchvision ResNet34 weights (ImageNet) into an smp ResNet34 encoder, in place."""
    path = Path(path)
    state = {k: v for k, v in _read_state_dict(path).items() if not k.startswith("fc.")}
    conv1 = state.get("conv1.weight")
    if conv1 is None or conv1.ndim != 4 or conv1.shape[0] != 64:
        raise VbmdError("not a ResNet34 state dict (no 64-channel conv1.weight)", path)
    if conv1.shape[1] != in_channels:
        if conv1.shape[1] != 3:
            raise VbmdError(f"first convolution has {conv1.shape[1]} input channels; expected 3 or {in_channels}", path)
        if in_channels == 1:
            conv1 = conv1.sum(dim=1, keepdim=True)
        else:  # smp's rule: cycle the RGB kernels and rescale
            conv1 = torch.stack([conv1[:, i % 3] for i in range(in_channels)], dim=1) * (3.0 / in_channels)
        state["conv1.weight"] = conv1
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong_shape:
        detail = (missing[:2] and f"missing {missing[:2]}") or (unexpected[:2] and f"unexpected {unexpected[:2]}") or (
            f"wrong shape {wrong_shape[:2]}"
        )
        raise VbmdError(f"weights do not fit a ResNet34 encoder ({detail})", path)
    encoder.load_state_dict(state, strict=True)


# -- Small 2D U-Net (the bundled default) -----------------------------------------------------------


def _norm2d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    raise VbmdError(f"unknown normalisation {kind!r}; use 'batch' or 'instance'")


class _DoubleConv2d(nn.Sequential):
    def __init__(self, cin: int, cout: int, norm: str = "batch"):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            _norm2d(norm, cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            _norm2d(norm, cout),
            nn.ReLU(inplace=True),
        )


class SmallUNet2D(nn.Module):
    """A plain U-Net: ``depth`` resolutions, ``base`` channels doubling per level (max 8x).

    ``norm="instance"`` normalises each slice by its own statistics, so a network behaves the same in
    training and inference whatever the batch holds (with ``"batch"``, running statistics gathered on
    padded, augmented training patches can differ badly from those of whole slices at inference).
    """

    def __init__(self, in_channels: int = 1, base: int = 16, depth: int = 4, norm: str = "batch"):
        super().__init__()
        if depth < 2:
            raise VbmdError("SmallUNet2D needs depth >= 2")
        channels = [base * 2 ** min(i, 3) for i in range(depth)]
        self.down = nn.ModuleList()
        cin = in_channels
        for c in channels:
            self.down.append(_DoubleConv2d(cin, c, norm))
            cin = c
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for level in range(depth - 1, 0, -1):
            self.up.append(nn.ConvTranspose2d(channels[level], channels[level - 1], 2, stride=2))
            self.merge.append(_DoubleConv2d(2 * channels[level - 1], channels[level - 1], norm))
        self.head = nn.Conv2d(channels[0], 1, 1)
        self.multiple = 2 ** (depth - 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


# -- 3D U-Net, Isensee et al. 2017 style (the study's 3D configuration) ----------------------------


def _norm_act3d(channels: int) -> list[nn.Module]:
    return [nn.InstanceNorm3d(channels, affine=True), nn.LeakyReLU(0.01, inplace=True)]


class _ContextModule(nn.Module):
    """Pre-activation residual block: (norm, act, conv) -> dropout -> (norm, act, conv), plus input."""

    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            *_norm_act3d(channels),
            nn.Conv3d(channels, channels, 3, padding=1),
            nn.Dropout3d(dropout) if dropout > 0 else nn.Identity(),
            *_norm_act3d(channels),
            nn.Conv3d(channels, channels, 3, padding=1),
        )

    def forward(self, x):
        return x + self.body(x)


class UNet3D(nn.Module):
    """Isensee-style 3D U-Net: depth 5, ``base`` channels doubling per stage, LeakyReLU, instance
    norm, dropout ``first_stage_dropout`` (study: 0.6) in the first stage only, strided-convolution
    downsampling, upsample + convolution in the localisation path, deep supervision summed into the
    full-resolution output."""

    def __init__(self, in_channels: int = 1, base: int = 2, depth: int = 5, first_stage_dropout: float = 0.6):
        super().__init__()
        channels = [base * 2**i for i in range(depth)]
        self.multiple = 2 ** (depth - 1)
        self.stem = nn.Conv3d(in_channels, channels[0], 3, padding=1)
        self.context = nn.ModuleList([_ContextModule(channels[0], first_stage_dropout)])
        self.downsample = nn.ModuleList()
        for i in range(1, depth):
            self.downsample.append(nn.Conv3d(channels[i - 1], channels[i], 3, stride=2, padding=1))
            self.context.append(_ContextModule(channels[i], 0.0))
        self.upsample = nn.ModuleList()
        self.localise = nn.ModuleList()
        self.supervise = nn.ModuleList()
        for i in range(depth - 1, 0, -1):
            self.upsample.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False),
                    nn.Conv3d(channels[i], channels[i - 1], 3, padding=1),
                    *_norm_act3d(channels[i - 1]),
                )
            )
            out = channels[i - 1]
            self.localise.append(
                nn.Sequential(
                    nn.Conv3d(2 * out, 2 * out, 3, padding=1),
                    *_norm_act3d(2 * out),
                    nn.Conv3d(2 * out, out, 1),
                    *_norm_act3d(out),
                )
            )
            self.supervise.append(nn.Conv3d(out, 1, 1))

    def forward(self, x):
        skips = []
        x = self.context[0](self.stem(x))
        skips.append(x)
        for down, context in zip(self.downsample, self.context[1:]):
            x = context(down(x))
            skips.append(x)
        skips.pop()
        logits = None
        for up, localise, supervise in zip(self.upsample, self.localise, self.supervise):
            x = localise(torch.cat([skips.pop(), up(x)], dim=1))
            level = supervise(x)
            if logits is not None:
                logits = nn.functional.interpolate(logits, size=level.shape[2:], mode="trilinear", align_corners=False)
                level = level + logits
            logits = level
        return logits


# -- registry ----------------------------------------------------------------------------------------

#: name -> (builder, dimensionality). Builders take the keyword arguments a checkpoint stores.
ARCHITECTURES: dict[str, tuple] = {
    "unet2d_resnet34": (unet2d_resnet34, ARCHITECTURE_DIMS["unet2d_resnet34"]),
    "unet2d_small": (SmallUNet2D, ARCHITECTURE_DIMS["unet2d_small"]),
    "unet3d_isensee": (UNet3D, ARCHITECTURE_DIMS["unet3d_isensee"]),
}
assert set(ARCHITECTURES) == set(ARCHITECTURE_DIMS)


class MeanProbabilityEnsemble(nn.Module):
    """Networks of one architecture trained apart (other seeds), answering together: the output is
    the logit of their mean probability, so it drops in wherever one network's logits are used."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if len(members) < 2:
            raise VbmdError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.multiple = max(int(getattr(m, "multiple", 16)) for m in members)

    def forward(self, x):
        probability = torch.sigmoid(self.members[0](x).float())
        for member in self.members[1:]:
            probability = probability + torch.sigmoid(member(x).float())
        return torch.logit(probability / len(self.members), eps=1e-6)


def build_network(architecture: str, **kwargs) -> nn.Module:
    """The network of ``architecture`` built with ``kwargs``; ``members=k`` (k >= 2) builds an
    ensemble of k such networks (:class:`MeanProbabilityEnsemble`)."""
    if architecture not in ARCHITECTURES:
        raise VbmdError(
            f"unknown network architecture {architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        )
    builder, _ = ARCHITECTURES[architecture]
    members = kwargs.pop("members", 1)
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise VbmdError(f"bad settings for {architecture}: members must be a whole number >= 1, got {members!r}")
    try:
        networks = [builder(**kwargs) for _ in range(members)]
    except TypeError as exc:
        raise VbmdError(f"bad settings for {architecture}: {exc}") from None
    return networks[0] if members == 1 else MeanProbabilityEnsemble(networks)


def size_multiple(model: nn.Module, architecture: str) -> int:
    """Input sizes must be a multiple of this (downsampling steps)."""
    if architecture == "unet2d_resnet34":
        return 32
    return int(getattr(model, "multiple", 16))


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))
