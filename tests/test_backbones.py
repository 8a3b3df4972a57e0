"""Backbones against hand-written reference pipelines, with weights made in the test."""
import hashlib
import importlib
import logging
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from sklearn.datasets import load_sample_images
from torchvision import transforms

import hubness_pr.extraction.backbones as registry
from hubness_pr.extraction.backbones import available_backbones, load_backbone, register_backbone
from hubness_pr.extraction.backbones import preprocess as preprocessing
from hubness_pr.extraction.backbones.preprocess import IMAGENET_MEAN, IMAGENET_STD, tf1_bilinear
from hubness_pr.extraction.extract import BackboneSpec, extract_path


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
    result, meta = extract_path(photos, backbone=BackboneSpec("vgg16", weights=path), batch_size=3, num_workers=0, device="cpu")
    expected = reference_vgg_fc2(model, sorted(photos.iterdir()))
    assert result.features.shape == (4, 4096)
    np.testing.assert_allclose(result.features, expected, atol=1e-4, rtol=1e-4)
    assert (result.features >= 0).all() and (result.features > 0).any()  # fc2 after ReLU
    assert meta["backbone"] == "vgg16" and meta["weights_file"] == "vgg16_random.pth"
    assert len(meta["weights_sha256"]) == 16 and meta["layer"].startswith("fc2 after ReLU")


def test_tf1_bilinear_preprocessing_matches_tf1_reference(vgg_weights, photos):
    path, model = vgg_weights
    result, meta = extract_path(photos, backbone=BackboneSpec("vgg16", weights=path, preprocess="tf1_bilinear"), num_workers=0,
                                device="cpu")
    assert meta["preprocess"] == "tf1_bilinear"
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
    pil, _ = extract_path(photos, backbone=BackboneSpec("vgg16", weights=path), num_workers=0, device="cpu")
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
    from_files, _ = extract_path(photos, backbone=BackboneSpec("vgg16", weights=path), num_workers=0, device="cpu")
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
    result, meta = extract_path(photos, backbone=BackboneSpec("inception_v3", weights=path), num_workers=0, device="cpu")
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


def test_old_preprocess_name_nvidia_is_tf1_bilinear_with_a_note(monkeypatch, caplog):
    monkeypatch.setattr(preprocessing, "_aliases_noted", set())
    image = np.random.default_rng(3).integers(0, 256, (1, 50, 70, 3), dtype=np.uint8)
    with caplog.at_level(logging.WARNING):
        old = load_backbone("efficientnet_lite0", preprocess="nvidia")
        again = load_backbone("efficientnet_lite0", preprocess="nvidia")
    new = load_backbone("efficientnet_lite0", preprocess="tf1_bilinear")
    assert old.meta == again.meta == new.meta and old.meta["preprocess"] == "tf1_bilinear"
    np.testing.assert_array_equal(old.embed(image), new.embed(image))
    notes = [r.getMessage() for r in caplog.records if "old name" in r.getMessage()]
    assert len(notes) == 1 and "tf1_bilinear" in notes[0] and "vgg16_nvidia" in notes[0]  # once a process


def test_registry_declares_every_builtin_without_importing_it():
    """BUILTIN (what the parsers list without importing torchvision) names the module that registers each
    backbone, and PREPROCESS the choices preprocess.py implements."""
    for name, (module, _) in registry.BUILTIN.items():
        importlib.import_module(f"hubness_pr.extraction.backbones.{module}")
        assert registry._REGISTRY[name].__module__ == f"hubness_pr.extraction.backbones.{module}", name
    assert set(registry._REGISTRY) >= set(registry.BUILTIN)
    assert list(preprocessing.PREPROCESSING) == list(registry.PREPROCESS)
    assert set(registry.PREPROCESS_ALIASES.values()) <= set(registry.PREPROCESS)


