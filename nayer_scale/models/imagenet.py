"""torchvision-compatible ImageNet classifiers: ResNet-18/34/50 and MobileNetV2.

- ``tv_resnet18``, ``tv_resnet34``, ``tv_resnet50`` (:class:`ImageNetResNet`): He et al., "Deep Residual
  Learning for Image Recognition", CVPR 2016: 7x7 stride-2 stem, 3x3 stride-2 max-pool, four stages
  of 64/128/256/512 base channels, BasicBlocks (18/34) or Bottlenecks with expansion 4 (50), the
  stride on the 3x3 conv of a Bottleneck ("ResNet v1.5", as in torchvision), a 1x1 conv + BN
  projection where the shape changes, global average pooling, ``fc``.
- ``tv_mobilenet_v2`` (:class:`MobileNetV2`): Sandler et al., "MobileNetV2: Inverted Residuals and
  Linear Bottlenecks", CVPR 2018, width multiplier 1.0: ReLU6, inverted residual blocks with linear
  bottlenecks, a 1280-channel last conv, ``classifier = Sequential(Dropout(0.2), Linear)``.

Module and state_dict key names are IDENTICAL to torchvision's ``torchvision.models.resnet18/34/50``
and ``mobilenet_v2`` (``conv1.weight``, ``bn1.running_mean``, ``layer1.0.downsample.0.weight``,
``fc.weight``, ``features.0.0.weight``, ``features.1.conv.0.0.weight``, ``classifier.1.weight``, ...,
``num_batches_tracked`` included), so torchvision ``IMAGENET1K_V1`` / ``IMAGENET1K_V2`` .pth files and
timm ``resnet50.tv_in1k``-style safetensors load with ``load_state_dict(strict=True)``, without
torchvision or timm installed. Weight initialisation is torchvision's (Kaiming-normal fan_out
convs, BatchNorm weight 1 / bias 0; MobileNetV2 Linear N(0, 0.01) with zero bias; the ResNet ``fc``
keeps PyTorch's default).

Every model maps float (N, in_channels, H, W) input (H, W >= 1; ImageNet weights expect 224 px,
normalised with ImageNet's mean and std) to (N, num_classes) logits, or to ``(logits, features)`` with
``forward(x, return_features=True)``, features being the globally average-pooled penultimate
activations: (N, 512) for ResNet-18/34, (N, 2048) for ResNet-50, (N, 1280) for MobileNetV2.
:func:`nayer_scale.models.get_classifier` returns ``fc`` (also ``model.classifier`` for the ResNets) or
``classifier[1]`` (MobileNetV2).
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_model

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ConvBNReLU6",
    "ImageNetResNet",
    "InvertedResidual",
    "MobileNetV2",
    "tv_resnet18",
    "tv_resnet34",
    "tv_resnet50",
    "tv_mobilenet_v2",
]


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride, 1, groups=groups, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (He et al., CVPR 2016): conv3x3(stride)-BN-ReLU-conv3x3-BN plus
    the shortcut, then ReLU. ``downsample`` is the projection (1x1 conv + BN) or None (identity).

    (N, inplanes, H, W) float -> (N, planes, ceil(H / stride), ceil(W / stride)).
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 Bottleneck (He et al., CVPR 2016, with the stride on the 3x3 conv):
    conv1x1-BN-ReLU-conv3x3(stride)-BN-ReLU-conv1x1-BN plus the shortcut, then ReLU.

    (N, inplanes, H, W) float -> (N, 4 * planes, ceil(H / stride), ceil(W / stride)).
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class ImageNetResNet(nn.Module):
    """torchvision's ImageNet ResNet (He et al., "Deep Residual Learning for Image Recognition",
    CVPR 2016; v1.5 Bottlenecks), with torchvision's module names and initialisation.

    Args:
        block: :class:`BasicBlock` (ResNet-18/34) or :class:`Bottleneck` (ResNet-50).
        layers: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18, (3, 4, 6, 3) for ResNet-34/50.
        num_classes: classifier width K.
        in_channels: input channels of ``conv1`` (3 for torchvision's weights).

    The input (N, in_channels, H, W) float is reduced 32x (stem 4x, stages 2-4 2x each); any
    H, W >= 1 works, pooling being adaptive.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():  # torchvision's init; fc keeps nn.Linear's default
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    @property
    def classifier(self) -> nn.Linear:
        """The final nn.Linear (``fc``)."""
        return self.fc

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """(N, C, H, W) float -> logits (N, K), or (logits, features (N, 512 * expansion)) if
        ``return_features``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        features = torch.flatten(self.avgpool(x), 1)
        logits = self.fc(features)
        return (logits, features) if return_features else logits


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's (and the TF reference's) rounding of a channel count to a multiple of ``divisor``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:  # do not round down by more than 10%
        new_v += divisor
    return new_v


class ConvBNReLU6(nn.Sequential):
    """Conv2d (no bias, "same" padding) - BatchNorm2d - ReLU6, torchvision's ``Conv2dNormActivation``
    layout (keys ``0.weight``, ``1.weight``, ``1.running_mean``, ...).

    (N, in_planes, H, W) float -> (N, out_planes, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_planes, out_planes, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_planes),
            nn.ReLU6(inplace=True),
        )
        self.out_channels = out_planes


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual with a linear bottleneck (Sandler et al., CVPR 2018):
    [1x1 expand-BN-ReLU6 when ``expand_ratio != 1``] - 3x3 depthwise(stride)-BN-ReLU6 - 1x1 project-BN,
    plus the input when ``stride == 1`` and ``inp == oup``. Sub-modules sit in ``self.conv`` as in
    torchvision (``conv.0.0.weight``, ..., ``conv.{2,3}`` or ``conv.{1,2}`` for the projection).

    (N, inp, H, W) float -> (N, oup, ceil(H / stride), ceil(W / stride)).

    Raises:
        ValueError: stride not 1 or 2.
    """

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2, got {stride}")
        self.stride = stride
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(inp, hidden_dim, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear
    Bottlenecks", CVPR 2018), width multiplier 1.0: ``features`` (stem ConvBNReLU6 32 ch stride 2, 17
    inverted residuals, 1x1 ConvBNReLU6 to 1280 ch), global average pooling,
    ``classifier = Sequential(Dropout(dropout), Linear(1280, num_classes))``.

    Args:
        num_classes: classifier width K.
        in_channels: input channels of ``features.0.0`` (3 for torchvision's weights).
        dropout: dropout probability before the Linear (0.2 as in torchvision).

    The input (N, in_channels, H, W) float is reduced 32x; any H, W >= 1 works.
    """

    # t (expansion), c (output channels), n (blocks), s (stride of the first block)
    SETTING = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.2) -> None:
        super().__init__()
        input_channel, self.last_channel = _make_divisible(32), _make_divisible(1280)
        features: list[nn.Module] = [ConvBNReLU6(in_channels, input_channel, stride=2)]
        for t, c, n, s in self.SETTING:
            output_channel = _make_divisible(c)
            for i in range(n):
                features.append(InvertedResidual(input_channel, output_channel, s if i == 0 else 1, t))
                input_channel = output_channel
        features.append(ConvBNReLU6(input_channel, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """(N, C, H, W) float -> logits (N, K), or (logits, features (N, 1280)) if ``return_features``
        (features are taken before the dropout)."""
        features = torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1)), 1)
        logits = self.classifier(features)
        return (logits, features) if return_features else logits


