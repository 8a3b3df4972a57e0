"""The FID Inception, DINOv2 and CLIP backbones against their reference implementations (pytorch-fid,
clean-fid's resize, timm's DINOv2 ViTs, open_clip), with random weights made in the test: no weights are
downloaded."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import hubness_pr.extraction.backbones as registry
from hubness_pr.extraction.backbones import load_backbone
from hubness_pr.extraction.backbones import preprocess as preprocessing
from hubness_pr.extraction.extract import BackboneSpec, extract_path


def sane_random_state(module: torch.nn.Module, seed: int) -> dict:
    """Random weights that keep activations of order one through a deep network (fan-in scaled
    convolutions and linears, batch-norm statistics and affine parameters away from 0 and 1, LayerNorm
    and LayerScale parameters perturbed), so that a relative tolerance means something."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in module.state_dict().items():
        if not value.is_floating_point():
            state[key] = value.clone()
            continue
        shape = value.shape
        if key.endswith("running_var"):
            v = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("running_mean"):
            v = 0.1 * torch.randn(shape, generator=g)
        elif value.ndim >= 2 and not key.endswith(("pos_embed", "cls_token", "mask_token", "positional_embedding",
                                                    "class_embedding")):
            fan_in = int(np.prod(shape[1:]))
            v = torch.randn(shape, generator=g) * (1.0 / fan_in) ** 0.5
        elif key.endswith(("weight", "gamma")) and value.ndim == 1:
            v = 0.75 + 0.5 * torch.rand(shape, generator=g)
        else:
            v = 0.1 * torch.randn(shape, generator=g)
        state[key] = v.to(value.dtype)
    return state


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three small RGB images of different shapes, with some structure."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    arrays = []
    for i, (h, w) in enumerate([(64, 80), (40, 40), (90, 50)]):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 127 // (h + w))], -1)
        arr = np.clip(base + rng.integers(-40, 40, size=(h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"img_{i}.png")
        arrays.append(arr)
    return folder, arrays


def assert_close(actual, expected, rtol=1e-5):
    """Equal up to ``rtol`` of the largest feature (float32 reordering: folded batch norms, GEMM blocking)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    scale = np.abs(expected).max()
    assert scale > 0
    assert np.abs(actual - expected).max() <= rtol * scale, np.abs(actual - expected).max() / scale


# ---- inception_fid: pytorch-fid's FID Inception ----

@pytest.fixture(scope="module")
def fid_inception_weights(tmp_path_factory):
    from hubness_pr.extraction.backbones.inception_fid import fid_inception
    state = sane_random_state(fid_inception(), seed=3)
    path = tmp_path_factory.mktemp("fid") / "pt_inception-random.pth"
    torch.save(state, path)
    return path, state


def pytorch_fid_model(state, monkeypatch, **kwargs):
    """pytorch-fid's InceptionV3 with ``state`` loaded: its fid_inception_v3() asks
    load_state_dict_from_url for the weights, which returns ``state`` here (no download)."""
    from pytorch_fid import inception as pfi
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *args, **kw: state)
    return pfi.InceptionV3([3], use_fid_inception=True, **kwargs).eval()


def test_inception_fid_equals_pytorch_fid(fid_inception_weights, images, monkeypatch):
    path, state = fid_inception_weights
    folder, arrays = images
    result, meta = extract_path(folder, backbone=BackboneSpec("inception_fid", weights=path), num_workers=0, device="cpu")
    model = pytorch_fid_model(state, monkeypatch, resize_input=True, normalize_input=True)
    with torch.inference_mode():  # pytorch-fid's fid_score: ToTensor of the PIL image, one image a batch here
        expected = np.concatenate([model(torch.from_numpy(a).permute(2, 0, 1).float().div(255)[None])[0]
                                   .squeeze(3).squeeze(2).numpy() for a in arrays])
    assert result.features.shape == (3, 2048)
    assert_close(result.features, expected)
    assert meta["backbone"] == "inception_fid" and meta["preprocess"] == "pytorch_fid"
    assert meta["weights"] == "file" and meta["weights_file"] == path.name and len(meta["weights_sha256"]) == 16


def test_inception_fid_clean_resize_equals_clean_fid(fid_inception_weights, images, monkeypatch):
    from cleanfid.resize import build_resizer
    path, state = fid_inception_weights
    _, arrays = images
    backbone = load_backbone("inception_fid", weights=path, preprocess="clean")
    resize = build_resizer("clean")
    for a in arrays:  # the network's input: clean-fid's resize, then its (x - 128) / 128
        expected = (torch.from_numpy(resize(a).transpose(2, 0, 1).copy()) - 128) / 128
        np.testing.assert_allclose(backbone.prepare(a).numpy(), expected.numpy(), atol=1e-6)
    model = pytorch_fid_model(state, monkeypatch, resize_input=False, normalize_input=False)
    with torch.inference_mode():
        x = torch.stack([(torch.from_numpy(resize(a).transpose(2, 0, 1).copy()) - 128) / 128 for a in arrays])
        expected = model(x)[0].squeeze(3).squeeze(2).numpy()
    assert_close(np.concatenate([backbone.embed(a[None]) for a in arrays]), expected)
    assert backbone.meta["preprocess"] == "clean" and backbone.meta["scale"] == "[0, 255]"


def test_inception_fid_weights_from_the_hub_cache_or_one_line(fid_inception_weights, monkeypatch, tmp_path):
    path, _ = fid_inception_weights
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ValueError) as info:
        load_backbone("inception_fid")
    message = str(info.value)
    expected_path = os.path.join(str(tmp_path), "checkpoints", "pt_inception-2015-12-05-6726825d.pth")
    assert expected_path in message and "--weights FILE" in message and "--allow_download" in message
    assert "\n" not in message
    os.makedirs(tmp_path / "checkpoints")
    os.symlink(path, expected_path)
    backbone = load_backbone("inception_fid")
    assert backbone.meta["weights"] == "pytorch-fid pt_inception-2015-12-05-6726825d.pth"
    assert backbone.meta["weights_file"] == "pt_inception-2015-12-05-6726825d.pth"
    with pytest.raises(ValueError, match="not FID Inception .* weights"):
        torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "bad.pth")
        load_backbone("inception_fid", weights=tmp_path / "bad.pth")


# ---- DINOv2: timm's DINOv2 ViTs ----

TIMM_DINOV2 = {"dinov2_vits14": "vit_small_patch14_dinov2", "dinov2_vitb14": "vit_base_patch14_dinov2",
               "dinov2_vitl14": "vit_large_patch14_dinov2", "dinov2_vitg14": "vit_giant_patch14_dinov2"}


def original_pos_embed(pos_embed: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The original DINOv2's position embedding for a height x width input: the 37 x 37 grid (518 / 14) as it is
    at 518 x 518, otherwise resized bicubically, without antialiasing, by the scale factor (patches + 0.1) / 37
    along each axis (not to a size: the 0.1 moves every sample)."""
    rows, cols = height // 14, width // 14
    if (rows, cols) == (37, 37):
        return pos_embed
    dim = pos_embed.shape[-1]
    grid = pos_embed[:, 1:].reshape(1, 37, 37, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((rows + 0.1) / 37, (cols + 0.1) / 37), mode="bicubic", antialias=False)
    assert tuple(grid.shape[-2:]) == (rows, cols)
    return torch.cat((pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)), dim=1)


def timm_dinov2(name: str, size=(518, 518), state=None, **kwargs):
    """timm's DINOv2 ``name`` for a fixed ``size`` input (no dynamic_img_size: timm resamples nothing itself),
    checked to be the hub models' architecture. With ``state`` (our keys, the original checkpoints'): converted
    by timm's ``checkpoint_filter_fn`` (drops ``mask_token``, renames the giant's ``w12``/``w3`` to ``fc1``/``fc2``),
    the position embedding set by the original's rule for ``size``, loaded strictly; in eval mode."""
    import timm
    from timm.layers import LayerScale
    from timm.models.vision_transformer import checkpoint_filter_fn
    model = timm.create_model(TIMM_DINOV2[name], pretrained=False, num_classes=0, img_size=size,
                              dynamic_img_size=False, **kwargs)
    assert model.has_class_token and model.num_reg_tokens == 0 and not model.no_embed_class
    assert model.global_pool == "token" and isinstance(model.fc_norm, torch.nn.Identity)
    assert not model.dynamic_img_size and model.patch_embed.patch_size == (14, 14)
    assert all(isinstance(b.ls1, LayerScale) and isinstance(b.ls2, LayerScale) for b in model.blocks)
    assert all(m.eps == 1e-6 for m in model.modules() if isinstance(m, torch.nn.LayerNorm))
    if state is not None:
        converted = checkpoint_filter_fn({k: v for k, v in state.items() if k != "pos_embed"}, model)
        converted["pos_embed"] = original_pos_embed(state["pos_embed"], *size)
        model.load_state_dict(converted, strict=True)
    return model.eval()


@pytest.mark.parametrize("name", ["dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14"])
def test_dinov2_state_dict_loads_strictly_into_timm(name):
    """Every architecture (the giant with SwiGLU) has the original checkpoints' keys and shapes: timm's
    checkpoint_filter_fn turns our state dict into timm's DINOv2 keys, with nothing changed but the documented
    conversion, and it loads strictly, shapes equal (built on the meta device: no memory)."""
    from timm.models.vision_transformer import checkpoint_filter_fn
    from hubness_pr.extraction.backbones import dinov2
    with torch.device("meta"):
        own = dinov2.build(name).state_dict()
        model = timm_dinov2(name)
    converted = checkpoint_filter_fn(dict(own), model)
    renamed = {k.replace("mlp.w12.", "mlp.fc1.").replace("mlp.w3.", "mlp.fc2."): tuple(v.shape)
               for k, v in own.items() if k != "mask_token"}
    assert {k: tuple(v.shape) for k, v in converted.items()} == renamed
    assert renamed == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(converted, strict=True)
    assert tuple(own["mask_token"].shape) == (1, dinov2.ARCHS[name][0])
    assert ("blocks.0.mlp.w12.weight" in own) == (name == "dinov2_vitg14") and "blocks.0.ls1.gamma" in own
    assert registry.BUILTIN[name][0] == "dinov2"


@pytest.fixture(scope="module")
def vits14(tmp_path_factory):
    """Random ViT-S/14 weights in the original checkpoint's format, saved for ``--weights``."""
    from hubness_pr.extraction.backbones import dinov2
    state = sane_random_state(dinov2.build("dinov2_vits14"), seed=5)
    path = tmp_path_factory.mktemp("dinov2") / "dinov2_vits14_random.pth"
    torch.save(state, path)
    return path, state


def test_dinov2_network_equals_timm_at_any_grid(vits14):
    """Full depth at 518 (the 37 x 37 grid as it is), at small inputs (2 x 2 and 3 x 2 patches) and at 224
    (16 x 16), where the position grid is interpolated: timm's model built for each size, its position embedding
    set by the original's rule. Also the fused inference network."""
    path, state = vits14
    backbone = load_backbone("dinov2_vits14", weights=path)
    # LayerNorm's eps is beyond the tolerance with these weights: checked as a setting (timm's: in timm_dinov2)
    assert {m.eps for m in backbone.network.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-6}
    torch.manual_seed(0)
    for shape in [(518, 518), (28, 28), (42, 28), (224, 224)]:
        reference = timm_dinov2("dinov2_vits14", shape, state)
        x = torch.randn(2, 3, *shape)
        with torch.inference_mode():
            expected = reference(x).numpy()
            own = backbone.network(x).numpy()
            fused = backbone.inference_network("cpu")(x.contiguous(memory_format=torch.channels_last)).numpy()
        assert_close(own, expected)
        assert_close(fused, expected)


def test_dinov2_giant_swiglu_blocks_equal_timm():
    """The giant's SwiGLU FFN (which the ViT-S/14 network test does not reach): two blocks of dinov2_vitg14's
    width against timm's vit_giant_patch14_dinov2 of the same depth, same random weights, at 224."""
    from hubness_pr.extraction.backbones import dinov2
    dim, _, heads, ffn = dinov2.ARCHS["dinov2_vitg14"]
    own = dinov2.DinoVisionTransformer(dim, 2, heads, ffn).eval()
    state = sane_random_state(own, seed=6)
    own.load_state_dict(state)
    reference = timm_dinov2("dinov2_vitg14", (224, 224), state, depth=2)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert_close(own(x).numpy(), reference(x).numpy())


def test_dinov2_features_with_dgm_eval_and_tf1_preprocessing(vits14, images):
    from torchvision import transforms
    from hubness_pr.extraction.backbones.preprocess import IMAGENET_MEAN, IMAGENET_STD, tf1_bilinear
    path, state = vits14
    folder, arrays = images
    original = timm_dinov2("dinov2_vits14", (224, 224), state)
    result, meta = extract_path(folder, backbone=BackboneSpec("dinov2_vits14", weights=path), num_workers=0, device="cpu")
    # dgm-eval's DINOv2 transform, written out with torchvision (EDM2's 'pil' mode: PIL bicubic to 224, uint8)
    dgm = transforms.Compose([transforms.Resize((224, 224), interpolation=transforms.InterpolationMode.BICUBIC),
                              transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    with torch.inference_mode():
        expected = original(torch.stack([dgm(Image.fromarray(a)) for a in arrays])).numpy()
    assert result.features.shape == (3, 384) and meta["preprocess"] == "dgm_eval"
    assert meta["layer"] == "CLS token after the final norm" and meta["weights_file"] == path.name
    assert_close(result.features, expected)
    # torch-fidelity's: [0, 255], TF1 bilinear to 224, 255 x ImageNet mean/std
    tf1, meta = extract_path(folder, backbone=BackboneSpec("dinov2_vits14", weights=path, preprocess="tf1_bilinear"),
                             num_workers=0, device="cpu")
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255
    with torch.inference_mode():
        x = torch.stack([(tf1_bilinear(torch.from_numpy(a).permute(2, 0, 1).float(), 224) - mean) / std
                         for a in arrays])
        expected = original(x).numpy()
    assert meta["preprocess"] == "tf1_bilinear"
    assert_close(tf1.features, expected)
    assert np.abs(tf1.features - result.features).max() > 1e-3  # the two policies differ


def test_dinov2_missing_weights_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ValueError) as info:
        load_backbone("dinov2_vitl14")
    message = str(info.value)
    assert os.path.join(str(tmp_path), "checkpoints", "dinov2_vitl14_pretrain.pth") in message
    assert "--weights FILE" in message and "\n" not in message


# ---- CLIP: open_clip ----

def test_clip_vitb32_equals_open_clip(images, tmp_path, caplog):
    open_clip = pytest.importorskip("open_clip")
    folder, arrays = images
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None, force_quick_gelu=True)
    model.load_state_dict(sane_random_state(model, seed=9))
    path = tmp_path / "open_clip_vitb32_random.bin"
    torch.save(model.state_dict(), path)
    caplog.clear()
    result, meta = extract_path(folder, backbone=BackboneSpec("clip_vitb32", weights=path), num_workers=0, device="cpu")
    assert not [r for r in caplog.records if "No pretrained weights" in r.getMessage()]
    for a in arrays:  # the same network input as open_clip's own evaluation transform
        np.testing.assert_array_equal(preprocessing.ClipResize(224)(a).numpy(), preprocess(Image.fromarray(a)).numpy())
    with torch.inference_mode():
        expected = model.eval().encode_image(torch.stack([preprocess(Image.fromarray(a)) for a in arrays])).numpy()
    assert result.features.shape == (3, 512) and meta["preprocess"] == "clip" and meta["quick_gelu"] is True
    assert meta["weights_file"] == path.name and len(meta["weights_sha256"]) == 16
    assert_close(result.features, expected)


def cmmd_reference_input(image: np.ndarray, size: int = 336) -> torch.Tensor:
    """The CMMD reference's input, written from google-research cmmd/io_util.py (``_center_crop_and_resize``:
    centred square crop, PIL bicubic resize; /255) and embedding.py (CLIP mean/std; its
    jax.image.resize to the same size is the identity)."""
    im = Image.fromarray(image)
    w, h = im.size
    side = min(w, h)
    top, left = (h - side) // 2, (w - side) // 2
    im = im.crop((left, top, left + side, top + side)).resize((size, size), resample=Image.BICUBIC)
    x = np.asarray(im).astype(np.float32) / 255.0
    mean, std = np.array([0.48145466, 0.4578275, 0.40821073]), np.array([0.26862954, 0.26130258, 0.27577711])
    return torch.from_numpy(((x - mean) / std).astype(np.float32)).permute(2, 0, 1)


def test_clip_vitl14_336_is_the_cmmd_reference_embedding(images, tmp_path):
    """CMMD's CLIP: ViT-L/14 at 336 px, its input pipeline, the embedding divided by its norm (scenic's
    ``CLIP.encode_image(normalize=True)``): equal to open_clip's model with the same random weights."""
    open_clip = pytest.importorskip("open_clip")
    folder, arrays = images
    model = open_clip.create_model("ViT-L-14-336", pretrained=None, force_quick_gelu=True)
    model.load_state_dict(sane_random_state(model, seed=4))
    path = tmp_path / "open_clip_vitl14_336_random.bin"
    torch.save(model.state_dict(), path)
    result, meta = extract_path(folder, backbone=BackboneSpec("clip_vitl14_336", weights=path), num_workers=0,
                                device="cpu")
    inputs = [cmmd_reference_input(a) for a in arrays]
    for a, x in zip(arrays, inputs):
        np.testing.assert_allclose(preprocessing.CmmdResize(336)(a).numpy(), x.numpy(), rtol=0, atol=1e-6)
    with torch.inference_mode():
        expected = model.eval().encode_image(torch.stack(inputs), normalize=True).numpy()
    assert result.features.shape == (3, 768) and meta["preprocess"] == "cmmd" and meta["input_size"] == 336
    assert "L2-normalised" in meta["layer"] and "not" not in meta["layer"]
    np.testing.assert_allclose(np.linalg.norm(result.features, axis=1), 1.0, rtol=1e-5)
    assert_close(result.features, expected)


def test_clip_weights_only_from_the_cache_or_a_file(monkeypatch, tmp_path):
    pytest.importorskip("open_clip")
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *args, **kwargs: None)
    with pytest.raises(ValueError) as info:
        load_backbone("clip_vitl14_datacomp")
    message = str(info.value)
    assert "laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K" in message and "--weights FILE" in message
    assert "Hugging Face cache" in message and "\n" not in message
    with pytest.raises(ValueError, match="no such file"):
        load_backbone("clip_vitb32", weights=tmp_path / "missing.bin")
    torch.save({"visual.proj": torch.zeros(3)}, tmp_path / "bad.bin")
    with pytest.raises(ValueError, match="not open_clip ViT-B-32 weights"):
        load_backbone("clip_vitb32", weights=tmp_path / "bad.bin")


def test_new_preprocess_choices_are_declared_and_checked():
    assert list(preprocessing.PREPROCESSING) == list(registry.PREPROCESS)
    for name in ("pytorch_fid", "clean", "dgm_eval", "clip"):
        assert name in registry.PREPROCESS
    image = np.random.default_rng(2).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for name in ("pytorch_fid", "clean", "dgm_eval", "clip"):
        current, prep = preprocessing.make_preprocess(name, 32)
        out = prep(image)
        assert current == name and out.shape == (3, 32, 32) and out.dtype == torch.float32
        assert prep.describe()["input_size"] == 32
