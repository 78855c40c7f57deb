"""Architecture registry and layer taps for the three networks (SPEC section 1).

Every network of the paper -- and the default small net -- exposes the same three analysed
taps, named as in SPEC:

- ``conv``: output of the last convolutional layer, *pre-ReLU* (after BatchNorm where the
  block has one),
- ``fc1``: output of the first fully connected layer (pre-ReLU),
- ``fc2``: output of the second fully connected layer (pre-ReLU).

The quantified feature ``f(x)`` of SPEC section 2 is ReLU of the tap. A tap can also be named
by its torchvision node name (``torchvision.models.feature_extraction``), e.g. ``features.28``.

Modules are named like torchvision's VGG (``features.N``, ``classifier.N``) for every
architecture, so taps resolve the same way everywhere. ResNets keep torchvision's stem and
``layer1``..``layer4``, then get the paper's two extra conv3x3+BN+ReLU blocks (``extra``) and a
3-layer FC head (``classifier``). No activation is in-place: in-place ReLUs would overwrite a
tapped pre-ReLU output.

Example:
    >>> model = build_model("small_vgg", num_classes=8, image_size=32)
    >>> resolve_layer("small_vgg", "conv")
    'features.15'
    >>> tuple(analysed_weight(model, "small_vgg", "fc1").shape)
    (256, 2048)
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import get_graph_node_names

__all__ = [
    "ARCHITECTURES",
    "LAYER_ALIASES",
    "build_model",
    "resolve_layer",
    "analysed_weight",
    "trunk_parameters",
    "imagenet_weights_path",
    "load_imagenet_weights",
    "init_student_weights",
    "check_input_size",
]

log = logging.getLogger(__name__)

ARCHITECTURES = (
    "small_vgg",
    "small_resnet",
    "alexnet",
    "vgg11",
    "vgg16",
    "vgg19",
    "resnet50",
    "resnet101",
    "resnet152",
)
LAYER_ALIASES = ("conv", "fc1", "fc2")

_SMALL_VGG_CHANNELS = (32, 32, "M", 64, 64, "M", 128, "M")
_SMALL_VGG_HIDDEN = 256
_HEAD_DROPOUT = 0.5  # torchvision VGG/AlexNet value; also used for the small net and ResNet head
_SMALL_RESNET_STAGES = ((16, 1), (32, 2), (64, 2))  # (channels, stride) of one BasicBlock each
_RESNET_EXTRA_CHANNELS = 512
_RESNET_HIDDEN = 1024


class SmallVGG(nn.Module):
    """The default small VGG-style net: 5 conv(3x3)+BN+ReLU layers (32-32-64-64-128), 3 max
    pools, then ``classifier`` = Linear-ReLU-Dropout-Linear-ReLU-Dropout-Linear like VGG.

    BatchNorm is required: without it the net did not learn at 32 px (MEASURED.md).
    """

    def __init__(self, num_classes: int, image_size: int):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for spec in _SMALL_VGG_CHANNELS:
            if spec == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [
                    nn.Conv2d(in_channels, spec, kernel_size=3, padding=1),
                    nn.BatchNorm2d(spec),
                    nn.ReLU(inplace=False),
                ]
                in_channels = spec
        self.features = nn.Sequential(*layers)
        # Three 2x pools: the map is image_size/8 on a side (4x4 at 32 px); the adaptive pool
        # makes the head independent of odd sizes.
        side = max(1, image_size // 8)
        self.avgpool = nn.AdaptiveAvgPool2d((side, side))
        self.classifier = _fc_head(in_channels * side * side, _SMALL_VGG_HIDDEN, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class SmallResNet(nn.Module):
    """The default's second architecture: a small ResNet built like the paper's ResNets (SPEC
    section 1), sized for 32 px on a CPU.

    ``stem`` (conv3x3 3->16, BN, ReLU), ``layer1``..``layer3`` (one torchvision ``BasicBlock``
    each: 16, 32 with stride 2, 64 with stride 2), the paper's two extra conv3x3+BN+ReLU blocks
    (``extra``, 64 channels), global average pooling, and the 3-layer FC head
    (``classifier``, hidden 256 like the small VGG). So its ``conv``, ``fc1`` and ``fc2`` taps
    sit where a paper ResNet's do: ``conv`` is the second extra block's BatchNorm output.

    The widths are the time budget's: at 32/64/128 a training image cost 1.74x the small VGG's
    and a quantification pass 1.64x, at 16/32/64 0.62x and 0.55x (``benchmarks/arch_cost.py``,
    docs/ARTIFACT_EVALUATION.md), which lets two architectures share the default's budget.
    """

    def __init__(self, num_classes: int, image_size: int):
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        width = _SMALL_RESNET_STAGES[0][0]
        self.stem = nn.Sequential(nn.Conv2d(3, width, kernel_size=3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=False))
        in_channels = width
        for k, (channels, stride) in enumerate(_SMALL_RESNET_STAGES, start=1):
            downsample = None
            if stride != 1 or in_channels != channels:
                downsample = nn.Sequential(
                    nn.Conv2d(in_channels, channels, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(channels))
            setattr(self, f"layer{k}", BasicBlock(in_channels, channels, stride, downsample))
            in_channels = channels
        self.extra = _extra_blocks(in_channels, in_channels)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = _fc_head(in_channels, _SMALL_VGG_HIDDEN, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        x = self.avgpool(self.extra(x))
        return self.classifier(torch.flatten(x, 1))


class ResNetWithHead(nn.Module):
    """A torchvision ResNet trunk + the paper's two extra conv3x3+BN+ReLU blocks + 3-layer FC head.

    Module names: torchvision's ``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1``..``layer4``
    (so ImageNet weights load by name), then ``extra`` (conv, BN, ReLU, conv, BN, ReLU),
    ``avgpool`` and ``classifier`` (Linear-ReLU-Dropout-Linear-ReLU-Dropout-Linear).
    """

    def __init__(self, resnet: torchvision.models.ResNet, num_classes: int):
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(resnet, name))
        trunk_channels = resnet.fc.in_features
        c = _RESNET_EXTRA_CHANNELS
        self.extra = _extra_blocks(trunk_channels, c)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = _fc_head(c, _RESNET_HIDDEN, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(self.extra(x))
        return self.classifier(torch.flatten(x, 1))


def _extra_blocks(in_channels: int, channels: int) -> nn.Sequential:
    """The paper's two extra conv3x3+BN+ReLU blocks after a ResNet trunk (SPEC section 1)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=False),
        nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=False),
    )