@register_model("tv_resnet18")
def tv_resnet18(num_classes: int = 1000, in_channels: int = 3) -> ImageNetResNet:
    """torchvision ResNet-18 (He et al., CVPR 2016): BasicBlocks [2, 2, 2, 2]; 11,689,512 parameters at
    1000 classes and 3 channels."""
    return ImageNetResNet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels)


@register_model("tv_resnet34")
def tv_resnet34(num_classes: int = 1000, in_channels: int = 3) -> ImageNetResNet:
    """torchvision ResNet-34 (He et al., CVPR 2016): BasicBlocks [3, 4, 6, 3]; 21,797,672 parameters at
    1000 classes and 3 channels."""
    return ImageNetResNet(BasicBlock, (3, 4, 6, 3), num_classes, in_channels)


@register_model("tv_resnet50")
def tv_resnet50(num_classes: int = 1000, in_channels: int = 3) -> ImageNetResNet:
    """torchvision ResNet-50 v1.5 (He et al., CVPR 2016): Bottlenecks [3, 4, 6, 3]; 25,557,032
    parameters at 1000 classes and 3 channels."""
    return ImageNetResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels)


@register_model("tv_mobilenet_v2")
def tv_mobilenet_v2(num_classes: int = 1000, in_channels: int = 3) -> MobileNetV2:
    """torchvision MobileNetV2 (Sandler et al., CVPR 2018), width 1.0, dropout 0.2; 3,504,872
    parameters at 1000 classes and 3 channels."""
    return MobileNetV2(num_classes, in_channels)
