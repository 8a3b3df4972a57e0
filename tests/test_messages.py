"""Messages: one line naming the option, file or parameter at fault; logs only when asked for."""
import numpy as np
import pytest
import torch

import hubness_pr
from hubness_pr.commands import features as features_main
from hubness_pr.commands import metrics as metrics_main
from hubness_pr.extraction.backbones import load_backbone
from hubness_pr.extraction.extract import extract_features, extract_path
from hubness_pr.engine.inputs import check_feature_input
from tests.cli_helpers import assert_one_line_error, call

X = np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32)


@pytest.mark.parametrize("function", [hubness_pr.evaluate, hubness_pr.precision_recall, hubness_pr.density_coverage,
                                      hubness_pr.efficient_precision_recall, hubness_pr.realism_scores])
@pytest.mark.parametrize("side", ["real", "fake"])
@pytest.mark.parametrize("bad, error, message", [
    (None, TypeError, "expected a feature array of shape \\(n_samples, dim\\), got None"),
    (torch.from_numpy(X).bfloat16(), TypeError, "torch tensors of dtype torch.bfloat16 are not supported; convert"),
    (X[:, 0], ValueError, "expected a 2-D feature array of shape \\(n_samples, dim\\), got shape \\(20,\\)"),
    (X[:0], ValueError, "the feature array is empty"),
])
def test_feature_parameters_are_named(function, side, bad, error, message):
    arrays = {"real": X, "fake": X, side: bad}
    with pytest.raises(error, match=f"^{side}: {message}"):
        function(**arrays)


@pytest.mark.parametrize("bad, error, message", [
    (None, TypeError, "expected a feature array .*got None"),
    (torch.zeros((5, 3), dtype=torch.bfloat16), TypeError, "torch tensors of dtype torch.bfloat16 are not supported"),
    (torch.zeros(5), ValueError, "expected a 2-D feature array .*got shape \\(5,\\)"),
    ([[[1.0]]], ValueError, "expected a 2-D feature array .*got shape \\(1, 1, 1\\)"),
])
def test_feature_input_check_without_a_copy(bad, error, message):
    with pytest.raises(error, match=f"^features: {message}"):
        check_feature_input(bad, "features")
    check_feature_input(torch.zeros((5, 3), dtype=torch.float16), "features")


@pytest.mark.parametrize("bad, error, message", [
    (None, TypeError, "expected a feature array .*got None"),
    (torch.zeros((5, 3), dtype=torch.bfloat16), TypeError, "torch tensors of dtype torch.bfloat16 are not supported"),
    (np.zeros(5, np.float32), ValueError, "expected a 2-D feature array .*got shape \\(5,\\)"),
])
def test_nearest_neighbors_names_its_features_parameter(bad, error, message):
    with pytest.raises(error, match=f"^features: {message}"):
        hubness_pr.nearest_neighbors(bad, 3)


def test_metrics_none_is_a_type_error_naming_the_parameter():
    with pytest.raises(TypeError, match="The 'metrics' parameter of evaluate must be a list or a comma string.*Got None"):
        hubness_pr.evaluate(real=X, fake=X, metrics=None)


def test_extraction_parameters_are_named(tmp_path):
    with pytest.raises(TypeError, match="'path' parameter of extract_path"):
        extract_path(None)
    with pytest.raises(TypeError, match="'source' parameter of extract_features .*Got NoneType"):
        extract_features(None, None)
    lite = load_backbone("efficientnet_lite0")
    for images, error, message in [(None, TypeError, "Got None"), (np.zeros((8, 8, 3), np.uint8), ValueError, "Got uint8"),
                                   (np.zeros((2, 0, 0, 3), np.uint8), ValueError, "empty images")]:
        with pytest.raises(error, match=f"The 'images' parameter of embed .*{message}"):
            lite.embed(images)


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    np.savez("real.npz", feature=rng.standard_normal((140, 4)).astype(np.float32), radii_hub=np.ones(3))
    np.savez("fake.npz", feature=rng.standard_normal((130, 4)).astype(np.float32), meta=np.array("not json"))
    np.save("empty_images.npy", np.zeros((4, 0, 0, 3), np.uint8))
    return tmp_path


def test_logs_only_when_asked(files):
    quiet = call(metrics_main.main, "real.npz", "fake.npz", "--metrics", "pr")
    assert quiet.returncode == 0 and quiet.stderr == (
        "fake.npz: 'meta' is not a JSON object (Expecting value: line 1 column 1 (char 0)); ignored\n")
    errors_only = call(metrics_main.main, "real.npz", "fake.npz", "--metrics", "pr", "-q")
    assert errors_only.returncode == 0 and errors_only.stderr == ""
    verbose = call(metrics_main.main, "real.npz", "fake.npz", "--metrics", "pr", "-v")
    assert "real: real.npz, 140x4, key 'feature'" in verbose.stderr and "ignoring radii_hub" in verbose.stderr
    shown = [line for line in verbose.stdout.splitlines()[:-1] if ".expected." not in line]  # -v: expected values
    assert shown == quiet.stdout.splitlines()[:-1]  # all but "seconds: ..."
    assert [line.split(":")[0] for line in verbose.stdout.splitlines() if ".expected." in line] == [
        "pr.expected.precision", "pr.expected.recall"]


@pytest.mark.parametrize("main, args, status, fragment", [
    (metrics_main.main, ["real.npz", "fake.npz", "--device", "cuda:99"], 1, "error: --device cuda:99: "),
    (metrics_main.main, ["real.npz", "fake.npz", "--device", "tpu"], 2, "argument --device: expected auto, cpu"),
    (metrics_main.main, ["real.npz", "fake.npz", "--metrics", "precision"], 2, "argument --metrics: unknown metric "
                                                                               "'precision'"),
    (features_main.main, ["empty_images.npy", "-o", "f.npz"], 1, "empty_images.npy: the image array is empty"),
    (features_main.main, ["real.npz", "-o", "f.npz", "--device", "cuda:99"], 1, "error: --device cuda:99: "),
])
def test_bad_input_is_one_line_naming_the_culprit(files, main, args, status, fragment):
    assert_one_line_error(call(main, *args), fragment, status=status)