def _fc_head(in_features: int, hidden: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(inplace=False),
        nn.Dropout(_HEAD_DROPOUT),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=False),
        nn.Dropout(_HEAD_DROPOUT),
        nn.Linear(hidden, num_classes),
    )


def _no_inplace(model: nn.Module) -> nn.Module:
    # torchvision builds ReLU(inplace=True); a hooked/tapped pre-ReLU output must not be
    # overwritten, so every in-place activation is switched off.
    for module in model.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    return model


def _check_arch(arch: str) -> None:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHITECTURES)}")


def build_model(arch: str, num_classes: int, image_size: int = 224) -> nn.Module:
    """Build an untrained network from the registry.

    Args:
        arch: one of :data:`ARCHITECTURES`.
        num_classes: C, the number of output classes.
        image_size: S, the input side in pixels (only the small net's head depends on it;
            torchvision nets use adaptive pooling).

    Returns:
        The model with torchvision's default initialisation (use
        :func:`init_student_weights` for the paper's student/baseline init and
        :func:`load_imagenet_weights` for the teacher). No in-place activations.
    """
    _check_arch(arch)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
    if arch == "small_vgg":
        return SmallVGG(num_classes, image_size)
    if arch == "small_resnet":
        return _no_inplace(SmallResNet(num_classes, image_size))
    if arch.startswith("resnet"):
        return _no_inplace(ResNetWithHead(torchvision.models.get_model(arch, weights=None), num_classes))
    # alexnet, vgg*: torchvision definitions, last classifier layer resized to C.
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    return _no_inplace(model)


def _meta_model(arch: str, image_size: int | None = None) -> nn.Module:
    """The architecture on the meta device: structure and shapes, no memory, no init cost."""
    with torch.device("meta"):
        return build_model(arch, num_classes=2,
                           image_size=image_size or (32 if arch.startswith("small_") else 224))


