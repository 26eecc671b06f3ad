"""Integrated gradients over input tokens (Sundararajan, Taly & Yan 2017; captum ``LayerIntegratedGradients`` on
the word embeddings), from the gender-swapped twin (the bias) or from padding (the prediction).

Completeness: ``sum_t IG_t = F(text) - F(baseline)`` per example; every row carries captum's convergence delta
(``delta``, ``delta_rel``) and a warning names the examples over 1% (:func:`attribution.ig_common.check_delta`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import pandas as pd
import torch
from captum.attr import LayerIntegratedGradients
from torch import Tensor
from tqdm.auto import tqdm

from attribution.batching import check_batch_size
from attribution.data import AttributionData, Batch, View, aligned_pairs
from attribution.errors import check_depends_on_gates
from attribution.ig_common import check_delta, example_blocks, frozen_parameters
from attribution.scores import Score, view_features
from pipeline.models import LoadedModel
from pipeline.schema import tidy

__all__ = ["TokenBaseline", "TokenIntegratedGradients"]

TokenBaseline = Literal["twin", "padding"]


class TokenIntegratedGradients:
    """Integrated gradients over the input word embeddings (captum ``LayerIntegratedGradients``).

    For a score with two views (the counterfactual gap) the twin's output is held fixed and the attribution is over
    the original text's tokens. With ``baseline="twin"`` the path runs from the twin's embeddings to the text's:
    at the twin the gap is 0, so an example's attributions sum to its gap (its bias); the swapped words differ
    along the path, and only they can carry it. With ``baseline="padding"`` they sum to the gap minus the gap of
    a padded text against the same twin: the attribution of the prediction ``P(y | text) - P(y | padding)``.
    Rows name what they explain in column ``score`` (``cf_skew_gap from twin``, ``cf_gap from padding``) and
    ``baseline``.

    Args:
        loaded: the model (needs gradients).
        score: a per-example score.
        baseline: ``twin`` (bias; data with twins) or ``padding`` (prediction).
    """

    def __init__(self, loaded: LoadedModel, score: Score, *, baseline: TokenBaseline = "twin") -> None:
        if baseline not in ("twin", "padding"):
            raise ValueError(f"baseline={baseline!r} is not a token baseline; use 'twin' (bias) or 'padding'.")
        self.loaded = loaded
        self.score = score
        self.baseline = baseline

    @property
    def label(self) -> str:
        """What the attributions add up to, for column ``score``: ``<score> from twin`` or ``<score> from padding``."""
        return f"{self.score.name} from {self.baseline}"

    def pairs(self, data: AttributionData) -> tuple[AttributionData, int]:
        """With the twin baseline, the pairs of equal token length and the number left out; else ``(data, 0)``."""
        if self.baseline == "padding":
            return data, 0
        self._need_twins(data)
        return aligned_pairs(data, "token IG from the twin")

    def _need_twins(self, data: AttributionData) -> None:
        if not data.has_counterfactual:
            raise ValueError(
                f"token IG from the twin needs gender-swapped twins; {data.name!r} has none. Build the data with "
                "twins, or explain the prediction with baseline='padding'."
            )

    @frozen_parameters
    def attribute(
        self,
        data: AttributionData,
        *,
        n_steps: int = 50,
        method: str = "gausslegendre",
        batch_size: int = 64,
        examples: Sequence[int] | None = None,
        dropped: int = 0,
        progress: bool = True,
    ) -> pd.DataFrame:
        """One row per (example, non-padding position): unit ``token``, metric ``token_ig``, extra columns
        ``example`` (the row of ``data``), ``position``, ``token``, ``delta`` (that example's convergence delta),
        ``delta_rel``, ``score`` (:attr:`label`), ``baseline``. With ``examples`` only those rows of ``data`` are
        explained. With the twin baseline, examples whose twin has another token length are left out; a ``model`` row
        ``pairs_dropped`` counts those of all of ``data`` plus the ``dropped`` pairs the caller already left out
        (``n``: the pairs before any was left out)."""
        loaded, score = self.loaded, self.score
        score.check(loaded, data)
        if not score.per_example:
            raise ValueError(
                f"TokenIntegratedGradients explains one example at a time; {score!r} is a whole-set "
                "score. Use HeadIntegratedGradients or NeuronIntegratedGradients for it."
            )
        check_batch_size(batch_size)
        asked = torch.arange(len(data)) if examples is None else torch.as_tensor(examples, dtype=torch.long).flatten()
        extra: list[dict] = []
        example_blocks(len(data), asked.tolist(), 1)  # raises for ids outside the data
        if self.baseline == "twin":  # counted over all of data, so every share of a sharded run writes one row
            self._need_twins(data)
            same = data.attention_mask.sum(1) == data.cf_attention_mask.sum(1)
            if not bool(same.any()):
                raise ValueError(
                    f"no pair of {data.name!r} keeps its token length under the gender swap, so the twin cannot be "
                    "the baseline position by position; use pairs of equal length or baseline='padding'."
                )
            asked = asked[same[asked]]
            n_dropped = dropped + int((~same).sum())
            extra = [{"unit": "model", "metric": "pairs_dropped", "value": float(n_dropped), "n": len(data) + dropped}]
        special = torch.tensor(sorted(loaded.tokenizer.all_special_ids))
        pad = loaded.tokenizer.pad_token_id
        table: list[dict] = []
        per_call = max(1, batch_size // n_steps)  # examples per captum call; each forward has ~batch_size rows
        chunks = example_blocks(len(data), asked.tolist(), per_call) if len(asked) else []
        for ex in tqdm(chunks, desc="token IG", disable=not progress, leave=False):
            batch = data.batch(ex, loaded.device)
            with torch.no_grad():  # the twin's features stay fixed along the path
                fixed = {v: view_features(loaded, score, batch.view(v)) for v in score.views if v != "orig"}

            def forward(ids: Tensor, rows: Tensor, batch: Batch = batch, fixed=fixed) -> Tensor:
                sub = batch.rows(rows)
                view = View(ids, sub.attention_mask, sub.target_pos, sub.pronoun_ids)
                feats = {"orig": view_features(loaded, score, view), **{v: f[rows] for v, f in fixed.items()}}
                return score.combine(feats, sub)

            lig = LayerIntegratedGradients(forward, loaded.anatomy.word_embeddings)
            ids = batch.input_ids
            if self.baseline == "twin":  # equal token lengths: position t of the twin is position t of the text
                ref = batch.cf_input_ids
            else:
                ref = torch.where(torch.isin(ids, special.to(ids.device)), ids, torch.full_like(ids, pad))
            rows_arg = torch.arange(len(ex), device=ids.device)
            attr, delta = lig.attribute(ids, ref, additional_forward_args=(rows_arg,), n_steps=n_steps, method=method,
                                        internal_batch_size=batch_size, return_convergence_delta=True)  # fmt: skip
            with torch.no_grad():
                diff = forward(ids, rows_arg) - forward(ref, rows_arg)
            check_depends_on_gates(attr, score=score.name, what="TokenIntegratedGradients")
            rel = check_delta(delta, diff, "TokenIntegratedGradients", n_steps)
            per_token = attr.detach().sum(-1).cpu()  # (b, seq): summed over the embedding dimension
            for r, example in enumerate(ex.tolist()):
                length = int(batch.attention_mask[r].sum())
                tokens = loaded.tokenizer.convert_ids_to_tokens(ids[r, :length].tolist())
                table += [{"unit": "token", "metric": "token_ig", "value": float(per_token[r, t]),
                           "n": 1, "example": example, "position": t, "token": tokens[t],
                           "delta": float(delta[r]), "delta_rel": float(rel[r])} for t in range(length)]  # fmt: skip
        return tidy(extra + table, variant="", score=self.label, baseline=self.baseline, n_steps=n_steps)
