"""Protocol presets: each peer tool's precision/recall (and density/coverage) numbers, reproduced.

The toolkit's own metrics are exact (docs/definitions.md): every near-boundary decision is taken on
float64 distances. Published numbers were computed by other tools, each with its own arithmetic and
conventions; ``--protocol NAME`` (``evaluate(metrics=("protocol",), protocol=NAME)``) computes what
that tool computes, in its arithmetic, tile by tile (the peers build whole N x N matrices or their
own batches; nothing here holds more than one tile of distances):

=================  =====  ========  ============================================  ==================================
preset             k      boundary  distances (as the peer computes them)         peer
=================  =====  ========  ============================================  ==================================
``prdc``           5      ``<``     float64 ``-2 x.y + |x|^2 + |y|^2``, cast to   prdc 0.2 ``compute_prdc`` (sklearn
                                    float32, then float32 sqrt                    ``pairwise_distances``)
``dgm_eval``       5      ``<``     as prdc, on seeded subsets of at most 10,000  dgm-eval ``compute_scores`` ->
                                    of each set                                   ``metrics/prdc.py``
``torch_fidelity`` 3      ``<=``    float32 ``torch.cdist`` in batches of 10,000  torch-fidelity 0.4 ``prc``
``sg2ada``         3      ``<=``    features cast to float16, float16             StyleGAN2-ADA ``pr50k3``
                                    ``torch.cdist`` in its padded column batches  (``metrics/precision_recall.py``)
=================  =====  ========  ============================================  ==================================

Common to all four: a radius is the (k+1)-th smallest distance of a row that includes the sample's
distance to itself (as computed: not always exactly 0), the k-th nearest neighbour when the self
distance is the smallest; precision is the fraction of fakes inside some real ball, recall the
fraction of reals inside some fake ball (torch-fidelity's ``input1`` is the generated set and SG2-ADA
passes the probes as rows: the same quantities, its distances taken in its own orientation). prdc
and dgm-eval add density and coverage (``<``), torch-fidelity its F-score
``2 P R / max(1e-5, P + R)``. SG2-ADA's k-th distance is taken in float32 and rounded to float16, and
the comparison is made on float16 values (ties at float16's resolution count as inside).

dgm-eval draws ``min(10000, N, M)`` reals and as many fakes without replacement from numpy's global
generator (``np.random.choice``, reals first) and leaves that generator unseeded at that point; the
preset draws them from ``numpy.random.RandomState(protocol_seed)``, which is what dgm-eval draws after
``np.random.seed(protocol_seed)``.

Bits: prdc's and dgm-eval's float64 products follow the tiles' summation order, which sklearn's
chunks fix differently: a distance may differ in its last float64 bit before the cast to float32,
which changes a decision only when a pair sits on a float32 tie. torch-fidelity's and SG2-ADA's
``torch.cdist`` calls are made on the same batch shapes as theirs, so on the same device and torch
version they give the same bits; the float16 arithmetic of SG2-ADA on a GPU (cuBLAS) differs from
torch's on the CPU, so its preset reproduces a GPU run only on that GPU.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from hubness_pr.errors import InputError
from hubness_pr.metrics.registry import Metric, Passes, register

DGM_EVAL_SUBSET = 10000  # dgm-eval's --reduced_n default
PEER_BATCH = 10000       # torch-fidelity's prc_batch_size; SG2-ADA's row_batch_size and col_batch_size
SKLEARN_TILE = 4096      # prdc / dgm-eval: rows and columns of one float64 tile (any size gives the same values)


@dataclass(frozen=True)
class Preset:
    """What one peer tool does (module docstring)."""

    name: str
    peer: str
    k: int                  # the peer's default neighbourhood size
    strict: bool            # membership ``d < r`` (True) or ``d <= r``
    arithmetic: str         # "sklearn", "cdist32" or "cdist16"
    outputs: tuple          # the values it reports
    subset: int | None = None

    def describe(self) -> dict:
        """The conventions, as the run's ``params['protocol']`` records them."""
        return {"name": self.name, "peer": self.peer, "k": self.k, "boundary": "<" if self.strict else "<=",
                "distances": ARITHMETIC[self.arithmetic], "radius": "(k+1)-th smallest of a row with the self distance",
                "subset": self.subset, "outputs": list(self.outputs)}