def check_input_size(arch: str, image_size: int) -> str | None:
    """None if ``arch`` runs on S x S images, else a sentence saying what it needs."""
    _check_arch(arch)
    if image_size < 8:
        return f"images of {image_size} px are too small for {arch} (at least 8 px)"
    try:
        with torch.no_grad():
            _meta_model(arch, image_size).eval()(torch.empty(1, 3, image_size, image_size, device="meta"))
    except RuntimeError as error:
        smallest = next((s for s in (16, 32, 64, 96, 128, 160, 192, 224) if s > image_size and
                         check_input_size(arch, s) is None), None)
        need = f"at least {smallest} px" if smallest else "larger images"
        return (f"architecture = {arch!r} cannot run on the prepared {image_size} px images "
                f"({str(error).splitlines()[0]}); it needs {need}")
    return None


@functools.lru_cache(maxsize=None)
def _node_names(arch: str) -> tuple[str, ...]:
    model = _meta_model(arch)
    train_nodes, eval_nodes = get_graph_node_names(model)
    return tuple(dict.fromkeys(train_nodes + eval_nodes))


@functools.lru_cache(maxsize=None)
def _alias_table(arch: str) -> dict[str, str]:
    """Alias -> node name, from the module structure (no hand-written index per net)."""
    model = _meta_model(arch)
    if hasattr(model, "extra"):  # ResNets: the paper's extra blocks after the trunk
        conv_block = model.extra
        conv_prefix = "extra"
    else:
        conv_block = model.features
        conv_prefix = "features"
    # conv tap: the last conv's output, or its BatchNorm's output when one follows (pre-ReLU).
    blocks = list(conv_block)
    last_conv = max(i for i, m in enumerate(blocks) if isinstance(m, nn.Conv2d))
    conv_tap = last_conv + 1 if isinstance(blocks[last_conv + 1], nn.BatchNorm2d) else last_conv
    linears = [i for i, m in enumerate(model.classifier) if isinstance(m, nn.Linear)]
    return {
        "conv": f"{conv_prefix}.{conv_tap}",
        "fc1": f"classifier.{linears[0]}",
        "fc2": f"classifier.{linears[1]}",
    }


def resolve_layer(arch: str, layer: str) -> str:
    """Map an analysed-layer name to the torchvision feature-extraction node name.

    Args:
        arch: one of :data:`ARCHITECTURES`.
        layer: an alias (``conv``, ``fc1``, ``fc2``) or a node name of the architecture's graph.

    Returns:
        The node name whose output is the (pre-ReLU) tap.

    Raises:
        ValueError: for an unknown architecture or a name that is neither an alias nor a node.
    """
    _check_arch(arch)
    aliases = _alias_table(arch)
    if layer in aliases:
        return aliases[layer]
    if layer in _node_names(arch):
        return layer
    raise ValueError(
        f"unknown layer {layer!r} for {arch}: use one of {', '.join(LAYER_ALIASES)} or a node name "
        f"from torchvision.models.feature_extraction.get_graph_node_names (e.g. {aliases['conv']!r})"
    )


def analysed_weight(model: nn.Module | None, arch: str, layer: str) -> torch.Tensor:
    """The weight tensor w of the analysed layer, for the weight distance (SPEC section 4).

    For a tap on a BatchNorm output (``conv`` of the small net and ResNets) this is the weight
    of the convolution the BatchNorm normalises: w is the layer's filter bank.

    Args:
        model: a network built by :func:`build_model` for ``arch``; None checks the layer on
            a meta-device copy (the result is then a meta tensor).
        arch: its architecture name.
        layer: alias or node name (see :func:`resolve_layer`).

    Returns:
        The parameter tensor itself (not a copy).

    Raises:
        ValueError: the layer has no conv / linear weight (e.g. a ReLU or pooling node).
    """
    node = resolve_layer(arch, layer)
    if model is None:
        model = _meta_model(arch)
    modules = dict(model.named_modules())
    if node not in modules:
        raise ValueError(f"layer {layer!r} ({node}) of {arch} is not a module; it has no weight tensor")
    module = modules[node]
    if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        parent_name, _, index = node.rpartition(".")
        parent = modules[parent_name]
        previous = [m for m in list(parent)[: int(index)] if isinstance(m, nn.Conv2d | nn.Linear)]
        if not previous:
            raise ValueError(f"no conv/linear layer precedes the BatchNorm tap {node} of {arch}")
        module = previous[-1]
    if not isinstance(module, nn.Conv2d | nn.Linear):
        raise ValueError(
            f"layer {layer!r} ({node}) of {arch} is a {type(module).__name__}, not a conv/linear layer"
        )
    return module.weight


