"""Concept erasure as a model variant: LEACE erasers (Belrose et al. 2023) fitted on the training split's hidden
states at chosen layers and installed in the model for good (:mod:`pipeline.erasure_hooks`): saved with it and
hooked in again by :func:`pipeline.models.load_model`, so every stage measures the erased model.

Layers are erased in increasing order, each eraser fitted on representations that the lower erasers already
changed. At a layer, one eraser per ``fit_on`` target is fitted in turn (every token's state, the [CLS] state, the
mean-pooled state), each on the output of the ones before; an affine map keeps a zero cross-covariance zero, so
all of them hold together: on the fitting data no linear predictor of gender from any of these representations
beats a constant, at every erased layer of the final model.
"""

from __future__ import annotations

from pipeline.data import TaskData
from pipeline.data.sampling import seeded_rows
from pipeline.erasure_hooks import fit_leace, install_erasers, resolve_layer
from pipeline.models import LoadedModel

__all__ = ["erase", "erased_layers"]


def erased_layers(layers: tuple[int, ...], n_layers: int) -> list[int]:
    """``layers`` as hidden-state indices 0..n_layers (negative from the end), sorted.

    Raises:
        ValueError: a layer that does not exist in a model with ``n_layers`` blocks, or two entries naming one layer.
    """
    try:
        resolved = [resolve_layer(layer, n_layers) for layer in layers]
    except IndexError as err:
        raise ValueError(f"compress.erase.layers = {list(layers)}: {err}") from None
    if len(set(resolved)) != len(resolved):
        raise ValueError(
            f"compress.erase.layers = {list(layers)} names a layer twice in a model with {n_layers} "
            f"blocks (they resolve to {resolved}); list each layer once."
        )
    return sorted(resolved)


def erase(
    loaded: LoadedModel, train: TaskData, section, *, batch_size: int, max_length: int, seed: int = 0
) -> list[dict]:
    """Fit gender erasers on ``train`` at ``section.layers`` and install them in ``loaded`` in place.

    Args:
        loaded: the model to erase (any head; hooks act on the encoder's hidden states).
        train: training texts with genders (``section.fit_examples`` of them, seeded, are used; 0 = all).
        section: :class:`pipeline.compress.config.EraseSection`.
        batch_size: texts per forward pass.
        max_length: token limit.
        seed: seeds the subsample of fitting texts.

    Returns:
        Report rows (one per erased layer).
    """
    layers = erased_layers(section.layers, loaded.anatomy.n_layers)
    fit = train.subset(seeded_rows(len(train), section.fit_examples or None, seed))
    loaded.report_truncation(fit.texts, max_length, name=f"{train.name} (eraser fit)")
    for layer in layers:
        for target in section.fit_on:  # each eraser is fitted with the ones before it in place
            eraser = fit_leace(
                loaded,
                fit.texts,
                fit.genders,
                layer,
                fit_on=target,
                method=section.method,
                batch_size=batch_size,
                max_length=max_length,
            )
            install_erasers(
                loaded.model,
                {layer: eraser},
                concept="gender",
                fit_on=list(section.fit_on),
                method=section.method,
                n_texts=len(fit),
            )
    return [{"unit": "layer", "layer": layer, "metric": "erased", "value": 1.0, "n": len(fit)} for layer in layers]
