"""When can eP&R be trusted? A study on real image features with generated sets of known defects.

Two steps, so that the feature extraction can run on a GPU machine apart from the metrics:

1. ``extract``: images of Fashion-MNIST (the Debian package ``dataset-fashion-mnist``) and of
   scikit-learn's digits, a seeded real set, and "generated" sets with known defects made from
   held-out images (a matched set, mode collapse, an over-represented class, pixel noise, blur,
   memorised copies of the real set, and mixtures); features of each set through each backbone::

       python -m bench.epr_study extract --out FEATDIR [--dataset fashion|digits|all]
           [--backbones efficientnet_lite0,vgg16_random] [--device auto] [--max_n 20000]

   writes ``FEATDIR/{dataset}_{backbone}_{set}.npy`` (float32 features, one row per image),
   ``FEATDIR/{dataset}_{set}_labels.npy`` (class per row), ``FEATDIR/{dataset}_{set}_items.npy``
   (index of each row's source image in the dataset: Fashion's 60k train images then its 10k test
   images; scikit-learn's order for digits) and ``FEATDIR/manifest.json`` (sizes, seeds,
   transforms, backbone meta, timings). Only the clean images in use and the four transformed sets
   go through the networks; every other set is a selection of rows of those features. Nothing is
   downloaded.

2. ``run``: exact P&R, eP&R with exact hub selection and with approximate hub selection
   (``knn='hnsw'``, where faiss is installed), for every dataset, backbone, set, size N, k and hub
   threshold t in {k-1, k, k+1, 2k}::

       python -m bench.epr_study run --features FEATDIR [--sizes 1000,5000,20000] [--ks 3,5,10]
           [--out docs] [--json bench/results/epr_study.json] [--knn exact,hnsw] [--toy]

   writes ``OUT/epr_study.md`` (tables, findings generated from the numbers), figures
   ``OUT/epr_study_*.png`` and the raw numbers as JSON: ``cases``, one record per (dataset,
   backbone, set, N, k, t) with ``p``, ``r`` (exact), ``ep``, ``er`` (eP&R), ``ep_minus_p``,
   ``er_minus_r``, hub counts and fractions, ``wep``, ``wer`` (hubs weighted by 1/k-occurrence),
   ``hub_fakes_in_real_manifold`` and ``hnsw`` (approximate selection); ``timing`` (exact P&R
   alone vs eP&R alone); ``checks``; ``notes``; ``meta`` (machines, versions, settings).
   N is capped per dataset at its smallest set (digits: a few hundred), so every set is compared
   at the same N. ``--hnsw_max_n`` (default 5000) limits the approximate selection, which costs
   more than the exact one on a CPU at these sizes (faiss builds two indexes per call).
   ``--supplement OTHER.json`` (repeatable) adds a section for another run's numbers (approximate
   selection at a larger N run on another machine: its own table, and how far its exact values are
   from this run's on the cases both computed).

3. ``report``: the report again from a run's JSON (``--json``, ``--supplement``, ``--out``), without
   computing; ``meta.provenance`` in the JSON, where present, replaces the generated line on the
   commit and command (a run made elsewhere from a copy of the code).

Extraction on a GPU machine: pass ``--fashion_dir`` where Fashion-MNIST's .gz files were carried,
and ``--num_workers`` up to the cores there (image decoding and resizing run in those workers).

``--toy`` (both steps): digits only, N = 80, k = 3, t in {2, 3}, efficientnet_lite0, the weak
transforms left out; under a minute on a 2-core CPU (tests/test_epr_study.py). Its outputs are
named ``epr_study_toy*``.

Modules: ``config`` (settings, seeds, log, machine, files), ``prepare`` (step 1: images, sets,
features), ``run`` (step 2: the metrics), ``analysis`` (what the report says, from the cases),
``report`` (tables, figures, step 3), ``cli`` (the command line); ``python -m bench.epr_study``
runs :func:`main`.
"""
from __future__ import annotations

from bench.epr_study.cli import main
from bench.epr_study.config import SETS, SIDE, TOY_SKIP
from bench.epr_study.prepare import pixel_features

__all__ = ["main", "SETS", "SIDE", "TOY_SKIP", "pixel_features"]