def trunk_parameters(model: nn.Module, arch: str, layer: str) -> tuple[list[str], list[str]]:
    """Split parameter names into those up to and including the tap, and those above it.

    The student's second phase (SPEC section 1) freezes the first list and trains the second.
    The split follows the traced graph: a parameter is in the trunk if computing the tap uses it.

    Returns:
        ``(trunk_names, head_names)``, names as in ``model.named_parameters()``.
    """
    from torchvision.models.feature_extraction import create_feature_extractor

    node = resolve_layer(arch, layer)
    was_training = model.training
    trunk = create_feature_extractor(model.eval(), return_nodes=[node])
    model.train(was_training)
    trunk_ids = {id(p) for p in trunk.parameters()}
    trunk_names, head_names = [], []
    for name, param in model.named_parameters():
        (trunk_names if id(param) in trunk_ids else head_names).append(name)
    return trunk_names, head_names


def init_student_weights(model: nn.Module) -> nn.Module:
    """The authors' random init for student and baseline: Kaiming-normal conv weights (fan_out,
    ReLU), zero conv biases, BatchNorm weight 1 / bias 0, Linear weights ~ N(0, 0.01), biases 0.

    Uses the global torch RNG: seed it first.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.01)
            nn.init.zeros_(module.bias)
    return model


def imagenet_weights_path(arch: str) -> Path:
    """Where torchvision's ImageNet state dict for ``arch`` is expected in the local torch cache
    (``$TORCH_HOME/hub/checkpoints/<file>``, the file name of torchvision's DEFAULT weights)."""
    _check_arch(arch)
    if arch.startswith("small_"):
        raise ValueError(f"{arch} has no ImageNet weights: use teacher.init=pretrain")
    url = torchvision.models.get_model_weights(arch).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def load_imagenet_weights(model: nn.Module, arch: str, weights: str | os.PathLike | None = None) -> nn.Module:
    """Initialise a teacher from torchvision's ImageNet weights, from a local file only.

    Never downloads. Layers that do not exist in torchvision's net (the ResNets' ``extra`` blocks
    and FC head) or whose shape differs (the C-way output layer) keep their initialisation.

    Args:
        model: built by :func:`build_model` for ``arch``.
        arch: its architecture name.
        weights: a state-dict file; ``None`` means the torch hub cache
            (:func:`imagenet_weights_path`).

    Raises:
        FileNotFoundError: the weights are absent; the message says where to put them and how
            to fetch them on a machine with internet.
    """
    path = Path(weights) if weights is not None else imagenet_weights_path(arch)
    if not path.is_file():
        url = torchvision.models.get_model_weights(arch).DEFAULT.url
        raise FileNotFoundError(
            f"ImageNet weights for {arch} not found at {path}. This project never downloads them. "
            f"On a machine with internet run\n"
            f"  python -c \"import torchvision; torchvision.models.get_model('{arch}', weights='DEFAULT')\"\n"
            f"(or: wget {url}), then copy the file {os.path.basename(url)} to {path} "
            f"(the torch hub cache, $TORCH_HOME/hub/checkpoints/) or set teacher.weights to its path."
        )
    source = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(source, dict) and "state_dict" in source and isinstance(source["state_dict"], dict):
        source = source["state_dict"]
    target = model.state_dict()
    loaded = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    if not loaded:
        raise ValueError(f"{path} holds no tensor matching {arch}'s parameters: wrong architecture?")
    skipped = sorted(set(source) - set(loaded))
    model.load_state_dict(loaded, strict=False)
    kept = sorted(set(target) - set(loaded))
    log.info(
        "ImageNet init of %s from %s: %d tensors loaded; not loaded (shape/name differs): %s; "
        "kept random: %s", arch, path, len(loaded), skipped, kept,
    )
    return model