ARITHMETIC = {
    "sklearn": "float64 -2x.y+|x|^2+|y|^2 cast to float32, float32 sqrt (sklearn pairwise_distances)",
    "cdist32": "float32 torch.cdist in batches of 10000",
    "cdist16": "float16 features, float16 torch.cdist in SG2-ADA's padded column batches",
}

PRESETS = {p.name: p for p in (
    Preset("prdc", "prdc 0.2 compute_prdc(real, fake, nearest_k=5)", 5, True, "sklearn",
           ("precision", "recall", "density", "coverage")),
    Preset("dgm_eval", "dgm-eval compute_scores: metrics/prdc.py compute_prdc on seeded subsets, nearest_k=5",
           5, True, "sklearn", ("precision", "recall", "density", "coverage"), subset=DGM_EVAL_SUBSET),
    Preset("torch_fidelity", "torch-fidelity 0.4 prc (input1 = generated, input2 = real, prc_neighborhood=3)",
           3, False, "cdist32", ("precision", "recall", "f_score")),
    Preset("sg2ada", "StyleGAN2-ADA metrics/precision_recall.py compute_pr (pr50k3: nhood_size=3, float16)",
           3, False, "cdist16", ("precision", "recall")),
)}


@dataclass(frozen=True)
class ProtocolResult:
    """One peer's numbers (None: not among what that peer reports); ``n_real_used`` and
    ``n_fake_used``: the samples it used (dgm-eval's subsets; otherwise every sample)."""

    name: str
    precision: float
    recall: float
    density: float | None
    coverage: float | None
    f_score: float | None
    n_real_used: int
    n_fake_used: int


def _rows(x, index: np.ndarray | None, dev) -> torch.Tensor:
    """A run's feature set (tensor or file rows) as a float32 tensor on ``dev``, in ``index`` order."""
    if not isinstance(x, torch.Tensor):  # hubness_pr.engine.mapped.MappedRows: read the rows used
        x, index = (x.whole() if index is None else x[np.asarray(index)]), None
    if index is not None:
        x = x[torch.as_tensor(index, device=x.device)]
    return x.to(dev, torch.float32)


