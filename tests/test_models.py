"""Architecture registry, layer taps, analysed weights, inits and ImageNet loading (issue 4)."""

import math

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from kdconcepts import models
from kdconcepts.models import (
    ARCHITECTURES,
    analysed_weight,
    build_model,
    imagenet_weights_path,
    init_student_weights,
    load_imagenet_weights,
    resolve_layer,
    trunk_parameters,
)

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _private_torch_hub(tmp_path, monkeypatch):
    # Every test sees an empty torch cache: nothing may be read from (or downloaded to) the real one.
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_has_the_three_taps_and_no_inplace_activation(arch):
    model = build_model(arch, num_classes=5, image_size=32 if arch.startswith("small_") else 224)
    modules = dict(model.named_modules())
    taps = {alias: resolve_layer(arch, alias) for alias in ("conv", "fc1", "fc2")}
    assert len(set(taps.values())) == 3
    for alias, node in taps.items():
        assert node in modules, (alias, node)
    # conv is a conv or its BatchNorm; fc1/fc2 are Linear layers of the classifier.
    assert isinstance(modules[taps["conv"]], nn.Conv2d | nn.BatchNorm2d)
    assert isinstance(modules[taps["fc1"]], nn.Linear) and isinstance(modules[taps["fc2"]], nn.Linear)
    assert modules[taps["fc1"]].out_features == modules[taps["fc2"]].in_features
    # The output layer has C classes.
    last_linear = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert last_linear.out_features == 5
    assert not any(getattr(m, "inplace", False) for m in model.modules())


def test_small_vgg_taps_are_pre_relu_and_shaped_like_the_spec():
    torch.manual_seed(0)
    model = build_model("small_vgg", num_classes=8, image_size=32).eval()
    assert resolve_layer("small_vgg", "conv") == "features.15"
    assert isinstance(model.features[14], nn.Conv2d) and model.features[14].out_channels == 128
    extractor = create_feature_extractor(model, {resolve_layer("small_vgg", a): a for a in ("conv", "fc1", "fc2")})
    out = extractor(torch.randn(3, 3, 32, 32))
    assert out["conv"].shape == (3, 128, 8, 8)  # before the last max pool
    assert out["fc1"].shape == (3, 256) and out["fc2"].shape == (3, 256)
    for value in out.values():  # pre-ReLU: negative values exist
        assert (value < 0).any()
    # Five conv layers 32-32-64-64-128, each followed by BatchNorm.
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 5


def test_small_resnet_is_a_resnet_with_the_paper_taps():
    from torchvision.models.resnet import BasicBlock

    torch.manual_seed(0)
    model = build_model("small_resnet", num_classes=8, image_size=32).eval()
    # Residual blocks (torchvision's), then the paper's two extra conv3x3+BN+ReLU blocks; the
    # conv tap is the second extra block's BatchNorm, as for the paper's ResNets.
    assert [type(model.get_submodule(f"layer{k}")) for k in (1, 2, 3)] == [BasicBlock] * 3
    assert resolve_layer("small_resnet", "conv") == "extra.4" == resolve_layer("resnet50", "conv")
    assert analysed_weight(model, "small_resnet", "conv") is model.extra[3].weight
    extractor = create_feature_extractor(model, {resolve_layer("small_resnet", a): a for a in ("conv", "fc1", "fc2")})
    out = extractor(torch.randn(3, 3, 32, 32))
    # Half the small VGG's widths (16, 32, 64: the time budget), the same 8 x 8 grid at the tap.
    assert [model.get_submodule(f"layer{k}").conv2.out_channels for k in (1, 2, 3)] == [16, 32, 64]
    assert out["conv"].shape == (3, 64, 8, 8)
    assert out["fc1"].shape == (3, 256) and out["fc2"].shape == (3, 256)
    assert all((value < 0).any() for value in out.values())  # pre-ReLU
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 8)  # global pooling: any size
    with pytest.raises(ValueError, match="no ImageNet weights"):
        imagenet_weights_path("small_resnet")


def test_small_vgg_head_follows_image_size():
    model = build_model("small_vgg", num_classes=3, image_size=64).eval()
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3)


def test_resnet_has_extra_blocks_and_three_layer_head():
    model = build_model("resnet50", num_classes=7, image_size=224)
    convs = [m for m in model.extra if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2 and all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.extra) == 2
    assert sum(isinstance(m, nn.ReLU) for m in model.extra) == 2
    assert sum(isinstance(m, nn.Linear) for m in model.classifier) == 3
    assert resolve_layer("resnet50", "conv") == "extra.4"


def test_resnet_forward_at_small_size():
    model = build_model("resnet50", num_classes=4, image_size=224).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 4)


