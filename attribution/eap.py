"""Edge attribution patching (EAP): a first-order score for every edge of the encoder's graph from two recording
forward passes (text, twin) and one forward + backward pass, and exact edge patching to confirm it.

Syed, Rager & Conmy (2023), "Attribution Patching Outperforms Automated Circuit Discovery"; the IG variant
(``steps`` > 0) follows Hanna, Pezzelle & Belinkov (2024), "Have Faith in Faithfulness". The graph
(:mod:`attribution.eap_graph`): embeddings, every head, every FFN block and the readout; an edge ``u -> v`` joins a
writer to a downstream reader, and a head's query, key and value inputs are one input (scored together).

Clean input = the text, corrupted input = its gender-swapped twin. Corrupting edge ``u -> v`` adds ``c_u(twin) -
c_u(text)`` (``u``'s contribution to ``v``'s input, :class:`~attribution.eap_graph.EdgeHooks`) to ``v``'s input
alone; with an edge gate ``e`` it adds ``e`` times that difference. The EAP score is the derivative at ``e = 0``,

    EAP(u -> v) = (c_u(twin) - c_u(text)) . dM / d(input of v),

where ``M`` is the single-view form of the skew-oriented gap (:class:`~attribution.scores.SkewedClassProb`,
``orientation[y] P(y | text)``), times -1 for female originals as in
:class:`~attribution.patching.ActivationPatching`: the total effect of corrupting everything is then the example's
``cf_skew_gap``. Scores are per example, so intervals and p-values follow the unit tables
(:func:`attribution.effect_rows.mean_ci_p`); pairs whose twin changes token length are left out
(:func:`attribution.data.aligned_pairs`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from attribution.batching import check_batch_size, example_chunks
from attribution.data import AttributionData, Batch, ViewName, aligned_pairs, split_rows
from attribution.eap_graph import EdgeHooks, Graph, Node
from attribution.effect_rows import mean_ci_p
from attribution.scores import Score, view_features
from pipeline.data import FEMALE
from pipeline.models import LoadedModel
from pipeline.stats import bh_qvalues

__all__ = ["EdgeAttributionPatching"]

Contributions = dict[tuple[str, int], Tensor]


def _other(view: ViewName) -> ViewName:
    return "cf" if view == "orig" else "orig"


class EdgeAttributionPatching:
    """EAP scores of every edge, per example, and exact edge patching.

    Args:
        loaded: a BERT-shaped classifier (needs gradients: not an int8 model).
        score: a per-example score of the text alone, e.g. ``SkewedClassProb(skew_orientation(train))``.
    """

    def __init__(self, loaded: LoadedModel, score: Score) -> None:
        if score.views != ("orig",) or not score.per_example:
            raise ValueError(f"EAP needs a per-example score of the text alone (SkewedClassProb); got {score!r}.")
        self.loaded, self.score, self.graph = loaded, score, Graph(loaded.anatomy)

    def metric(self, batch: Batch, view: ViewName = "orig") -> Tensor:
        """``M`` of every example, run on ``view`` (under whatever hooks are active), without the gender sign."""
        return self.score.combine({"orig": view_features(self.loaded, self.score, batch.view(view))}, batch)

    def sign(self, batch: Batch) -> Tensor:
        """-1 for female originals, +1 otherwise: makes every effect read as the skew-oriented gap."""
        return torch.where(batch.genders == FEMALE, -1.0, 1.0).to(self.loaded.device)

    def contributions(self, batch: Batch, view: ViewName) -> Contributions:
        """Every writer's contribution at every reader group, on ``view`` (no gradients)."""
        with EdgeHooks(self.graph) as hooks, torch.no_grad():
            self.metric(batch, view)
        return hooks.at

    def pairs(self, data: AttributionData) -> AttributionData:
        """Check ``data`` and keep its aligned pairs (twins of the same token length), as every method here needs."""
        self.score.check(self.loaded, data)
        if not data.has_counterfactual:
            raise ValueError(f"EAP corrupts with the gender-swapped twins; {data.name!r} has none.")
        return aligned_pairs(data, "edge attribution patching")[0]

    def _grads(self, batch: Batch, clean: Contributions, corrupt: Contributions, alpha: float) -> dict:
        """``dM / d(input of v)`` of every reader group, with the stream at ``alpha`` of the way to the twin."""
        grads: dict[tuple[str, int], Tensor] = {}

        def inject(group: str, layer: int, c: Tensor | None) -> Tensor:
            d = clean[(group, layer)].shape[1:]
            shape = (*d[:2], self.loaded.anatomy.heads_per_layer[layer], d[2]) if group == "attn" else d
            grads[(group, layer)] = torch.zeros(shape, dtype=clean[("readout", -1)].dtype, device=self.loaded.device,
                                                requires_grad=True)  # fmt: skip
            return grads[(group, layer)]

        def shift(module, args, out):
            return out + alpha * (corrupt[("attn", 0)][0] - clean[("attn", 0)][0])

        handle = self.loaded.anatomy.embeddings.register_forward_hook(shift)
        try:
            with torch.enable_grad(), EdgeHooks(self.graph, inject, track=False):
                total = (self.metric(batch) * self.sign(batch)).sum()
        finally:
            handle.remove()
        keys = list(grads)
        return dict(zip(keys, torch.autograd.grad(total, [grads[k] for k in keys]), strict=True))

    def _batch_scores(self, batch: Batch, steps: int) -> Tensor:
        clean, corrupt = self.contributions(batch, "orig"), self.contributions(batch, "cf")
        alphas = [(k + 0.5) / steps for k in range(steps)] if steps else [0.0]
        grads = [self._grads(batch, clean, corrupt, a) for a in alphas]
        out = torch.zeros(batch.labels.shape[0], *self.graph.mask.shape, dtype=clean[("readout", -1)].dtype)
        for key in grads[0]:
            grad = torch.stack([g[key] for g in grads]).mean(0)
            diff = (corrupt[key] - clean[key])[:-1]  # (writer, batch, seq, d_model), constants left out
            group, layer = key
            if group == "attn":
                out[:, :, self.graph.head_cols(layer)] = torch.einsum("wbsd,bshd->bwh", diff, grad).cpu()
            else:
                col = self.graph.col[Node("readout") if group == "readout" else Node("ffn", layer)]
                out[:, :, col] = torch.einsum("wbsd,bsd->bw", diff, grad).cpu()
        return out * self.graph.mask

    def estimates(self, data: AttributionData, *, batch_size: int = 16, steps: int = 0) -> Tensor:
        """EAP score of every edge of every example: (n_ex, writer, reader), 0 where no edge (``graph.mask``).

        ``steps`` > 0 averages the gradient over ``steps`` points of the straight path from the text's embeddings
        to the twin's (EAP-IG, midpoint rule); 0 takes it at the text (EAP). Data must be aligned pairs."""
        check_batch_size(batch_size)
        return torch.cat([self._batch_scores(data.batch(ex, self.loaded.device), steps)
                          for ex in example_chunks(len(data), batch_size)])  # fmt: skip

    def patched(self, batch: Batch, gates: Tensor, *, run: ViewName = "orig", reference: Contributions) -> Tensor:
        """``M`` of ``batch`` run on ``run`` with every reader's input moved by ``gates[u, v] (reference_u -
        current_u)``: the writers' contributions from ``reference`` (the other view's run) on the gated edges,
        the current pass's own contributions elsewhere. ``gates``: (writer, reader), 0 where no edge."""
        gates = (gates * self.graph.mask).to(self.loaded.device)

        def inject(group: str, layer: int, c: Tensor) -> Tensor:
            diff = (reference[(group, layer)] - c)[:-1]
            if group == "attn":
                return torch.einsum("wbsd,wh->bshd", diff, gates[:, self.graph.head_cols(layer)].to(c.dtype))
            col = self.graph.col[Node("readout") if group == "readout" else Node("ffn", layer)]
            return torch.einsum("wbsd,w->bsd", diff, gates[:, col].to(c.dtype))

        with EdgeHooks(self.graph, inject), torch.no_grad():
            return self.metric(batch, run)

    def _one_edge(self, batch: Batch, u: Node, v: Node, corrupt: Contributions, clean: Contributions) -> Tensor:
        """``M`` of the text run with edge ``u -> v`` alone corrupted: a plain pass, since no other input changes
        (equal to :meth:`patched` with that one gate at 1, faster)."""
        key = ("readout", -1) if v.kind == "readout" else ("attn" if v.kind == "head" else "ffn", v.layer)
        change = corrupt[key][self.graph.row[u]] - clean[key][self.graph.row[u]]  # (batch, seq, d_model)
        if v.kind == "head":
            heads = torch.zeros(*change.shape[:2], self.loaded.anatomy.heads_per_layer[v.layer], change.shape[-1],
                                dtype=change.dtype, device=change.device)  # fmt: skip
            heads[:, :, v.head] = change
            change = heads

        def inject(group: str, layer: int, c: Tensor | None) -> Tensor | None:
            return change if (group, layer) == key else None

        with EdgeHooks(self.graph, inject, track=False), torch.no_grad():
            return self.metric(batch)

    def exact(self, data: AttributionData, edges: Sequence[tuple[Node, Node]], *, batch_size: int = 16) -> Tensor:
        """Exact per-example effect of corrupting each edge alone (text run, the twin's contribution on that
        edge): ``sign (M(edge corrupted) - M(text))``, (n_edges, n_ex). Data must be aligned pairs."""
        check_batch_size(batch_size)
        out = []
        for ex in example_chunks(len(data), batch_size):
            batch = data.batch(ex, self.loaded.device)
            corrupt, text, sign = self.contributions(batch, "cf"), self.contributions(batch, "orig"), self.sign(batch)
            with torch.no_grad():
                clean = self.metric(batch)
            rows = [(self._one_edge(batch, u, v, corrupt, text) - clean) * sign for u, v in edges]
            out.append(torch.stack(rows).cpu())
        return torch.cat(out, dim=1)

    def attribute(
        self,
        data: AttributionData,
        *,
        steps: int = 0,
        confirm_top: int = 20,
        batch_size: int = 16,
        n_boot: int = 1000,
        seed: int = 0,
    ) -> pd.DataFrame:
        """One row per edge (``source``, ``target``, their layers and original head ids): the mean EAP score ``value`` with its
        bootstrap interval, ``p`` and ``q`` (Benjamini-Hochberg over all edges), and for the ``confirm_top`` edges
        with the largest |score| the exact edge-patching effect (``exact`` ... ``exact_q``, ``exact_n``) measured on
        the other half of the examples (:func:`attribution.data.split_rows` with ``seed``), NaN elsewhere.
        ``pairs_dropped`` says how many pairs changed token length under the swap and were left out."""
        kept = self.pairs(data)
        screen_rows, confirm_rows = split_rows(len(kept), seed) if confirm_top else (np.arange(len(kept)), None)
        scores = self.estimates(kept.subset(screen_rows), batch_size=batch_size, steps=steps)
        edges = list(self.graph.edges())
        per_edge = torch.stack([scores[:, self.graph.row[u], self.graph.col[v]] for u, v in edges])  # (edge, n)
        value, low, high, p = mean_ci_p(per_edge.double(), n_boot=n_boot, seed=seed)
        frame = pd.DataFrame([_edge_keys(self.graph.original(u), self.graph.original(v)) for u, v in edges])
        frame = frame.assign(metric="eap_ig" if steps else "eap", value=value, ci_low=low, ci_high=high, p=p,
                             q=bh_qvalues(p), n=len(screen_rows), pairs_dropped=len(data) - len(kept))  # fmt: skip
        for column in ("exact", "exact_ci_low", "exact_ci_high", "exact_p", "exact_q"):
            frame[column] = np.nan
        frame["exact_n"] = 0
        if confirm_rows is not None:
            top = np.argsort(-np.abs(value), kind="stable")[:confirm_top]
            exact = self.exact(kept.subset(confirm_rows), [edges[i] for i in top], batch_size=batch_size)
            e_value, e_low, e_high, e_p = mean_ci_p(exact.double(), n_boot=n_boot, seed=seed)
            frame.loc[top, ["exact", "exact_ci_low", "exact_ci_high", "exact_p"]] = np.stack(
                [e_value, e_low, e_high, e_p], axis=1
            )
            frame.loc[top, "exact_q"] = bh_qvalues(e_p)
            frame.loc[top, "exact_n"] = len(confirm_rows)
        frame["score"] = self.score.name
        return frame


def _edge_keys(u: Node, v: Node) -> dict:
    return {"source": u.name, "target": v.name, "source_layer": u.layer, "source_head": u.head,
            "target_layer": v.layer, "target_head": v.head}  # fmt: skip
