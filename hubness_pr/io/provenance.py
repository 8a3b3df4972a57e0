"""Which feature extractor made a feature file, and whether two files can be compared.

Features are comparable only when one extractor made both: the same network, weights, layer and
preprocessing. Real features from ``vgg16_random`` seed 0 against generated ones from seed 1 live
in unrelated spaces and give precision = recall = 0 without any error, so the metric command
compares the provenance that extraction records in ``meta`` (docs/definitions.md, "Feature files")
before computing.
"""
from __future__ import annotations

# The meta fields that change what a feature vector means. Not among them: where the images came
# from, how many there were, the subset, versions, the weights file's name (its SHA-256 is), and
# float16 inference (``half``: the same features up to rounding).
EXTRACTOR_FIELDS = ("backbone", "weights", "weights_sha256", "weights_seed", "layer", "preprocess", "input_size",
                    "resize", "scale", "mean", "std", "transform_input")


def extractor_of(meta) -> dict | None:
    """The extractor fields of a feature file's ``meta``; None when it records no backbone
    (plain arrays, files of other tools: unknown provenance)."""
    if not isinstance(meta, dict) or not meta.get("backbone"):
        return None
    return {name: meta.get(name) for name in EXTRACTOR_FIELDS}


def extractor_differences(meta_a, meta_b) -> list[tuple[str, object, object]] | None:
    """``[(field, value in a, value in b), ...]`` where the two files' extractors differ (empty: the
    same extractor), or None when either file's provenance is unknown."""
    a, b = extractor_of(meta_a), extractor_of(meta_b)
    if a is None or b is None:
        return None
    return [(name, a[name], b[name]) for name in EXTRACTOR_FIELDS if a[name] != b[name]]


def describe_differences(differences, limit: int = 3) -> str:
    """``backbone vgg16 vs efficientnet_lite0, weights_seed 0 vs 1`` (the first ``limit``)."""
    def short(value) -> str:
        text = "none" if value is None else str(value)
        return text if len(text) <= 24 else text[:21] + "..."
    shown = ", ".join(f"{name} {short(a)} vs {short(b)}" for name, a, b in differences[:limit])
    return shown + (f" (+{len(differences) - limit} more)" if len(differences) > limit else "")
