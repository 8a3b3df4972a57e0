"""Start-up of the commands: their parsers list every backbone and --preprocess choice without
importing a backbone module or torchvision, so a metric run on feature files never pays for them
(bench/bench_startup.py measures what that saves)."""
import json
import subprocess
import sys

import numpy as np

from hubness_pr.extraction.backbones import BUILTIN, PREPROCESS, PREPROCESS_ALIASES, available_backbones
from hubness_pr.commands.features import build_parser as features_parser
from hubness_pr.commands.metrics import build_parser as metrics_parser
from tests.cli_helpers import ROOT


def test_help_lists_every_backbone_and_preprocess_choice():
    for build in (features_parser, metrics_parser):
        # argparse wraps lines at hyphens too ("EfficientNet-\nLite0"): joined back before matching
        text = " ".join(build().format_help().split()).replace("- ", "-")
        for name in available_backbones():
            assert f"{name}: {' '.join(BUILTIN[name][1].split())}" in text, name
        for name, description in PREPROCESS.items():
            assert f"{name}: {' '.join(description.split())}" in text, name
        for old, new in PREPROCESS_ALIASES.items():
            assert f"{old}: old name of {new}" in text, old


PROBE = """
import json, sys
from hubness_pr.commands.features import build_parser
build_parser().format_help()
torch_for_features_help = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
from hubness_pr.commands.metrics import main
status = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split(".")[0] == "torchvision" or m.startswith("hubness_pr.extraction.backbones."))
print(json.dumps({"status": status, "features_help": torch_for_features_help, "metric_run": heavy}), file=sys.stderr)
"""


def test_a_metric_run_on_feature_files_imports_no_backbone(tmp_path):
    """A fresh interpreter (what is tested is what a new process imports)."""
    rng = np.random.default_rng(0)
    for name in ("real", "fake"):
        np.save(tmp_path / f"{name}.npy", rng.normal(size=(50, 8)).astype(np.float32))
    proc = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "real.npy"), str(tmp_path / "fake.npy"),
                           "--metrics", "pr"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.stdout.startswith("pr.precision: "), proc.stderr
    seen = json.loads(proc.stderr.strip().splitlines()[-1])
    assert seen == {"status": 0, "features_help": [], "metric_run": []}