def test_node_names_pass_through_and_unknown_names_fail():
    assert resolve_layer("vgg16", "features.26") == "features.26"
    assert resolve_layer("resnet50", "layer4.2.relu_2") == "layer4.2.relu_2"
    with pytest.raises(ValueError, match="unknown layer 'fc3'"):
        resolve_layer("vgg16", "fc3")
    with pytest.raises(ValueError, match="unknown architecture"):
        resolve_layer("vgg13", "conv")
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("densenet121", 10)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("small_vgg", 0, 32)


def test_analysed_weight_is_the_layer_filter_bank():
    small = build_model("small_vgg", 8, 32)
    assert analysed_weight(small, "small_vgg", "conv") is small.features[14].weight  # conv under the BN tap
    assert analysed_weight(small, "small_vgg", "fc1") is small.classifier[0].weight
    assert analysed_weight(small, "small_vgg", "fc2") is small.classifier[3].weight
    assert analysed_weight(small, "small_vgg", "features.7") is small.features[7].weight
    vgg = build_model("vgg16", 8, 224)
    assert analysed_weight(vgg, "vgg16", "conv") is vgg.features[28].weight
    resnet = build_model("resnet50", 8, 224)
    assert analysed_weight(resnet, "resnet50", "conv") is resnet.extra[3].weight
    with pytest.raises(ValueError, match="not a conv/linear"):
        analysed_weight(small, "small_vgg", "features.16")  # a ReLU


@pytest.mark.parametrize("layer,first_head", [("conv", "classifier.0.weight"), ("fc1", "classifier.3.weight"),
                                              ("fc2", "classifier.6.weight")])
def test_trunk_parameters_split_at_the_tap(layer, first_head):
    model = build_model("small_vgg", 8, 32)
    trunk, head = trunk_parameters(model, "small_vgg", layer)
    assert head[0] == first_head
    assert set(trunk) | set(head) == {n for n, _ in model.named_parameters()}
    assert not set(trunk) & set(head)
    assert "features.0.weight" in trunk
    assert model.training  # mode restored


def test_student_init_matches_the_authors_scheme():
    torch.manual_seed(0)
    model = init_student_weights(build_model("small_vgg", 8, 32))
    fc = model.classifier[0].weight.detach()
    assert abs(float(fc.std()) - 0.01) < 0.001 and abs(float(fc.mean())) < 0.001
    assert float(model.classifier[0].bias.detach().abs().sum()) == 0.0
    conv = model.features[7]  # 32 -> 64 channels: kaiming fan_out std = sqrt(2 / (64 * 9))
    expected = math.sqrt(2.0 / (64 * 9))
    assert abs(float(conv.weight.detach().std()) - expected) / expected < 0.05
    bn = model.features[1]
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.bias, torch.zeros_like(bn.bias))


def test_missing_imagenet_weights_give_an_actionable_error_and_no_download(monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    model = build_model("alexnet", 5)
    expected = imagenet_weights_path("alexnet")
    assert str(expected).startswith(torch.hub.get_dir())
    with pytest.raises(FileNotFoundError) as info:
        load_imagenet_weights(model, "alexnet")
    message = str(info.value)
    assert str(expected) in message and "weights='DEFAULT'" in message and "teacher.weights" in message
    with pytest.raises(ValueError, match="no ImageNet weights"):
        imagenet_weights_path("small_vgg")


def test_imagenet_weights_load_by_name_except_the_output_layer(tmp_path):
    torch.manual_seed(1)
    source = torchvision.models.alexnet(weights=None)  # 1000 classes, as the ImageNet file
    # A partial file keeps the test small: the conv layers and the 1000-way output layer.
    state = {k: v for k, v in source.state_dict().items() if k.startswith("features.") or k.startswith("classifier.6")}
    path = imagenet_weights_path("alexnet")
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    torch.manual_seed(2)
    model = build_model("alexnet", 5)
    before_fc1 = model.classifier[1].weight.clone()
    before_out = model.classifier[6].weight.clone()
    load_imagenet_weights(model, "alexnet")
    assert torch.equal(model.features[0].weight, state["features.0.weight"])
    assert torch.equal(model.features[10].bias, state["features.10.bias"])
    assert torch.equal(model.classifier[6].weight, before_out)  # 5 classes: kept
    assert torch.equal(model.classifier[1].weight, before_fc1)  # absent from the file: kept
    # An explicit file path works the same, and a wrong file is refused.
    other = tmp_path / "w.pth"
    torch.save({"something.else": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="no tensor matching"):
        load_imagenet_weights(build_model("alexnet", 5), "alexnet", other)


def test_registry_lists_the_paper_networks():
    assert set(ARCHITECTURES) == {"small_vgg", "small_resnet", "alexnet", "vgg11", "vgg16", "vgg19", "resnet50", "resnet101",
                                  "resnet152"}
    assert models.LAYER_ALIASES == ("conv", "fc1", "fc2")
