"""Model-randomisation sanity check for attributions (Adebayo et al. 2018).

Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim (2018), "Sanity Checks for Saliency Maps", NeurIPS: an
attribution that explains the *model* must change when the model's weights are replaced by random ones. The
cascading test re-initialises the weights from the top down (task head, then the last block, then the one below,
...); the full test re-initialises everything including the embeddings. Each randomised copy is attributed with
the same method and data, and the Spearman rank correlation between the original and the randomised attribution
is reported per metric: a correlation near 1 means the attribution reflects the input or the method, not what the
model learned. Re-initialisation follows BERT's: linear and embedding weights ~ N(0, initializer_range), biases
0, LayerNorm 1 / 0; the copy is seeded, the original is untouched.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import pandas as pd
import torch
from scipy.stats import spearmanr
from torch import nn

from attribution.data import AttributionData
from pipeline.anatomy import Anatomy
from pipeline.int8 import is_quantised
from pipeline.models import LoadedModel
from pipeline.schema import tidy

__all__ = ["randomised_copy", "sanity_check"]

_KEYS = ["unit", "layer", "head", "metric"]


def _reinit(module: nn.Module, std: float, generator: torch.Generator) -> None:
    """New parameters (not in-place: a decoder tied to the word embeddings is untied, not randomised with them)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            m.weight = nn.Parameter(torch.randn(m.weight.shape, generator=generator).mul_(std).to(m.weight))
        elif isinstance(m, nn.LayerNorm):
            m.weight = nn.Parameter(torch.ones_like(m.weight))
        else:
            continue
        if getattr(m, "bias", None) is not None:
            m.bias = nn.Parameter(torch.zeros_like(m.bias))


def randomised_copy(loaded: LoadedModel, *, from_layer: int | None = 0, seed: int = 0) -> LoadedModel:
    """A copy of ``loaded`` with the task head and blocks ``from_layer..L-1`` re-initialised.

    Args:
        loaded: the model (left untouched).
        from_layer: first randomised block; ``n_layers`` randomises the task head only; ``None`` randomises
            everything, embeddings included (the full test).
        seed: seed of the new weights.
    """
    if is_quantised(loaded.model):
        raise ValueError(
            "cannot re-initialise an int8 model's quantised layers; run the sanity check on its float source model."
        )
    model = copy.deepcopy(loaded.model)
    anatomy = Anatomy(model)
    start = 0 if from_layer is None else from_layer
    if not 0 <= start <= anatomy.n_layers:
        raise ValueError(f"from_layer={from_layer!r}: use 0..{anatomy.n_layers} (or None for every weight).")
    std = model.config.initializer_range
    generator = torch.Generator().manual_seed(seed)
    head_modules = [m for name, m in model.named_children() if name != model.base_model_prefix]
    targets = head_modules + [anatomy.layer(l) for l in reversed(range(start, anatomy.n_layers))]
    if from_layer is None:
        targets.append(anatomy.embeddings)
    with torch.no_grad():
        for module in targets:
            _reinit(module, std, generator)
    tag = "all" if from_layer is None else f"from{from_layer}"
    return LoadedModel(model.eval(), loaded.tokenizer, anatomy, loaded.head, loaded.head_trained,
                       f"{loaded.source}#randomised-{tag}")  # fmt: skip


def sanity_check(
    method: Callable[[LoadedModel], object],
    loaded: LoadedModel,
    data: AttributionData,
    *,
    cascade: bool = False,
    seed: int = 0,
    **attribute_kwargs,
) -> pd.DataFrame:
    """Spearman correlation between the attribution of ``loaded`` and of randomised copies.

    Args:
        method: builds the attribution object for a model, e.g. ``lambda m: GradientHeadImportance(m, score)``.
        loaded: the model.
        data: the examples.
        cascade: randomise from the top down, one block at a time (n_layers + 2 runs); else only the full test.
        seed: seed of the random weights.
        **attribute_kwargs: passed to ``attribute`` (e.g. ``batch_size``, ``n_boot``).

    Returns:
        Rows of unit ``model``: metric ``sanity_spearman`` with ``subset`` = the attribution metric, extra column
        ``randomised_from`` (first randomised block; ``n_layers`` = head only; -1 = everything).
    """
    original = method(loaded).attribute(data, **attribute_kwargs)
    n_layers = loaded.anatomy.n_layers
    levels: list[int | None] = [*range(n_layers, -1, -1), None] if cascade else [None]
    out = []
    for level in levels:
        randomised = method(randomised_copy(loaded, from_layer=level, seed=seed)).attribute(data, **attribute_kwargs)
        joined = original.merge(randomised, on=_KEYS, suffixes=("", "_random"))
        for metric, rows in joined.groupby("metric", sort=True):
            rho = float(spearmanr(rows["value"], rows["value_random"]).statistic) if len(rows) > 1 else float("nan")
            if level is None and abs(rho) >= 0.5:
                warnings.warn(
                    f"sanity check: {metric} keeps a rank correlation of {rho:.2f} on a fully randomised "
                    "model; it may reflect the data or the method more than the model.",
                    stacklevel=2,
                )
            out.append({"unit": "model", "metric": "sanity_spearman", "subset": metric, "value": rho,
                        "n": len(rows), "randomised_from": -1 if level is None else level})  # fmt: skip
    return tidy(out, variant="")
