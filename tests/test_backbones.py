"""Backbones against hand-written reference pipelines, with weights made in the test."""
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from sklearn.datasets import load_sample_images
from torchvision import transforms

from features.backbones import available_backbones, load_backbone
from features.backbones.preprocess import IMAGENET_MEAN, IMAGENET_STD, tf1_bilinear
from features.extract import extract_path


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory):
    """A randomly initialised VGG16 saved as a torchvision-format state dict."""
    path = tmp_path_factory.mktemp("weights") / "vgg16_random.pth"
    torch.manual_seed(123)
    model = torchvision.models.vgg16(weights=None).eval()
    torch.save(model.state_dict(), path)
    return path, model


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    shapes = [(300, 400), (224, 224), (97, 131), (500, 260)]
    for i, (h, w) in enumerate(shapes):
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        arr[: h // 2] //= 3  # some structure
        Image.fromarray(arr).save(folder / f"img_{i}.png")
    return folder


def reference_vgg_fc2(model, files):
    """The original getFeature.py pipeline written out: PIL resize, ToTensor, Normalize, classifier[:5]."""
    tf = transforms.Compose([transforms.Resize([224, 224]), transforms.ToTensor(),
                             transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    x = torch.stack([tf(Image.open(f).convert("RGB")) for f in files])
    with torch.inference_mode():
        before_fc = model.features(x).view(-1, 7 * 7 * 512)
        return model.classifier[:5](before_fc).numpy()


def test_vgg16_matches_hand_written_torchvision_pipeline(vgg_weights, photos):
    path, model = vgg_weights
    result, meta = extract_path(photos, backbone="vgg16", weights=path, batch_size=3, num_workers=0, device="cpu")
    expected = reference_vgg_fc2(model, sorted(photos.iterdir()))
    assert result.features.shape == (4, 4096)
    np.testing.assert_allclose(result.features, expected, atol=1e-4, rtol=1e-4)
    assert (result.features >= 0).all() and (result.features > 0).any()  # fc2 after ReLU
    assert meta["backbone"] == "vgg16" and meta["weights_file"] == "vgg16_random.pth"
    assert len(meta["weights_sha256"]) == 16 and meta["layer"].startswith("fc2 after ReLU")


def test_nvidia_preprocessing_matches_tf1_reference(vgg_weights, photos):
    path, model = vgg_weights
    result, meta = extract_path(photos, backbone="vgg16", weights=path, preprocess="nvidia", num_workers=0,
                                device="cpu")
    assert meta["preprocess"] == "nvidia"
    files = sorted(photos.iterdir())
    xs = []
    for f in files:
        arr = np.asarray(Image.open(f).convert("RGB")).astype(np.float64)
        x = np.stack([tf1_reference(arr[:, :, c], 224) for c in range(3)])
        xs.append((x - 255 * np.array(IMAGENET_MEAN)[:, None, None]) / (255 * np.array(IMAGENET_STD)[:, None, None]))
    with torch.inference_mode():
        x = torch.tensor(np.stack(xs), dtype=torch.float32)
        expected = model.classifier[:5](model.features(x).view(-1, 7 * 7 * 512)).numpy()
    np.testing.assert_allclose(result.features, expected, atol=1e-4, rtol=1e-4)
    pil, _ = extract_path(photos, backbone="vgg16", weights=path, num_workers=0, device="cpu")
    assert np.abs(pil.features - result.features).max() > 1e-3  # the two policies really differ


def tf1_reference(channel: np.ndarray, size: int) -> np.ndarray:
    """TF 1.x resize_bilinear, align_corners=False, written with explicit loops from its definition."""
    h, w = channel.shape
    out = np.empty((size, size))
    for y in range(size):
        sy = y * h / size
        y0 = int(np.floor(sy)); y1 = min(y0 + 1, h - 1); fy = sy - y0
        for x in range(size):
            sx = x * w / size
            x0 = int(np.floor(sx)); x1 = min(x0 + 1, w - 1); fx = sx - x0
            top = channel[y0, x0] + (channel[y0, x1] - channel[y0, x0]) * fx
            bottom = channel[y1, x0] + (channel[y1, x1] - channel[y1, x0]) * fx
            out[y, x] = top + (bottom - top) * fy
    return out


def test_tf1_bilinear_hand_case():
    x = torch.tensor([[[0.0, 10.0], [20.0, 30.0]]])  # (1, 2, 2)
    out = tf1_bilinear(x, 4)[0]
    # source coordinates 0, 0.5, 1, 1.5 -> the last two clamp to the border (no half-pixel offset)
    np.testing.assert_allclose(out[0].numpy(), [0, 5, 10, 10])
    np.testing.assert_allclose(out[:, 0].numpy(), [0, 10, 20, 20])
    np.testing.assert_allclose(out[1, 1].item(), 15.0)


def test_vgg16_random_is_seeded_and_recorded(photos):
    a = load_backbone("vgg16_random", seed=5)
    b = load_backbone("vgg16_random", seed=5)
    c = load_backbone("vgg16_random", seed=6)
    img = np.asarray(Image.open(sorted(photos.iterdir())[1]).convert("RGB"))[None]
    fa, fb, fc = a.embed(img), b.embed(img), c.embed(img)
    np.testing.assert_array_equal(fa, fb)
    assert not np.allclose(fa, fc)
    assert a.meta["weights"] == "random" and a.meta["weights_seed"] == 5
    state = torch.get_rng_state()
    load_backbone("vgg16_random", seed=7)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone


def test_embed_tensor_equals_file_path(vgg_weights, photos):
    path, _ = vgg_weights
    backbone = load_backbone("vgg16", weights=path)
    files = sorted(photos.iterdir())[:2]
    arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    from_files, _ = extract_path(photos, backbone="vgg16", weights=path, num_workers=0, device="cpu")
    for i, arr in enumerate(arrays):
        np.testing.assert_allclose(backbone.embed(arr[None])[0], from_files.features[i], atol=1e-5)
        nchw = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]
        np.testing.assert_allclose(backbone.embed(nchw)[0], from_files.features[i], atol=1e-5)


def test_efficientnet_lite0_is_really_pretrained():
    """The packaged ImageNet weights recognise scikit-learn's two sample photos."""
    backbone = load_backbone("efficientnet_lite0")
    assert backbone.dim == 1280
    china, flower = load_sample_images().images
    x = torch.stack([backbone.prepare(china), backbone.prepare(flower)])
    with torch.inference_mode():
        top5 = backbone.network.net(x).topk(5, dim=1).indices.tolist()
    assert top5[0][0] in (442, 698, 449)  # bell cote / palace / boathouse (a Chinese temple by a lake)
    assert top5[1][0] == 985  # daisy
    feats = backbone.embed(np.stack([china[:400, :400], flower[:400, :400]]))
    assert feats.shape == (2, 1280) and np.isfinite(feats).all()


@pytest.mark.parametrize("name, kwargs, message", [
    ("resnet", {}, "unknown backbone 'resnet'"),
    ("vgg16", {"weights": "/nonexistent.pth"}, "no such file"),
    ("vgg16_random", {"weights": "x.pth"}, "takes no --weights"),
    ("vgg16", {"preprocess": "bicubic"}, "unknown --preprocess"),
])
def test_backbone_errors(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_backbone(name, **kwargs)


def test_wrong_architecture_weights(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="not VGG16 weights .*missing keys"):
        load_backbone("vgg16", weights=path)
    bad = tmp_path / "junk.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot load a PyTorch state dict"):
        load_backbone("efficientnet_lite0", weights=bad)


def test_missing_imagenet_weights_say_both_ways_out(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ValueError) as info:
        load_backbone("vgg16")
    message = str(info.value)
    assert "torchvision's cache" in message and "--weights FILE" in message and "\n" not in message


def test_registry_lists_builtins():
    assert {"vgg16", "vgg16_random", "efficientnet_lite0", "inception_v3"} <= set(available_backbones())


def test_inception_v3_matches_hand_written_torchvision_pool(photos, tmp_path):
    torch.manual_seed(7)
    model = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True,
                                            transform_input=True).eval()
    path = tmp_path / "inception.pth"
    torch.save(model.state_dict(), path)
    no_aux = {k: v for k, v in model.state_dict().items() if not k.startswith("AuxLogits.")}
    result, meta = extract_path(photos, backbone="inception_v3", weights=path, num_workers=0, device="cpu")
    tf = transforms.Compose([transforms.Resize([299, 299]), transforms.ToTensor(),
                             transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    x = torch.stack([tf(Image.open(f).convert("RGB")) for f in sorted(photos.iterdir())])
    model.fc = torch.nn.Identity()
    with torch.inference_mode():
        expected = model(x).numpy()
    assert result.features.shape == (4, 2048) and meta["backbone"] == "inception_v3"
    # random weights with default batch-norm statistics blow activations up to ~1e10, so the float32
    # reordering of folded batch norms shows at 1e-6 of the largest feature: compare at that scale
    scale = np.abs(expected).max()
    assert np.abs(result.features - expected).max() <= 1e-5 * scale
    # a state dict without the auxiliary classifier loads too; a VGG one does not
    torch.save(no_aux, tmp_path / "noaux.pth")
    assert load_backbone("inception_v3", weights=tmp_path / "noaux.pth").dim == 2048
    torch.save(torchvision.models.vgg11(weights=None).state_dict(), tmp_path / "vgg.pth")
    with pytest.raises(ValueError, match="not Inception-v3 weights"):
        load_backbone("inception_v3", weights=tmp_path / "vgg.pth")
