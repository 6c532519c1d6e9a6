"""Siamese image encoder: dilated ResNet trunk, five-way projections and neighbour aggregation.

The trunk is a torchvision ResNet with layer3/layer4 dilated (output stride 8), so ImageNet weights
from torchvision load unchanged. Projections map the taps to MobileNetV2-like shapes, which A2Net's
neighbour aggregation module (NAM) then fuses into four 64-channel maps at strides 4, 8, 16 and 32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet as tv_resnet

from mmchange_core.models.blocks import SpatialGroupEnhance, conv_bn_relu

#: Trunk name -> (block class, blocks per layer, output channels of layer1..layer4).
TRUNK_SPECS: dict[str, tuple[str, list[int], tuple[int, int, int, int]]] = {
    "resnet18": ("basic", [2, 2, 2, 2], (64, 128, 256, 512)),
    "resnet34": ("basic", [3, 4, 6, 3], (64, 128, 256, 512)),
    "resnet50": ("bottleneck", [3, 4, 6, 3], (256, 512, 1024, 2048)),
}
#: Projected channels of the four used taps (A2Net's MobileNetV2 shapes).
PROJECTED_CHANNELS = (24, 32, 96, 320)


class DilatedBasicBlock(tv_resnet.BasicBlock):
    """torchvision BasicBlock that accepts dilation on its first 3x3 conv, as the reference does.

    torchvision refuses dilation in BasicBlock; the reference dilates conv1 only (padding = dilation)
    and keeps conv2 undilated. Parameter shapes equal torchvision's, so ImageNet weights still load.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1,
                 norm_layer: type[nn.Module] | None = None) -> None:
        super().__init__(inplanes, planes, stride, downsample, groups, base_width, 1, norm_layer)
        if dilation > 1:
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=dilation,
                                   dilation=dilation, bias=False)


def build_trunk(name: str, in_channels: int = 3) -> tv_resnet.ResNet:
    """A torchvision ResNet with layer3/layer4 dilated and the classifier removed; ``in_channels`` input bands."""
    if name not in TRUNK_SPECS:
        raise ValueError(f"unknown backbone '{name}'; choose one of {', '.join(TRUNK_SPECS)}")
    kind, layers, _ = TRUNK_SPECS[name]
    block = DilatedBasicBlock if kind == "basic" else tv_resnet.Bottleneck
    trunk = tv_resnet.ResNet(block, layers, replace_stride_with_dilation=[False, True, True])
    del trunk.fc, trunk.avgpool
    if in_channels != 3:
        trunk.conv1 = nn.Conv2d(in_channels, trunk.conv1.out_channels, 7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(trunk.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision's init
    return trunk


def trunk_features(trunk: tv_resnet.ResNet, x: torch.Tensor) -> list[torch.Tensor]:
    """Outputs of layer1..layer4 (strides 4, 8, 8, 8)."""
    x = trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(x))))
    c1 = trunk.layer1(x)
    c2 = trunk.layer2(c1)
    c3 = trunk.layer3(c2)
    c4 = trunk.layer4(c3)
    return [c1, c2, c3, c4]


class FeatureFusion(nn.Module):
    """NAM fusion unit (FFM): two 3x3 convs on the concatenated neighbours plus a 1x1 identity, then SGE."""

    def __init__(self, fuse_ch: int, identity_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv_fuse = nn.Sequential(
            nn.Conv2d(fuse_ch, out_ch, 3, padding=1),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1),
            nn.BatchNorm2d(out_ch),
        )
        self.conv_identity = nn.Conv2d(identity_ch, out_ch, 1)
        self.sge = SpatialGroupEnhance(8)

    def forward(self, fused: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        return self.sge(F.relu(self.conv_fuse(fused) + self.conv_identity(centre)))


def _pool_cbr(in_ch: int, out_ch: int) -> nn.Sequential:
    """2x2 max-pool then CBR (indices match the reference's Sequential)."""
    return nn.Sequential(nn.MaxPool2d(2, 2), *conv_bn_relu(in_ch, out_ch, 3))


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class NeighbourAggregation(nn.Module):
    """A2Net's neighbour aggregation: each scale fuses itself with its finer and coarser neighbours."""

    def __init__(self, in_ch: tuple[int, int, int, int] = PROJECTED_CHANNELS, out_ch: int = 64) -> None:
        super().__init__()
        c2, c3, c4, c5 = in_ch
        mid = out_ch // 2
        self.conv_scale2_c2 = conv_bn_relu(c2, mid)
        self.conv_scale2_c3 = conv_bn_relu(c3, mid)
        self.conv_aggregation_s2 = FeatureFusion(mid * 2, c2, out_ch)
        self.conv_scale3_c2 = _pool_cbr(c2, mid)
        self.conv_scale3_c3 = conv_bn_relu(c3, mid)
        self.conv_scale3_c4 = conv_bn_relu(c4, mid)
        self.conv_aggregation_s3 = FeatureFusion(mid * 3, c3, out_ch)
        self.conv_scale4_c3 = _pool_cbr(c3, mid)
        self.conv_scale4_c4 = conv_bn_relu(c4, mid)
        self.conv_scale4_c5 = conv_bn_relu(c5, mid)
        self.conv_aggregation_s4 = FeatureFusion(mid * 3, c4, out_ch)
        self.conv_scale5_c4 = _pool_cbr(c4, mid)
        self.conv_scale5_c5 = conv_bn_relu(c5, mid)
        self.conv_aggregation_s5 = FeatureFusion(mid * 2, c5, out_ch)

    def forward(self, c2: torch.Tensor, c3: torch.Tensor, c4: torch.Tensor,
                c5: torch.Tensor) -> list[torch.Tensor]:
        s2 = self.conv_aggregation_s2(
            torch.cat([self.conv_scale2_c2(c2), _up2(self.conv_scale2_c3(c3))], 1), c2)
        s3 = self.conv_aggregation_s3(
            torch.cat([self.conv_scale3_c2(c2), self.conv_scale3_c3(c3), _up2(self.conv_scale3_c4(c4))], 1), c3)
        s4 = self.conv_aggregation_s4(
            torch.cat([self.conv_scale4_c3(c3), self.conv_scale4_c4(c4), _up2(self.conv_scale4_c5(c5))], 1), c4)
        s5 = self.conv_aggregation_s5(
            torch.cat([self.conv_scale5_c4(c4), self.conv_scale5_c5(c5)], 1), c5)
        return [s2, s3, s4, s5]


class SiameseEncoder(nn.Module):
    """Shared-weight image encoder: trunk -> projections -> NAM, giving 64@{H/4, H/8, H/16, H/32}."""

    def __init__(self, backbone: str = "resnet50", width: int = 64, *, in_channels: int = 3) -> None:
        super().__init__()
        self.backbone = backbone
        _, _, tap_ch = TRUNK_SPECS[backbone]
        p1, p2, p3, p4 = PROJECTED_CHANNELS
        self.trunk = build_trunk(backbone, in_channels)
        self.proj = nn.ModuleDict({
            "c1": conv_bn_relu(tap_ch[0], p1, 1),
            "c2": conv_bn_relu(tap_ch[1], p2, 1),
            "c3": conv_bn_relu(tap_ch[2], p3, 3, stride=2, padding=1),
            "c4": conv_bn_relu(tap_ch[3], p4, 5, stride=4, padding=2),
        })
        self.aggregation = NeighbourAggregation(PROJECTED_CHANNELS, width)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = trunk_features(self.trunk, x)
        projected = [self.proj[f"c{i + 1}"](t) for i, t in enumerate(taps)]
        return self.aggregation(*projected)
