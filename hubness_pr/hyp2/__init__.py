"""HyP² loss for multi-label image retrieval with hash codes (Xu et al., ACM MM 2022).

The toolkit's sibling of ``JerryXu0129/HyP2-Loss``: ``retrieval.py`` at the top of the repository is
its command line (:mod:`hubness_pr.commands.retrieval`). Library::

    from hubness_pr.hyp2 import HyP2Loss, hyp2_loss, lookup, hash_codes, retrieval_scores
    zeta = lookup(bits=48, num_classes=20).value           # margin from the code table
    loss = HyP2Loss(num_classes=20, hash_bit=48, zeta=zeta)  # learnable proxies inside
    scores = retrieval_scores(q_codes, db_codes, q_labels, db_labels, R=5011)  # mAP@R, ties by index
"""
from hubness_pr.hyp2.loss import HyP2Loss, LossTerms, hyp2_loss
from hubness_pr.hyp2.ranking import RetrievalScores, hamming_ranking, hash_codes, retrieval_scores
from hubness_pr.hyp2.zeta import Zeta, code_dimension, lookup

from hubness_pr.version import __version__  # one version for the whole toolkit

__all__ = ["HyP2Loss", "LossTerms", "RetrievalScores", "Zeta", "code_dimension", "hamming_ranking", "hash_codes",
           "hyp2_loss", "lookup", "retrieval_scores"]
