"""Attribution computed on demand for one text, outside a run (the viewer's playground): the orchestration floor's
one door to the analyses for the readers above it, so no reader imports :mod:`attribution` itself."""

from __future__ import annotations

import pandas as pd
import torch

from attribution.data import AttributionData
from attribution.ig import TokenIntegratedGradients
from attribution.scores import CounterfactualGap
from pipeline.models import LoadedModel

__all__ = ["twin_token_ig"]


def twin_token_ig(loaded: LoadedModel, text: str, twin: str, pred: int, n_steps: int) -> pd.DataFrame:
    """Token attributions of the gap P(ŷ | text) - P(ŷ | twin) (ŷ = ``pred``), integrated from the twin to the text
    (:class:`attribution.ig.TokenIntegratedGradients`, Sundararajan et al. 2017), as ``token`` rows of example 0:
    the attribution of the raw change p(ŷ | twin) - p(ŷ | text), negated, so they add up to the gap.

    Raises:
        ValueError: the twin has another token length (no position-by-position baseline).
    """
    data = AttributionData.from_texts(loaded, [text], cf_texts=[twin], labels=[pred], name="playground")
    with torch.enable_grad():
        rows = TokenIntegratedGradients(loaded, CounterfactualGap(), baseline="twin").attribute(
            data, n_steps=n_steps, progress=False
        )
    rows = rows[rows["unit"] == "token"]
    return rows.assign(value=-rows["value"], score="gap P(ŷ|text) − P(ŷ|twin) from twin")
