"""TransformerLens bridge for every supported model, and activation patching with TransformerLens hooks.

TransformerLens 4 (Nanda & Bloom 2022) removed ``HookedEncoder``; its ``TransformerBridge`` wraps a live
``transformers`` model through an architecture adapter, and the only encoder adapter is BERT's masked LM
(``BertForMaskedLM``: hooks ``blocks.{l}.attn.hook_z`` (batch, pos, head, d_head) at the input of the attention
output projection, ``blocks.{l}.hook_out`` after each block). DistilBERT, classifiers, and BERT checkpoints
without an MLM head (MiniLM) have no adapter. :func:`to_bert_mlm` is the converter: it writes the encoder
weights of any supported model into a ``BertForMaskedLM`` shell (DistilBERT is BERT-shaped: same post-LN blocks,
with ``q_lin``/``k_lin``/``v_lin``/``out_lin``, ``sa_layer_norm``, ``ffn.lin1``/``lin2``, ``output_layer_norm``
renamed, and a zero token-type embedding); a masked-LM head is copied when the model has one. The task head of a
classifier is *not* converted: :class:`LensModel` applies the loaded model's own head
(:class:`attribution.task_head.TaskHead`) to the bridge's residual output ``blocks.{L-1}.hook_out``, exactly as the
gate-based path does, so both engines compute the same function.

:func:`lens_patching` runs the head-patching sweep of Vig et al. (2020) with TransformerLens as the hooking
engine: ``run_with_cache`` on the twins records ``hook_z``, and ``run_with_hooks`` writes each head's twin
activation into the original run, for every head of a layer at once (one head per row). Tests check it equals
the gate-based patching of :mod:`attribution.patching` to 1e-5 on BERT and DistilBERT.

Limits: the bridge needs the same number of heads in every layer, so physically pruned models are refused (use
the gate engine for them); int8 models cannot be converted (their linear layers hold no float weights).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm
from transformers import BertConfig, BertForMaskedLM

from attribution.batching import check_batch_size, example_chunks
from attribution.data import AttributionData, View
from attribution.engine import Collector, GridResult
from attribution.scores import Score
from attribution.sweep import sweep_heads
from attribution.task_head import TaskHead
from pipeline.models import LoadedModel

__all__ = ["LensModel", "lens_patching", "to_bert_mlm", "to_lens"]

# DistilBERT parameter names (relative to the base model) -> BertForMaskedLM names.
_DISTIL_RENAMES = (
    (r"^embeddings\.", "bert.embeddings."),
    (r"^transformer\.layer\.(\d+)\.attention\.q_lin\.", r"bert.encoder.layer.\1.attention.self.query."),
    (r"^transformer\.layer\.(\d+)\.attention\.k_lin\.", r"bert.encoder.layer.\1.attention.self.key."),
    (r"^transformer\.layer\.(\d+)\.attention\.v_lin\.", r"bert.encoder.layer.\1.attention.self.value."),
    (r"^transformer\.layer\.(\d+)\.attention\.out_lin\.", r"bert.encoder.layer.\1.attention.output.dense."),
    (r"^transformer\.layer\.(\d+)\.sa_layer_norm\.", r"bert.encoder.layer.\1.attention.output.LayerNorm."),
    (r"^transformer\.layer\.(\d+)\.ffn\.lin1\.", r"bert.encoder.layer.\1.intermediate.dense."),
    (r"^transformer\.layer\.(\d+)\.ffn\.lin2\.", r"bert.encoder.layer.\1.output.dense."),
    (r"^transformer\.layer\.(\d+)\.output_layer_norm\.", r"bert.encoder.layer.\1.output.LayerNorm."),
)
_DISTIL_MLM = {
    "vocab_transform": "cls.predictions.transform.dense",
    "vocab_layer_norm": "cls.predictions.transform.LayerNorm",
    "vocab_projector": "cls.predictions.decoder",
}


def _bert_config(loaded: LoadedModel) -> BertConfig:
    anatomy, cfg = loaded.anatomy, loaded.model.config
    if len(set(anatomy.heads_per_layer)) != 1:
        raise ValueError(
            f"the TransformerLens bridge needs the same number of heads in every layer; this pruned "
            f"model has {anatomy.heads_per_layer}. Use ActivationPatching(engine='gates') instead."
        )
    distil = anatomy.family == "distilbert"
    config = BertConfig(
        vocab_size=cfg.vocab_size, hidden_size=anatomy.d_model, num_hidden_layers=anatomy.n_layers,
        num_attention_heads=anatomy.n_heads, intermediate_size=anatomy.d_ff,
        hidden_act=cfg.activation if distil else cfg.hidden_act, max_position_embeddings=cfg.max_position_embeddings,
        type_vocab_size=1 if distil else cfg.type_vocab_size, layer_norm_eps=1e-12 if distil else cfg.layer_norm_eps,
        pad_token_id=cfg.pad_token_id, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    config._attn_implementation = loaded.model.config._attn_implementation  # same kernels as the gate path
    return config


def to_bert_mlm(loaded: LoadedModel) -> BertForMaskedLM:
    """A ``BertForMaskedLM`` with the encoder (and masked-LM head, if any) of ``loaded``, in eval mode.

    Raises:
        ValueError: a pruned model (unequal heads per layer) or an int8 model.
    """
    if any(not torch.is_floating_point(t) for t in loaded.model.state_dict().values() if isinstance(t, Tensor)):
        raise ValueError(
            "the TransformerLens bridge needs float weights; this model is quantised (int8). "
            "Use the gate engine (ActivationPatching(engine='gates')) on it."
        )
    shell = BertForMaskedLM(_bert_config(loaded)).to(loaded.device, next(loaded.model.parameters()).dtype)
    base = {k: v for k, v in loaded.anatomy.base.state_dict().items() if not k.startswith("pooler.")}
    if loaded.anatomy.family == "bert":
        state = {f"bert.{k}": v for k, v in base.items()}
        if loaded.head == "mlm":
            state.update({k: v for k, v in loaded.model.state_dict().items() if k.startswith("cls.")})
    else:
        state = {}
        for key, value in base.items():
            for pattern, target in _DISTIL_RENAMES:
                key = re.sub(pattern, target, key)
            state[key] = value
        state["bert.embeddings.token_type_embeddings.weight"] = torch.zeros_like(
            shell.bert.embeddings.token_type_embeddings.weight
        )
        if loaded.head == "mlm":
            for src, dst in _DISTIL_MLM.items():
                module = loaded.model.get_submodule(src)
                state[f"{dst}.weight"], state[f"{dst}.bias"] = module.weight, module.bias
            state["cls.predictions.bias"] = loaded.model.get_submodule("vocab_projector").bias
    missing, unexpected = shell.load_state_dict(state, strict=False)
    untouched = [k for k in missing if not k.startswith("cls.")]
    if unexpected or untouched:
        raise RuntimeError(
            f"converter left weights unmapped (missing {untouched}, unexpected {unexpected}); "
            f"the {loaded.anatomy.family} layout differs from the one this converter knows."
        )
    return shell.eval()


@dataclass
class LensModel:
    """A TransformerLens bridge over the converted encoder of ``loaded``, plus ``loaded``'s own task head.

    Attributes:
        bridge: the ``TransformerBridge`` (hooks ``blocks.{l}.attn.hook_z``, ``blocks.{l}.hook_out``, ...).
        loaded: the source model; its task head maps the bridge's residual output to task outputs.
    """

    bridge: object
    loaded: LoadedModel

    def final_hidden(self, view: View, fwd_hooks: list | tuple = ()) -> Float[Tensor, "batch seq d_model"]:
        """The residual stream after the last block (``blocks.{L-1}.hook_out``), with extra forward hooks.

        The forward pass stops there (the bridge's own stop signal), so the shell's masked-LM head never runs.
        """
        from transformer_lens.model_bridge.exceptions import StopAtLayerException

        def stop(residual: Tensor, hook) -> Tensor:
            raise StopAtLayerException(residual)  # the bridge's forward returns this tensor

        last = f"blocks.{self.loaded.anatomy.n_layers - 1}.hook_out"
        return self.bridge.run_with_hooks(view.input_ids, attention_mask=view.attention_mask,
                                          fwd_hooks=[*fwd_hooks, (last, stop)])  # fmt: skip

    def head_z(self, view: View) -> dict[int, Float[Tensor, "batch seq head d_head"]]:
        """``hook_z`` of every layer on ``view`` (``run_with_cache``)."""
        _, cache = self.bridge.run_with_cache(view.input_ids, attention_mask=view.attention_mask,
                                              names_filter=lambda name: name.endswith("attn.hook_z"))  # fmt: skip
        return {layer: cache[f"blocks.{layer}.attn.hook_z"] for layer in range(self.loaded.anatomy.n_layers)}


def to_lens(loaded: LoadedModel) -> LensModel:
    """Convert ``loaded`` (BERT/DistilBERT; encoder, classifier or masked LM) and boot a TransformerLens bridge."""
    from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module

    shell = to_bert_mlm(loaded)
    # No tokenizer: the bridge gets token ids (TransformerLens would re-load a tokenizer by name, from the hub).
    bridge = build_bridge_from_module(shell, "BertForMaskedLM", hf_config=copy.deepcopy(shell.config),
                                      model_name=str(loaded.source))  # fmt: skip
    return LensModel(bridge, loaded)


@torch.no_grad()
def lens_patching(
    lens: LensModel, score: Score, data: AttributionData, *, batch_size: int = 64, progress: bool = True
) -> tuple[GridResult, list[tuple[int, int]]]:
    """Score of the original texts with each head's ``hook_z`` patched from the twin, via TransformerLens hooks.

    Returns ``(result, heads)`` like :func:`attribution.sweep.fast_sweep` with the counterfactual baseline.
    """
    loaded = lens.loaded
    score.check(loaded, data)
    data.view("cf")
    anatomy, device, head = loaded.anatomy, loaded.device, TaskHead(loaded)
    heads = sweep_heads(loaded)
    collector = Collector(score, len(heads), len(data))
    n_h = anatomy.n_heads
    per_block = max(1, check_batch_size(batch_size) // n_h)
    for ex in tqdm(list(example_chunks(len(data), per_block)), desc="TL patching", disable=not progress):
        batch = data.batch(ex, device)
        z_cf = lens.head_z(batch.view("cf"))
        rows, e = batch.repeat(n_h), len(ex)
        row = torch.arange(n_h * e, device=device)
        which = torch.arange(n_h, device=device).repeat_interleave(e)  # head patched in each row
        for layer in range(anatomy.n_layers):
            source = z_cf[layer].repeat(n_h, 1, 1, 1)  # (n_h * e, seq, head, d_head)

            def patch(z: Tensor, hook, source: Tensor = source, row: Tensor = row, which: Tensor = which) -> Tensor:
                z = z.clone()
                z[row, :, which] = source[row, :, which]
                return z

            view = rows.view("orig")
            hidden = lens.final_hidden(view, [(f"blocks.{layer}.attn.hook_z", patch)])
            feats = {"orig": score.features(head, hidden, view)}
            collector.add(torch.arange(layer * n_h, (layer + 1) * n_h), ex, feats)
    return collector.finish(data, device), heads
