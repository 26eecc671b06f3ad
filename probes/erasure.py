"""Concept erasure and amnesic probing: remove linearly decodable gender at one layer, then see what changes.

Erasure is LEACE (Belrose et al. 2023, "LEACE: Perfect linear concept erasure in closed form"), from the
``concept-erasure`` package, whose split we keep: a *fitter* (``LeaceFitter``) gathers the statistics of
representations x and concept z, possibly over many batches, and the *eraser* (``LeaceEraser``, the frozen
result) is the affine map ``x -> x - W^+ P W (x - mean_x)`` after which no linear classifier predicts z better than
a constant (in the data the statistics came from), with the least mean squared change to x.

- :class:`ConceptEraser` is the sklearn-contract wrapper for arrays (fit on (X, z), ``transform``).
- :func:`fit_eraser` streams a model's hidden states at one layer through a ``LeaceFitter``.
- :func:`erase_layer` is a context manager that applies an eraser to every token's hidden state at that layer
  inside the model (a forward hook, removed in ``finally``), so everything above the layer sees erased input.
- :func:`amnesic_effect` is amnesic probing (Elazar et al. 2021, "Amnesic Probing: Behavioral Explanation with
  Amnesic Counterfactuals", TACL): task accuracy and the bias metrics with and without erasure, and fresh probes
  on the erased representations (at the erased layer gender must be at chance; above it, it may come back).

Layers are hidden-state indices as in :mod:`probes.extract`: 0 erases the embeddings' output, ``k`` the output of
block ``k - 1``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from concept_erasure import LeaceEraser, LeaceFitter
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import Tensor

from pipeline.data import TaskData
from pipeline.erasure_hooks import concept_matrix, erasing, fit_leace
from pipeline.metrics import classifier_logits, counterfactual_metrics, extrinsic_metrics
from pipeline.models import LoadedModel
from pipeline.schema import tidy
from probes.config import FIT_ON, FitOn
from probes.extract import extract
from probes.linear import LinearProbe, probe_layers, text_groups

__all__ = ["FIT_ON", "ConceptEraser", "FitOn", "amnesic_effect", "erase_layer", "fit_eraser"]

log = logging.getLogger(__name__)


class ConceptEraser(TransformerMixin, BaseEstimator):
    """LEACE concept erasure on arrays, with the sklearn estimator contract.

    Args:
        method: ``"leace"`` (least-squares optimal) or ``"orth"`` (orthogonal projection).
        shrinkage: shrink the covariance estimate of X (helps when n is not much larger than d).

    Attributes:
        eraser_: the fitted ``concept_erasure.LeaceEraser`` (usable with :func:`erase_layer`).
        classes_: the concept's classes, shape (K,).
    """

    _parameter_constraints: ClassVar[dict] = {"method": [StrOptions({"leace", "orth"})], "shrinkage": ["boolean"]}

    def __init__(self, *, method: Literal["leace", "orth"] = "leace", shrinkage: bool = True) -> None:
        self.method = method
        self.shrinkage = shrinkage

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: np.ndarray, z: np.ndarray) -> ConceptEraser:
        """Fit on X (n, d) and concept labels z (n,) with at least two classes."""
        X, z = validate_data(self, X, z, dtype=np.float64)
        self.classes_ = np.unique(z)
        if len(self.classes_) < 2:
            raise ValueError(f"the concept has one class only ({self.classes_.tolist()}); erasure needs two or more.")
        fitter = LeaceFitter.fit(
            torch.from_numpy(X), concept_matrix(z, self.classes_), method=self.method, shrinkage=self.shrinkage
        )
        self.eraser_ = fitter.eraser
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Erase the concept from X (n, d); same shape and dtype."""
        check_is_fitted(self)
        X_in = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        out = self.eraser_(torch.from_numpy(np.ascontiguousarray(X_in, dtype=np.float64)))
        return out.numpy().astype(X_in.dtype)


@contextmanager
def erase_layer(loaded: LoadedModel, layer: int, eraser: LeaceEraser | Callable[[Tensor], Tensor]) -> Iterator[None]:
    """Within the block, apply ``eraser`` to every token's hidden state ``layer`` in every forward pass.

    The hook runs before any other forward hook of that module (so ``output_hidden_states`` records the erased
    state), after the erasers a concept-erased variant carries at that layer (:mod:`pipeline.erasure_hooks`), and
    is removed on exit, also after an exception.

    Args:
        loaded: the model.
        layer: hidden-state index 0..n_layers.
        eraser: a ``LeaceEraser`` (e.g. :func:`fit_eraser`'s result, or ``ConceptEraser().fit(...).eraser_``) or
            any function (..., d_model) -> (..., d_model).

    Raises:
        IndexError: ``layer`` out of range.
    """
    with erasing(loaded.model, layer, eraser):
        yield


fit_eraser = fit_leace  # the eraser fitter of the base (pipeline.erasure_hooks), under its probes name