def test_a_registered_backbone_is_listed_and_loaded(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    calls = []

    @register_backbone("tiny_test")
    def tiny(weights=None, preprocess=None, seed=0, allow_download=False):
        calls.append((weights, preprocess, seed))
        return registry.Backbone(name="tiny_test", dim=2, network=torch.nn.Linear(3, 2), prepare=lambda x: x)

    assert "tiny_test" in available_backbones()
    backbone = load_backbone("tiny_test", weights="w", seed=4)
    assert calls == [("w", None, 4)] and not any(p.requires_grad for p in backbone.network.parameters())


# ---- vgg16_nvidia: NVIDIA's TorchScript vgg16.pt, tested with stand-ins of the same call signature ----

class StandInDetector(torch.nn.Module):
    """Called as NVIDIA's vgg16.pt is: module(uint8 NCHW images in [0, 255], return_features=True) ->
    (N, 4096); refuses other dtypes as torch-fidelity's VGG16 does, resizes each image to 224 itself."""

    def __init__(self, out_dim: int = 4096):
        super().__init__()
        g = torch.Generator().manual_seed(11)
        self.proj = torch.nn.Parameter(torch.randn(3 * 8 * 8, out_dim, generator=g) / 14)
        self.classes = torch.nn.Parameter(torch.randn(out_dim, 1000, generator=g) / 64)

    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise RuntimeError("Expecting image as torch.Tensor with dtype=torch.uint8")
        x = F.interpolate(images.to(torch.float32), size=(224, 224), mode="bilinear", align_corners=False)
        features = torch.relu(F.adaptive_avg_pool2d(x, 8).flatten(1) @ self.proj)
        return features if return_features else features @ self.classes


class NoReturnFeatures(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().mean(dim=(2, 3))


class FloatOnly(torch.nn.Module):
    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return torch.nn.functional.linear(images.flatten(1), torch.ones(4096, images[0].numel()))


def save_script(module, path):
    with warnings.catch_warnings():  # torch >= 2.9 calls TorchScript deprecated; NVIDIA's file is TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(module.eval()), str(path))
    return path


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    path = save_script(StandInDetector(), tmp_path_factory.mktemp("nvidia") / "vgg16.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return path, torch.jit.load(str(path))


def test_vgg16_nvidia_calls_the_module_on_uint8_nchw_images_at_their_own_size(stand_in, photos, tmp_path):
    path, detector = stand_in
    folder = tmp_path / "mixed"
    folder.mkdir()
    for f in sorted(photos.iterdir()):  # four sizes
        (folder / f.name).write_bytes(f.read_bytes())
    grey = np.random.default_rng(5).integers(0, 256, (300, 400), dtype=np.uint8)
    Image.fromarray(grey, mode="L").save(folder / "img_9_grey.png")  # the size of img_0, after img_3
    result, meta = extract_path(folder, backbone=BackboneSpec("vgg16_nvidia", weights=path), batch_size=3, num_workers=0,
                                device="cpu")
    expected = []
    with torch.inference_mode():
        for f in sorted(folder.iterdir()):  # what StyleGAN2-ADA's metric_utils does, one image at a time
            image = torch.from_numpy(np.array(Image.open(f))).unsqueeze(0)
            image = image.permute(0, 3, 1, 2) if image.ndim == 4 else image.unsqueeze(1).repeat([1, 3, 1, 1])
            expected.append(detector(image, return_features=True)[0].numpy())
    assert result.features.shape == (5, 4096)
    np.testing.assert_allclose(result.features, np.stack(expected), rtol=1e-5, atol=1e-5)
    one_by_one, _ = extract_path(folder, backbone=BackboneSpec("vgg16_nvidia", weights=path), batch_size=1, num_workers=0,
                                 device="cpu")
    np.testing.assert_allclose(one_by_one.features, result.features, rtol=1e-5, atol=1e-5)
    assert meta["backbone"] == "vgg16_nvidia" and meta["weights_file"] == "vgg16.pt"
    assert meta["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert "uint8" in meta["input"] and meta["preprocess"] == "inside the TorchScript module"


def test_vgg16_nvidia_embed_equals_files_and_refuses_half(stand_in, photos):
    path, _ = stand_in
    backbone = load_backbone("vgg16_nvidia", weights=path)
    files = sorted(photos.iterdir())
    arr = np.asarray(Image.open(files[1]).convert("RGB"))
    from_files, _ = extract_path(photos, backbone=BackboneSpec("vgg16_nvidia", weights=path), num_workers=0, device="cpu")
    np.testing.assert_allclose(backbone.embed(arr[None])[0], from_files.features[1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="--half: vgg16_nvidia runs in float32 only"):
        backbone.inference_network("cpu", half=True)


@pytest.mark.parametrize("make, kwargs, message", [
    (None, {}, r"vgg16_nvidia needs --weights vgg16.pt, NVIDIA's TorchScript vgg16.pt \(https://.*never downloaded"),
    (None, {"weights": "/nonexistent/vgg16.pt"}, "no such file"),
    (lambda p: torch.save(torch.nn.Linear(3, 2).state_dict(), p), {},
     r"not a TorchScript module \(.*\); vgg16_nvidia takes NVIDIA's TorchScript vgg16.pt .*state dict goes with "
     "--backbone vgg16"),
    (lambda p: p.write_bytes(b"junk"), {}, "not a TorchScript module"),
    (lambda p: save_script(NoReturnFeatures(), p), {}, "without a return_features argument .*takes images"),
    (lambda p: save_script(FloatOnly(), p), {}, r"return_features=True\) fails \(.*\): not NVIDIA's"),
    (lambda p: save_script(StandInDetector(out_dim=2048), p), {},
     r"gives torch.float32 \(1, 2048\), not \(N, 4096\) float features: .*inception-2015-12-05.pt"),
    (lambda p: save_script(StandInDetector(), p), {"preprocess": "tf1_bilinear"},
     "--preprocess tf1_bilinear: vgg16_nvidia resizes and normalises inside"),
])
def test_vgg16_nvidia_errors_are_one_line(tmp_path, make, kwargs, message):
    if make is not None:
        make(tmp_path / "vgg16.pt")
        kwargs = {"weights": tmp_path / "vgg16.pt", **kwargs}
    with pytest.raises(ValueError, match=message) as info:
        load_backbone("vgg16_nvidia", **kwargs)
    assert "\n" not in str(info.value)


class TorchFidelityVGG16(torch.nn.Module):
    """vgg16.pt as torch-fidelity describes it (its VGG16 matches the file within 1e-4): torchvision's VGG16,
    the uint8 image as float, TF1 bilinear resize to 224, 255 x ImageNet mean/std, fc2 after ReLU;
    TorchScript, called as NVIDIA's file is."""

    def __init__(self, vgg):
        super().__init__()
        self.features, self.avgpool, self.head = vgg.features, vgg.avgpool, vgg.classifier[:5]
        self.register_buffer("mean", 255 * torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", 255 * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = images.to(torch.float32)
        h, w = x.shape[2], x.shape[3]
        ys = torch.arange(224, dtype=torch.float32) * (h / 224)
        xs = torch.arange(224, dtype=torch.float32) * (w / 224)
        y0, x0 = ys.floor().long().clamp(max=h - 1), xs.floor().long().clamp(max=w - 1)
        y1, x1 = (y0 + 1).clamp(max=h - 1), (x0 + 1).clamp(max=w - 1)
        dy, dx = (ys - y0.float()).view(1, 1, 224, 1), (xs - x0.float()).view(1, 1, 1, 224)
        top = x[:, :, y0][:, :, :, x0] + (x[:, :, y0][:, :, :, x1] - x[:, :, y0][:, :, :, x0]) * dx
        bottom = x[:, :, y1][:, :, :, x0] + (x[:, :, y1][:, :, :, x1] - x[:, :, y1][:, :, :, x0]) * dx
        x = (top + (bottom - top) * dy - self.mean) / self.std
        return self.head(torch.flatten(self.avgpool(self.features(x)), 1))


def test_vgg16_nvidia_on_torch_fidelitys_description_equals_vgg16_tf1_bilinear(vgg_weights, photos, tmp_path):
    """The README's first two rows: if vgg16.pt is what torch-fidelity finds, --backbone vgg16_nvidia and
    --backbone vgg16 --preprocess tf1_bilinear give the same features from the same weights."""
    path, model = vgg_weights
    script = save_script(TorchFidelityVGG16(model), tmp_path / "vgg16.pt")
    nvidia, _ = extract_path(photos, backbone=BackboneSpec("vgg16_nvidia", weights=script), num_workers=0, device="cpu")
    tf1, _ = extract_path(photos, backbone=BackboneSpec("vgg16", weights=path, preprocess="tf1_bilinear"), num_workers=0,
                          device="cpu")
    assert nvidia.features.shape == (4, 4096)
    assert np.abs(nvidia.features - tf1.features).max() <= 1e-5 * np.abs(tf1.features).max()


def test_preprocessing_a_read_only_image_warns_nothing():
    """Decoded images may be read-only views (memory-mapped arrays): no torch warning about them."""
    image = np.zeros((40, 50, 3), np.uint8)
    image.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name, make in preprocessing.PREPROCESSING.items():
            assert make(64)(image).shape == (3, 64, 64), name
