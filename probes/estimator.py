"""The probe estimator: L2-regularised logistic regression on standardised features, its strength chosen by inner
cross-validation (:class:`LinearProbe`, an sklearn estimator with fit / predict / score). :mod:`probes.linear` runs
it per layer and head under outer cross-validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from probes.config import DEFAULT_CS

__all__ = ["NEAR_CONSTANT", "LinearProbe", "check_split"]

# Features whose standard deviation is below this share of the largest one are constant up to float noise (e.g. the
# ~1e-17 residue LEACE leaves in MiniLM's three near-dead last-layer features, std 1e-33 and 1e-9 against a median
# of 0.16). sklearn's StandardScaler only treats a feature as constant when its variance is within float
# round-off of zero, so it would blow such a residue up to unit scale and hand the probe a spurious clean signal.
NEAR_CONSTANT = 1e-6


def check_split(y: np.ndarray, where: str, *, min_per_class: int = 1, fix: str = "") -> None:
    """Raise ``ValueError`` unless ``y`` has >= 2 classes and each has >= ``min_per_class`` examples.

    Args:
        y: labels of one split, shape (n,).
        where: the split's name for the message (``"fit"``, ``"fold 2 test"``...).
        min_per_class: smallest class size allowed.
        fix: how to repair it, appended to the message.
    """
    classes, counts = np.unique(y, return_counts=True)
    found = dict(zip(classes.tolist(), counts.tolist()))
    if len(classes) < 2:
        raise ValueError(
            f"split {where!r} has fewer than two classes (counts {found}); a probe needs at least two "
            f"classes in every split. {fix or 'Fix: give data with both genders / several labels.'}"
        )
    if counts.min() < min_per_class:
        small = {c: k for c, k in found.items() if k < min_per_class}
        fix = fix or f"Fix: lower the number of folds to {counts.min()} or fewer, or add data."
        raise ValueError(
            f"split {where!r} has too few examples per class for {min_per_class} folds: {small} "
            f"(all counts {found}). {fix}"
        )


def _accuracy(estimator: object, X: np.ndarray, y: np.ndarray) -> float:
    """Accuracy scorer for the inner cross-validation (sklearn's validating scorer costs more than the fit)."""
    return float(np.mean(estimator.predict(X) == y))


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y`` (as ``sklearn.metrics.balanced_accuracy_score``)."""
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def _auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula with ties at half: ``(R_pos - n_pos (n_pos + 1) / 2) /
    (n_pos n_neg)``, where ``R_pos`` is the sum of the positives' ranks."""
    n_pos = int(positive.sum())
    ranks = rankdata(score)  # average ranks for ties
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (len(score) - n_pos)))


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Logistic-regression probe with cross-validated L2 strength on standardised features.

    Args:
        Cs: inverse regularisation strengths tried by inner cross-validation.
        cv: inner folds (stratified; stratified-grouped when ``fit`` gets ``groups``).
        max_iter: iteration limit of the lbfgs solver.
        tol: stopping tolerance of the solver; 1e-3 changes probe accuracy by well under a fold's interval and
            roughly halves the time of many-class probes (e.g. 43 BUG professions) against sklearn's 1e-4.
        seed: seed of the inner fold shuffle.

    Attributes:
        informative_: mask of the features used, shape (d,): a feature whose spread is below
            :data:`NEAR_CONSTANT` times the largest spread is treated as constant and dropped.
        scaler_: the fitted ``StandardScaler`` (of the informative features).
        model_: the fitted ``LogisticRegressionCV``.
        classes_: class labels, shape (n_classes,).
        C_: the chosen strength.
    """

    _parameter_constraints: ClassVar[dict] = {
        "Cs": ["array-like"],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "seed": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(
        self, *, Cs: Sequence[float] = DEFAULT_CS, cv: int = 3, max_iter: int = 1000, tol: float = 1e-3, seed: int = 0
    ) -> None:
        self.Cs = Cs
        self.cv = cv
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> LinearProbe:
        """Fit on X (n, d) and y (n,); ``groups`` (n,) keeps each group inside one inner fold.

        Raises:
            ValueError: fewer than two classes, or a class with fewer than ``cv`` examples.
        """
        X, y = validate_data(self, X, y, dtype=np.float64)
        if not len(self.Cs) or any(not isinstance(c, Real) or c <= 0 for c in self.Cs):
            raise ValueError(f"LinearProbe: Cs={self.Cs!r}; give positive numbers, e.g. {DEFAULT_CS}.")
        check_split(
            y,
            "fit",
            min_per_class=self.cv,
            fix="Fix: give at least two classes with at least cv examples each (lower LinearProbe(cv=...) or "
            "drop rare classes).",
        )
        splitter = (
            StratifiedKFold(self.cv, shuffle=True, random_state=self.seed)
            if groups is None
            else StratifiedGroupKFold(self.cv, shuffle=True, random_state=self.seed)
        )
        folds = list(splitter.split(X, y, groups))
        spread = X.std(axis=0)
        self.informative_ = spread > NEAR_CONSTANT * spread.max()
        if not self.informative_.any():  # e.g. [CLS] at the embeddings: the same vector for every text
            self.informative_[:] = True  # StandardScaler maps exact constants to 0: the probe learns the prior only
        self.scaler_ = StandardScaler().fit(X[:, self.informative_])
        with threadpool_limits(limits=1, user_api="blas"):  # see module docstring: small problems, one thread
            self.model_ = LogisticRegressionCV(
                Cs=list(self.Cs),
                cv=folds,
                l1_ratios=(0.0,),
                scoring=_accuracy,
                max_iter=self.max_iter,
                tol=self.tol,
                random_state=self.seed,
                use_legacy_attributes=False,
            ).fit(self._standardised(X), y)
        self.classes_ = self.model_.classes_
        self.C_ = float(self.model_.C_)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, n_classes), columns in ``classes_`` order."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.model_.predict_proba(self._standardised(X))

    def _standardised(self, X: np.ndarray) -> np.ndarray:
        return self.scaler_.transform(X[:, self.informative_])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most probable class, shape (n,)."""
        check_is_fitted(self)
        return self.classes_[self.predict_proba(X).argmax(1)]

    def score(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
        """Accuracy on (X, y)."""
        check_is_fitted(self)
        return float(np.average(self.predict(X) == np.asarray(y), weights=sample_weight))