def _sklearn_tile(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sklearn's euclidean distances of float32 rows (its ``_euclidean_distances_upcast``):
    ``-2 a.b + |a|^2 + |b|^2`` in float64, cast to float32, clamped at 0, float32 sqrt."""
    a64, b64 = a.double(), b.double()
    d = (a64 @ b64.T).mul_(-2.0)
    d += (a64 * a64).sum(1)[:, None]
    d += (b64 * b64).sum(1)[None, :]
    return d.to(torch.float32).clamp_(min=0.0).sqrt_()


def _batches(n: int, size: int) -> list:
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def _tiles(preset: Preset, rows: torch.Tensor, cols: torch.Tensor):
    """Yield ``(r0, r1, c0, c1, distances)`` over every row x column pair, in the preset's batches and
    arithmetic (``distances``: float32, or float16 for SG2-ADA)."""
    if preset.arithmetic == "sklearn":
        for r0, r1 in _batches(rows.shape[0], SKLEARN_TILE):
            for c0, c1 in _batches(cols.shape[0], SKLEARN_TILE):
                yield r0, r1, c0, c1, _sklearn_tile(rows[r0:r1], cols[c0:c1])
    elif preset.arithmetic == "cdist32":  # torch-fidelity's calc_cdist_full: both sides split(10000)
        for r0, r1 in _batches(rows.shape[0], PEER_BATCH):
            for c0, c1 in _batches(cols.shape[0], PEER_BATCH):
                yield r0, r1, c0, c1, torch.cdist(rows[r0:r1], cols[c0:c1])
    else:  # SG2-ADA's compute_distances with one process: zero rows padded, then chunk(num_batches)
        n_cols = cols.shape[0]
        num_batches = (n_cols - 1) // PEER_BATCH + 1
        padded = torch.nn.functional.pad(cols, [0, 0, 0, -n_cols % num_batches])
        chunks, start = [], 0
        for chunk in padded.chunk(num_batches):
            chunks.append((start, chunk))
            start += chunk.shape[0]
        for r0, r1 in _batches(rows.shape[0], PEER_BATCH):
            a = rows[r0:r1].unsqueeze(0)
            for c0, chunk in chunks:
                d = torch.cdist(a, chunk.unsqueeze(0))[0]
                c1 = min(n_cols, c0 + chunk.shape[0])
                if c1 > c0:
                    yield r0, r1, c0, c1, d[:, :c1 - c0]


def kth_radii(preset: Preset, x: torch.Tensor) -> torch.Tensor:
    """Each row's (k+1)-th smallest distance to the rows of ``x`` (its own included), from a running
    set of the k+1 smallest over the column tiles (the same value as the peer's whole-row k-th value)."""
    kk = preset.k + 1
    best = torch.full((x.shape[0], kk), float("inf"), dtype=torch.float32, device=x.device)
    for r0, r1, _, _, d in _tiles(preset, x, x):
        both = torch.cat([best[r0:r1], d.to(torch.float32)], dim=1)
        best[r0:r1] = both.topk(kk, dim=1, largest=False).values
    radii = best.max(dim=1).values
    return radii.to(torch.float16) if preset.arithmetic == "cdist16" else radii


_HALF_MAX = 65504.0  # float16's largest finite value


def _sq_norms(x: torch.Tensor) -> torch.Tensor:
    """Squared norms of float16 rows in float32: beyond :data:`_HALF_MAX`, ``torch.cdist`` in float16
    (which forms them in float16) overflows."""
    return (x.to(torch.float32) ** 2).sum(dim=1)


def _inside(d: torch.Tensor, r: torch.Tensor, strict: bool) -> torch.Tensor:
    return d < r if strict else d <= r


def protocol_values(preset: Preset, real: torch.Tensor, fake: torch.Tensor) -> dict:
    """The preset's precision, recall (and density, coverage or F-score) of float32 ``real`` and ``fake``."""
    if preset.arithmetic == "cdist16":
        real, fake = real.to(torch.float16), fake.to(torch.float16)
    n, m = real.shape[0], fake.shape[0]
    if preset.arithmetic == "cdist16" and not all(bool(torch.isfinite(x).all())
                                                  and float(_sq_norms(x).max()) <= _HALF_MAX for x in (real, fake)):
        raise InputError("the features or their squared norms overflow float16 (beyond 65504) inside torch.cdist, "
                         "as they would in StyleGAN2-ADA: the sg2ada protocol needs norms below 256, as VGG16's")
    r_real, r_fake = kth_radii(preset, real), kth_radii(preset, fake)
    dev = real.device
    fake_in = torch.zeros(m, dtype=torch.bool, device=dev)
    real_in = torch.zeros(n, dtype=torch.bool, device=dev)
    out = {}
    if preset.arithmetic == "cdist16":  # SG2-ADA: the probes are the rows, the manifold the columns
        for r0, r1, c0, c1, d in _tiles(preset, fake, real):
            fake_in[r0:r1] |= _inside(d, r_real[None, c0:c1], preset.strict).any(dim=1)
        for r0, r1, c0, c1, d in _tiles(preset, real, fake):
            real_in[r0:r1] |= _inside(d, r_fake[None, c0:c1], preset.strict).any(dim=1)
    else:  # one real x fake pass (prdc and torch-fidelity read both decisions from the same distances)
        count = torch.zeros(m, dtype=torch.int64, device=dev)
        nearest = torch.full((n,), float("inf"), dtype=torch.float32, device=dev)
        for r0, r1, c0, c1, d in _tiles(preset, real, fake):
            inside = _inside(d, r_real[r0:r1, None], preset.strict)
            fake_in[c0:c1] |= inside.any(dim=0)
            count[c0:c1] += inside.sum(dim=0)
            real_in[r0:r1] |= _inside(d, r_fake[None, c0:c1], preset.strict).any(dim=1)
            nearest[r0:r1] = torch.minimum(nearest[r0:r1], d.min(dim=1).values)
        if "density" in preset.outputs:  # as prdc: numpy's means of the int counts and of the flags
            out["density"] = float((1.0 / float(preset.k)) * count.cpu().numpy().mean())
            out["coverage"] = float((nearest < r_real).cpu().numpy().mean())
    # the peers' means: numpy's float64 mean of booleans (prdc) or torch's float32 mean (the others)
    if preset.arithmetic == "sklearn":
        out["precision"] = float(fake_in.cpu().numpy().mean())
        out["recall"] = float(real_in.cpu().numpy().mean())
    else:
        out["precision"] = float(fake_in.to(torch.float32).mean())
        out["recall"] = float(real_in.to(torch.float32).mean())
    if "f_score" in preset.outputs:
        p, r = out["precision"], out["recall"]
        out["f_score"] = 2 * p * r / max(1e-5, p + r)
    return out


def subset_indices(preset: Preset, n_real: int, n_fake: int, seed: int) -> tuple:
    """dgm-eval's subsets (module docstring): (real indices, fake indices), or (None, None)."""
    if preset.subset is None:
        return None, None
    rng = np.random.RandomState(seed)
    reduced = min(preset.subset, n_real, n_fake)
    real_idx = rng.choice(n_real, reduced, replace=False)
    fake_idx = rng.choice(np.arange(n_fake), reduced, replace=False)
    return real_idx, fake_idx


def preset_of(name: str, k: int | None = None) -> Preset:
    """The preset ``name``, with its neighbourhood size set to ``k`` (None: the peer's default; prdc's
    ``nearest_k``, dgm-eval's ``--nearest_k``, torch-fidelity's ``prc_neighborhood``, SG2-ADA's
    ``nhood_size``)."""
    preset = PRESETS[name]
    return preset if k is None else replace(preset, k=int(k))


def evaluate_protocol(name: str, real, fake, seed: int = 0, device=None, k: int | None = None) -> ProtocolResult:
    """The preset ``name``'s numbers for ``real`` and ``fake`` (tensors, arrays or file rows); ``k``:
    :func:`preset_of`."""
    preset = preset_of(name, k)
    dev = device if device is not None else (real.device if isinstance(real, torch.Tensor) else "cpu")
    real_idx, fake_idx = subset_indices(preset, real.shape[0], fake.shape[0], seed)
    for role, x, idx in (("real", real, real_idx), ("fake", fake, fake_idx)):
        used = x.shape[0] if idx is None else idx.size
        if used < preset.k + 1:
            raise InputError(f"the {name} protocol needs at least k + 1 = {preset.k + 1} {role} samples; got {used}",
                             role=role)
    xr, xf = _rows(real, real_idx, dev), _rows(fake, fake_idx, dev)
    with torch.inference_mode():
        values = protocol_values(preset, xr, xf)
    return ProtocolResult(name=name, precision=values["precision"], recall=values["recall"],
                          density=values.get("density"), coverage=values.get("coverage"),
                          f_score=values.get("f_score"), n_real_used=xr.shape[0], n_fake_used=xf.shape[0])


def _finish(p: Passes) -> ProtocolResult:
    o = p.options
    return evaluate_protocol(o.protocol, p.real_x, p.fake_x, o.protocol_seed, p.ctx.device, o.protocol_k)


def _params(o) -> dict:
    return {"protocol": dict(preset_of(o.protocol, o.protocol_k).describe(), seed=o.protocol_seed)}


register(Metric("protocol", _finish, default=False, order=96, params=_params,
                doc="a peer tool's precision/recall (density/coverage) in its own arithmetic (--protocol)"))
