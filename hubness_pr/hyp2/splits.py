"""The data of a retrieval run: a split of labelled items (:class:`Split`) and a dataset's splits
(:class:`RetrievalData`), shared by the dataset loaders (:mod:`hubness_pr.hyp2.datasets`,
:mod:`hubness_pr.hyp2.mosaic`), training and evaluation."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hubness_pr.extraction.images import ImageSource


@dataclass
class Split:
    """Items with multi-hot ``labels`` (n, C) uint8: images (``source``) or feature vectors (``features``)."""

    names: list
    labels: np.ndarray = field(repr=False)
    source: ImageSource | None = field(default=None, repr=False)
    features: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, indices) -> Split:
        indices = np.asarray(indices, dtype=np.int64)
        return Split(names=[self.names[i] for i in indices], labels=self.labels[indices],
                     source=None if self.source is None else self.source.subset(indices),
                     features=None if self.features is None else self.features[indices])

    def without(self, names) -> Split:
        """The items whose name is not in ``names``."""
        drop = set(names)
        return self.subset([i for i, n in enumerate(self.names) if n not in drop])


@dataclass
class RetrievalData:
    name: str
    classes: list
    train: Split
    val: Split
    database: Split
    query: Split
    R: int
    meta: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def kind(self) -> str:
        return "features" if self.train.features is not None else "images"

    def validation_database(self) -> Split:
        """The database without the validation items (they are the validation queries)."""
        return self.database.without(self.val.names)

    def sizes(self) -> dict:
        return {"n_train": len(self.train), "n_val": len(self.val), "n_database": len(self.database),
                "n_query": len(self.query), "n_val_database": len(self.validation_database())}
