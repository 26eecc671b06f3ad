"""TinyBERT-style distillation: a narrower and shallower student trained layer by layer.

Jiao et al. (2020), "TinyBERT: Distilling BERT for Natural Language Understanding", Findings of EMNLP. The student
has fewer blocks (``n_layers``), a smaller width (``hidden_size``), its own head count and FFN size. Student block
``i`` is distilled towards teacher block ``layer_map[i]``, by default the uniform map ``g(i) = (i + 1) N / M - 1``
(TinyBERT's ``n * m`` mapping, 0-based; 6 -> 3 blocks gives 1, 3, 5), recorded in ``config.layer_map``.

Stage 1, intermediate-layer distillation (always):

    L = MSE(E_s W_e, E_t) + sum_i MSE(H_s[i] W_h, H_t[g(i)]) + sum_i MSE(A_s[i], A_t[g(i)])

over real tokens, with learned projections ``W_e`` and ``W_h`` (student width -> teacher width; dropped after
training) and attention probability maps ``A`` recomputed from each block's query and key projections (so any
attention implementation works). When head counts differ, the head-averaged maps are compared.

Stage 2, prediction-layer distillation (only when the teacher is a fine-tuned classifier): the soft cross-entropy
between student and teacher logits at temperature ``T`` (``KL_T * T^2``, equal up to a constant).

Initialisation: ``truncate`` copies the leading block of each weight of the mapped teacher layers (and of the
embeddings and head) into the student's shapes (a student axis larger than the teacher's keeps its random values
beyond the copy), ``random`` uses the config's initialiser as TinyBERT's general distillation does.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from accelerate import Accelerator
from jaxtyping import Float, Int
from torch import Tensor, nn
from typing_extensions import Self

from pipeline.anatomy import Anatomy
from pipeline.compress.config import TinySection
from pipeline.compress.distil import N_LAYERS_ATTR, check_layer_map, require_uncompressed, teacher_key
from pipeline.compress.losses import masked_mse, model_inputs, soft_kl
from pipeline.data import TaskData
from pipeline.models import LoadedModel
from pipeline.train import OptimSettings, TrainResult, batch_loader, encode, fit, make_accelerator, seeded
from pipeline.weighting import BATCH_WEIGHTS, example_weights

__all__ = ["RecordAttention", "default_tiny_map", "init_tiny", "student_shape", "tiny"]

_SIZE_ATTRS = {  # family -> config attribute of (hidden size, heads, FFN size)
    "bert": ("hidden_size", "num_attention_heads", "intermediate_size"),
    "distilbert": ("dim", "n_heads", "hidden_dim"),
}


def default_tiny_map(n_teacher: int, n_student: int) -> tuple[int, ...]:
    """TinyBERT's uniform map: student block ``i`` -> teacher block ``(i + 1) * N // M - 1``."""
    return tuple((i + 1) * n_teacher // n_student - 1 for i in range(n_student))


def student_shape(teacher: LoadedModel, cfg: TinySection) -> tuple[int, int, int, int, tuple[int, ...]]:
    """(n_layers, hidden_size, n_heads, d_ff, layer_map) of the student, filling defaults from the teacher.

    Raises:
        ValueError: a layer map out of the teacher's range or a width not divisible by the head count.
    """
    a = teacher.anatomy
    n_layers = cfg.n_layers or (len(cfg.layer_map) if cfg.layer_map else max(1, a.n_layers // 2))
    hidden = cfg.hidden_size or a.d_model // 2
    heads = cfg.n_heads or a.n_heads
    d_ff = cfg.d_ff or 4 * hidden
    if hidden % heads:
        raise ValueError(f"compress.tiny: hidden_size {hidden} is not a multiple of n_heads {heads}; set both.")
    layer_map = check_layer_map(
        cfg.layer_map or default_tiny_map(a.n_layers, n_layers), a.n_layers, "compress.tiny.layer_map"
    )
    if len(layer_map) != n_layers:
        raise ValueError(f"compress.tiny.layer_map has {len(layer_map)} entries for {n_layers} student layers.")
    return n_layers, hidden, heads, d_ff, layer_map


def init_tiny(teacher: LoadedModel, cfg: TinySection) -> LoadedModel:
    """Build the student (teacher's class, smaller config) and initialise it (``cfg.init``)."""
    require_uncompressed(teacher, "tiny")
    n_layers, hidden, heads, d_ff, layer_map = student_shape(teacher, cfg)
    family = teacher.anatomy.family
    config = copy.deepcopy(teacher.model.config)
    for attr, value in zip((N_LAYERS_ATTR[family], *_SIZE_ATTRS[family]), (n_layers, hidden, heads, d_ff)):
        setattr(config, attr, value)
    config.layer_map = list(layer_map)
    student = type(teacher.model)(config)
    if cfg.init == "truncate":
        source = teacher.model.state_dict()
        state = {}
        for key, tensor in student.state_dict().items():
            src = source[teacher_key(key, layer_map)]
            region = tuple(slice(0, min(a, b)) for a, b in zip(tensor.shape, src.shape))  # leading block
            state[key] = tensor.clone()
            state[key][region] = src[region]
        student.load_state_dict(state)
    student.to(teacher.device).eval()
    return LoadedModel(student, teacher.tokenizer, Anatomy(student), teacher.head, False, f"tiny({teacher.source})")


class RecordAttention:
    """Context manager: record query/key projections of ``layers`` and rebuild attention probabilities.

    Example:
        >>> with RecordAttention(anatomy, [0, 1]) as rec:
        ...     model(**batch)
        >>> probs = rec.probs(0, batch["attention_mask"])  # (batch, head, seq, seq)
    """

    def __init__(self, anatomy: Anatomy, layers: Sequence[int]) -> None:
        self.anatomy, self.layers = anatomy, list(layers)
        self.q: dict[int, Tensor] = {}
        self.k: dict[int, Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> Self:
        for layer in self.layers:
            query, key, _ = self.anatomy.qkv(layer)
            self._handles.append(query.register_forward_hook(lambda m, a, out, l=layer: self.q.__setitem__(l, out)))
            self._handles.append(key.register_forward_hook(lambda m, a, out, l=layer: self.k.__setitem__(l, out)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def probs(self, layer: int, attention_mask: Int[Tensor, "batch seq"]) -> Float[Tensor, "batch head seq seq"]:
        """softmax(Q K^T / sqrt(d_head) + padding mask) of ``layer`` from the last forward pass."""
        d = self.anatomy.head_dim
        q, k = self.q[layer], self.k[layer]  # (batch, seq, head * d_head)
        q = q.view(*q.shape[:2], -1, d).transpose(1, 2)  # (batch, head, seq, d_head)
        k = k.view(*k.shape[:2], -1, d).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / d**0.5  # (batch, head, seq, seq)
        pad = ~attention_mask.bool()[:, None, None, :]  # (batch, 1, 1, seq)
        return scores.float().masked_fill(pad, torch.finfo(torch.float32).min).softmax(-1)


class _IntermediateObjective(nn.Module):
    """TinyBERT stage 1: embedding, hidden-state (projected) and attention-map MSE of mapped layers."""

    def __init__(self, student: LoadedModel, teacher: LoadedModel, layer_map: Sequence[int]) -> None:
        super().__init__()
        self.student, self.teacher = student.model, teacher.model
        self.s_anatomy, self.t_anatomy, self.layer_map = student.anatomy, teacher.anatomy, list(layer_map)
        self.w_e = nn.Linear(student.anatomy.d_model, teacher.anatomy.d_model)
        self.w_h = nn.Linear(student.anatomy.d_model, teacher.anatomy.d_model)

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        inputs, mask = model_inputs(batch), batch["attention_mask"]
        with torch.no_grad(), RecordAttention(self.t_anatomy, sorted(set(self.layer_map))) as t_att:
            t_hidden = self.teacher(**inputs, output_hidden_states=True).hidden_states  # L_t + 1 states
        with RecordAttention(self.s_anatomy, range(len(self.layer_map))) as s_att:
            s_hidden = self.student(**inputs, output_hidden_states=True).hidden_states
        w = batch.get(BATCH_WEIGHTS)
        loss = masked_mse(self.w_e(s_hidden[0]), t_hidden[0], mask, w)
        for i, t_layer in enumerate(self.layer_map):
            loss = loss + masked_mse(self.w_h(s_hidden[i + 1]), t_hidden[t_layer + 1], mask, w)
            a_s, a_t = s_att.probs(i, mask), t_att.probs(t_layer, mask)
            if a_s.shape[1] != a_t.shape[1]:  # different head counts: compare the head-averaged maps
                a_s, a_t = a_s.mean(1, keepdim=True), a_t.mean(1, keepdim=True)
            loss = loss + masked_mse(a_s, a_t, mask, w)
        return loss


class _PredictionObjective(nn.Module):
    """TinyBERT stage 2: soft cross-entropy to the fine-tuned teacher's logits."""

    def __init__(self, student: LoadedModel, teacher: LoadedModel, temperature: float) -> None:
        super().__init__()
        self.student, self.teacher, self.temperature = student.model, teacher.model, temperature

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        inputs = model_inputs(batch)
        with torch.no_grad():
            target = self.teacher(**inputs).logits
        return soft_kl(self.student(**inputs).logits, target, self.temperature, batch.get(BATCH_WEIGHTS))


def tiny(
    teacher: LoadedModel,
    train: TaskData,
    cfg: TinySection,
    seed: int,
    *,
    max_length: int,
    accelerator: Accelerator | None = None,
) -> tuple[LoadedModel, list[TrainResult]]:
    """Build and train a TinyBERT-style student of ``teacher`` on the training texts.

    Args:
        teacher: a classifier; if fine-tuned, stage 2 (prediction-layer distillation) runs too.
        train: training texts; weighted rows weigh every loss term (:mod:`pipeline.weighting`).
        cfg: the ``[compress.tiny]`` section.
        seed: seeds initialisation, batch order and dropout.
        max_length: tokens per text.
        accelerator: defaults to :func:`pipeline.train.make_accelerator`.

    Returns:
        The student and one training report per stage run.
    """
    accelerator = accelerator or make_accelerator()
    with seeded(seed):
        student = init_tiny(teacher, cfg)
    teacher.model.requires_grad_(False)

    weights = example_weights(train)

    def collate(rows: list[int]) -> dict[str, Tensor]:
        batch = encode(teacher.tokenizer, [train.texts[i] for i in rows], max_length)
        return batch if weights is None else {**batch, BATCH_WEIGHTS: weights[rows]}

    results = []
    with seeded(seed):
        loader = batch_loader(len(train), collate, batch_size=cfg.batch_size, shuffle=True, seed=seed)
        stage1 = _IntermediateObjective(student, teacher, student.model.config.layer_map)
        results.append(fit(stage1, loader, OptimSettings.of(cfg), accelerator=accelerator, desc="tiny[layers]"))
        if teacher.head == "classifier" and teacher.head_trained and cfg.pred_epochs > 0:
            stage2 = _PredictionObjective(student, teacher, cfg.temperature)
            results.append(
                fit(
                    stage2,
                    loader,
                    OptimSettings.of(cfg, epochs=cfg.pred_epochs),
                    accelerator=accelerator,
                    desc="tiny[prediction]",
                )
            )
            student.head_trained = True
    return student, results
