"""Hash networks: pretrained layers from a weights file made here, new K-unit layers, offline errors."""
import numpy as np
import pytest
import torch
import torchvision

from hubness_pr.hyp2.networks import PIXELS_SIZE, build_network, network_names

TORCHVISION = {  # --backbone: (torchvision builder, a pretrained tensor kept, where it lands, input size)
    "alexnet": ("alexnet", "classifier.4.weight", "hash_layer.4.weight", 224),  # fc7
    "resnet": ("resnet50", "layer4.2.conv3.weight", "layer4.2.conv3.weight", 224),
    "googlenet": ("inception_v3", "Mixed_7c.branch_pool.conv.weight", "Mixed_7c.branch_pool.conv.weight", 448),
}


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hyp2_weights")
    files = {}
    for name, (builder, key, _, _) in TORCHVISION.items():
        torch.manual_seed(5)
        kwargs = {"aux_logits": True, "init_weights": False} if builder == "inception_v3" else {}
        state = getattr(torchvision.models, builder)(weights=None, **kwargs).state_dict()
        files[name] = (folder / f"{builder}.pth", state[key].clone())
        torch.save(state, files[name][0])
        del state
    return files


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_pretrained_layers_loaded_and_k_outputs(name, weight_files):
    path, kept = weight_files[name]
    _, _, where, size = TORCHVISION[name]
    net = build_network(name, 12, weights=path, seed=0)
    assert torch.equal(net.module.state_dict()[where], kept)
    assert net.prepare.size == size and net.meta["weights"] == "file" and len(net.meta["weights_sha256"]) == 16
    again = build_network(name, 12, weights=path, seed=0).module.state_dict()
    assert all(torch.equal(v, again[k]) for k, v in net.module.state_dict().items())  # new layer drawn from seed
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    assert net.prepare(image).shape == (3, size, size)
    x = torch.randn(2, 3, 80, 80)  # any size the network takes: its own (above) costs seconds on a CPU
    net.module.train()
    out = net.module(x)
    assert out.shape == (2, 12)
    out.sum().backward()
    assert all(p.grad is not None for p in net.module.parameters() if p.requires_grad)  # the whole net trains


def test_original_lr_and_alexnet_layout(weight_files):
    net = build_network("alexnet", 16, weights=weight_files["alexnet"][0])
    layers = [type(m).__name__ for m in net.module.hash_layer]
    assert layers == ["Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]  # fc6, fc7, new layer
    assert net.module.hash_layer[-1].out_features == 16 and net.lr == 0.01
    assert build_network("pixels", 16).lr == 0.02


def test_weights_missing_or_of_another_architecture(weight_files, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    for name, what in (("alexnet", "AlexNet"), ("resnet", "ResNet-50"), ("googlenet", "Inception-v3")):
        with pytest.raises(ValueError, match=f"{what} ImageNet weights not found.*--weights FILE"):
            build_network(name, 12)
    net = build_network("resnet", 12, pretrained=False)  # a checkpoint will provide the weights
    assert net.meta["weights"] == "from checkpoint"
    with pytest.raises(ValueError, match="not AlexNet weights"):
        build_network("alexnet", 12, weights=weight_files["resnet"][0])
    with pytest.raises(ValueError, match="no such file"):
        build_network("resnet", 12, weights=tmp_path / "none.pth")


def test_pixels_and_mlp_and_features_backbones():
    pixels = build_network("pixels", 24, seed=3)
    x = pixels.prepare(np.zeros((16, 16, 3), np.uint8))
    assert x.shape == (3, PIXELS_SIZE, PIXELS_SIZE) and pixels.module(x[None]).shape == (1, 24)
    assert not torch.equal(pixels.module.layers[0].weight, build_network("pixels", 24, seed=4).module.layers[0].weight)
    mlp = build_network("mlp", 8, feature_dim=30)
    assert mlp.prepare is None and mlp.module(torch.zeros(5, 30)).shape == (5, 8)
    lite = build_network("efficientnet_lite0", 16)  # a backbone of features/, fine-tuned
    assert all(p.requires_grad for p in lite.module.parameters())
    assert lite.module(torch.stack([lite.prepare(np.zeros((30, 30, 3), np.uint8))])).shape == (1, 16)
    assert {"googlenet", "alexnet", "resnet", "pixels", "mlp", "vgg16", "efficientnet_lite0"} <= set(network_names())
    with pytest.raises(ValueError, match="unknown --backbone 'vit'"):
        build_network("vit", 16)
    with pytest.raises(ValueError, match="takes no --weights"):
        build_network("pixels", 16, weights="x.pth")