def _task_rows(
    loaded: LoadedModel, data: TaskData, batch_size: int, max_length: int, seed: int, n_boot: int
) -> list[dict]:
    """Model-level task and bias rows of a classifier on ``data`` (extrinsic + counterfactual)."""
    logits = classifier_logits(loaded, data.texts, batch_size=batch_size, max_length=max_length)
    pred = logits.argmax(-1).numpy()
    frames = [
        extrinsic_metrics(data.labels, pred, data.genders, data.label_names, seed=seed, n_boot=n_boot),
        counterfactual_metrics(
            loaded, data, batch_size=batch_size, max_length=max_length, seed=seed, logits=logits, n_boot=n_boot
        ),
    ]
    rows = pd.concat(frames, ignore_index=True)
    return rows[rows["unit"] == "model"].to_dict("records")


def _warn_if_decodable(frame: pd.DataFrame, layer: int) -> None:
    """Warn when a fresh gender probe at the erased layer beats chance by more than its fold interval allows."""
    at = frame[
        (frame["condition"] == "after")
        & (frame["layer"] == layer)
        & (frame["subset"] == "gender")
        & (frame["metric"] == "probe_accuracy")
        & (frame["unit"] == "layer")
    ]
    for _, row in at.iterrows():
        if row["ci_low"] > row["chance"] + 0.02:
            warnings.warn(
                f"after erasure at layer {layer}, gender is still decodable from the {row['pooling']} "
                f"representation (accuracy {row['value']:.3f}, chance {row['chance']:.3f}); fit the eraser "
                "on the same pooling (fit_on=...) or on more data.",
                stacklevel=3,
            )


def amnesic_effect(
    loaded: LoadedModel,
    data: TaskData,
    layer: int,
    *,
    fit_on: FitOn = "tokens",
    fit_data: TaskData | None = None,
    method: Literal["leace", "orth"] = "leace",
    poolings: Sequence[str] = ("mean",),
    targets: Sequence[str] = ("gender", "label"),
    n_folds: int = 5,
    seed: int = 0,
    probe: LinearProbe | None = None,
    batch_size: int = 32,
    max_length: int = 128,
    n_boot: int = 1000,
    cache_dir: str | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Amnesic probing: erase gender at hidden state ``layer`` and measure what changes.

    Rows, each with extra columns ``condition`` (``before``/``after``) and ``erased_layer``:

    - fresh probes (``unit="layer"``, :data:`probes.linear.METRICS`, ``subset`` = target, column ``pooling``) at
      the erased layer and at the last layer, on representations extracted with and without erasure;
    - for a trained classifier (``head="classifier"``), the model-level rows of
      :func:`pipeline.metrics.extrinsic_metrics` (accuracy, gap_rms...) and
      :func:`pipeline.metrics.counterfactual_metrics` (cf_prob_gap, cf_flip_rate...).

    Args:
        loaded: the model.
        data: evaluation texts with genders and labels.
        layer: hidden-state index to erase (0 = embeddings, k = output of block k - 1).
        fit_on: what the eraser is fitted on (see :func:`fit_eraser`).
        fit_data: texts to fit the eraser on (default ``data``: the in-sample guarantee then holds exactly).
        method: ``"leace"`` or ``"orth"``.
        poolings: poolings for the fresh probes.
        targets: ``"gender"`` and/or ``"label"`` for the fresh probes.
        n_folds: outer folds of the probes.
        seed: seed of the probes and bootstraps.
        probe: the probe (default ``LinearProbe(seed=seed)``).
        batch_size: texts per forward pass.
        max_length: token limit.
        n_boot: bootstrap resamples behind the intervals of the probe, task and bias rows.
        cache_dir: extraction cache for the un-erased representations (erased ones are never cached).
        progress: show progress bars.

    Returns:
        Tidy rows as above. A warning is issued if gender stays decodable at the erased layer.
    """
    bad = [t for t in targets if t not in ("gender", "label")]
    if bad:
        raise ValueError(f"targets {bad} are not supported; use 'gender' and/or 'label'.")
    fit_data = data if fit_data is None else fit_data
    eraser = fit_eraser(
        loaded,
        fit_data.texts,
        fit_data.genders,
        layer,
        fit_on=fit_on,
        method=method,
        batch_size=batch_size,
        max_length=max_length,
        progress=progress,
    )
    probed = sorted({int(layer), loaded.anatomy.n_layers})
    ys = {"gender": data.genders, "label": data.labels}
    groups = text_groups(data.texts)  # copies of a text share a fold
    classify = loaded.head == "classifier" and loaded.head_trained
    if not classify:
        log.info("amnesic_effect: %s has no trained classifier head; only probes are measured", loaded.source)
    rows: list[dict] = []
    for condition in ("before", "after"):
        scope = erase_layer(loaded, layer, eraser) if condition == "after" else nullcontext()
        with scope:
            reps = extract(
                loaded,
                data.texts,
                poolings=poolings,
                heads=False,
                batch_size=batch_size,
                max_length=max_length,
                cache=condition == "before",
                cache_dir=cache_dir,
                progress=progress,
            )
            task = _task_rows(loaded, data, batch_size, max_length, seed, n_boot) if classify else []
        for target in targets:
            frame = probe_layers(
                reps,
                ys[target],
                target=target,
                layers=probed,
                groups=groups,
                n_folds=n_folds,
                seed=seed,
                probe=probe,
                n_boot=n_boot,
            )
            rows += [{**r, "condition": condition} for r in frame.to_dict("records")]
        rows += [{**r, "condition": condition} for r in task]
    out = tidy(rows, variant="", erased_layer=int(layer))
    _warn_if_decodable(out, layer)
    return out
