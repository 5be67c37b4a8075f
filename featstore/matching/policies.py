"""One-to-one matching: the Hungarian assignment over a sparse candidate graph.

scipy.optimize.linear_sum_assignment needs the dense F_a x F_b matrix (17 GB at 65k x 65k in
float32), so the assignment is solved with its sparse sibling,
scipy.sparse.csgraph.min_weight_full_bipartite_matching (LAPJVsp), on the candidate pairs alone.
A full matching must exist there, so every feature also gets a private "unmatched" partner: the
graph is augmented with one dummy per feature, a dummy-dummy edge mirroring each candidate, and all
weights shifted by +1 (every full matching then has the same number of edges, so the shift changes
no argmax). The real edges of the optimum are the maximum-weight partial matching: the same total as
linear_sum_assignment on the dense matrix with 0 for non-candidates (tests check this), and features
whose candidates are all taken stay unmatched instead of being paired outside the candidates.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching


def one_to_one(feature_a: np.ndarray, feature_b: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidate pairs of largest total score with each feature used at most once.

    Each pair is given once. Pairs scoring <= 0 are never worth taking and are dropped.
    Returns (feature_a, feature_b, score).
    """
    keep = np.asarray(score, dtype=np.float64) > 0
    fa, fb, s = np.asarray(feature_a)[keep], np.asarray(feature_b)[keep], np.asarray(score, dtype=np.float64)[keep]
    if not len(s):
        return fa, fb, s.astype(np.float32)
    ids_a, ia = np.unique(fa, return_inverse=True)
    ids_b, ib = np.unique(fb, return_inverse=True)
    n_a, n_b = len(ids_a), len(ids_b)
    # rows: a features, then a dummy per b feature; columns: b features, then a dummy per a feature
    rows = np.concatenate([ia, np.arange(n_a), n_a + np.arange(n_b), n_a + ib])
    cols = np.concatenate([ib, n_b + np.arange(n_a), np.arange(n_b), n_b + ia])
    weights = np.concatenate([s + 1.0, np.ones(n_a + n_b + len(s))])
    graph = csr_matrix((weights, (rows, cols)), shape=(n_a + n_b, n_a + n_b))
    matched_rows, matched_cols = min_weight_full_bipartite_matching(graph, maximize=True)
    real = (matched_rows < n_a) & (matched_cols < n_b)
    pick_a, pick_b = matched_rows[real], matched_cols[real]
    scores = csr_matrix((s, (ia, ib)), shape=(n_a, n_b))
    return ids_a[pick_a], ids_b[pick_b], np.asarray(scores[pick_a, pick_b]).ravel().astype(np.float32)
