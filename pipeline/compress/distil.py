"""DistilBERT-style distillation: a shallower student initialised from teacher layers.

Sanh, Debut, Chaumond and Wolf (2019), "DistilBERT, a distilled version of BERT: smaller, faster, cheaper and
lighter". The student keeps the teacher's family, width, tokenizer, embeddings and task head, with fewer blocks:
student block ``i`` starts as a copy of teacher block ``layer_map[i]``, by default every other block
(``0, 2, 4, ...``: "DistilBERT layer i is initialised from BERT layer 2i"). ``layer_map`` is written to the
student's config, so comparison code can align depths.

The loss depends on what the teacher offers:

* **task distillation** (teacher fine-tuned on the task: orders ``before``/``both``):
  ``alpha_kl * KL_T(classes) * T^2 + alpha_ce * CE(labels) + alpha_cos * (1 - cos(h_s, h_t))``;
* **general distillation with an MLM head** (pretrained teacher with a trained masked-LM head, e.g.
  bert-base-uncased): the same three terms over masked tokens, as in the paper (soft targets over the vocabulary,
  the MLM loss and the cosine loss);
* **general distillation without one** (e.g. the offline MiniLM, which ships no MLM head): the cosine loss alone.

``h`` is the last hidden state, compared token by token on real (non-padding) tokens. With ``mixup`` the student
sees gender-mixed input embeddings and the teacher's targets are mixed the same way (:mod:`.mixup`). With
``fair_gap`` (fair distillation, task distillation only) the class KL term becomes
:func:`pipeline.compress.fair_losses.fair_distil_loss`: the student matches the pair-averaged teacher on each text
and its gender-swapped twin and pays ``fair_gap`` times its own counterfactual gap. On a weighted training set
(:mod:`pipeline.weighting`) every term is a weighted mean: per text, or per token with the text's weight.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence

import torch
from accelerate import Accelerator
from torch import Tensor, nn

from pipeline.anatomy import Anatomy
from pipeline.compress.config import DistilSection
from pipeline.compress.fair_losses import fair_distil_loss
from pipeline.compress.losses import cosine_loss, model_inputs, soft_kl
from pipeline.compress.mixup import GenderMixup, counterfactual_inputs, mix, mixed_embeddings
from pipeline.data import GenderSwapper, TaskData
from pipeline.models import LoadedModel
from pipeline.train import OptimSettings, TrainResult, batch_loader, encode, fit, make_accelerator, mask_tokens, seeded
from pipeline.weighting import BATCH_WEIGHTS, example_weights, token_weights, weighted_mean

__all__ = [
    "N_LAYERS_ATTR",
    "check_layer_map",
    "default_layer_map",
    "distil",
    "init_student",
    "require_uncompressed",
    "teacher_key",
]

_LAYER_KEY = re.compile(r"((?:^|\.)(?:encoder|transformer)\.layer)\.(\d+)\.")
N_LAYERS_ATTR = {"bert": "num_hidden_layers", "distilbert": "n_layers"}  # config attribute of the block count


def teacher_key(key: str, layer_map: Sequence[int]) -> str:
    """The teacher state-dict key a student key copies from: block ``i`` -> block ``layer_map[i]``."""
    return _LAYER_KEY.sub(lambda m: f"{m.group(1)}.{layer_map[int(m.group(2))]}.", key, count=1)


def default_layer_map(n_teacher: int) -> tuple[int, ...]:
    """Every other teacher layer, from the first: ``(0, 2, 4, ...)``; a 1-layer teacher maps to ``(0,)``."""
    return tuple(range(0, n_teacher, 2))


def check_layer_map(layer_map: Sequence[int], n_teacher: int, key: str = "layer_map") -> tuple[int, ...]:
    """Return ``layer_map`` as a tuple; ValueError naming ``key`` unless it is increasing within the teacher."""
    bad = [l for l in layer_map if not isinstance(l, int) or not 0 <= l < n_teacher]
    if not layer_map or bad:
        raise ValueError(
            f"{key} = {list(layer_map)}: {bad or 'empty'} is out of range; the teacher has layers "
            f"0..{n_teacher - 1}. Give one teacher layer per student layer, e.g. "
            f"{list(default_layer_map(n_teacher))}."
        )
    if list(layer_map) != sorted(set(layer_map)):
        raise ValueError(f"{key} = {list(layer_map)} must be strictly increasing.")
    return tuple(layer_map)


def require_uncompressed(teacher: LoadedModel, what: str) -> None:
    """ValueError unless ``teacher`` is neither head-pruned nor quantised (students copy its full shapes)."""
    cfg = teacher.model.config
    if getattr(cfg, "kept_heads", None) is not None or getattr(cfg, "quantization", None) is not None:
        raise ValueError(f"{what} needs an uncompressed teacher; {teacher.source} is head-pruned or quantised.")


def init_student(teacher: LoadedModel, layer_map: Sequence[int]) -> LoadedModel:
    """A student with ``len(layer_map)`` blocks, block ``i`` copied from teacher block ``layer_map[i]``.

    Everything outside the blocks (embeddings, pooler, task head) is copied as is; the student is the teacher's
    class, so the same tokenizer and loader apply. ``config.layer_map`` records the map.
    """
    require_uncompressed(teacher, "init_student")
    layer_map = check_layer_map(layer_map, teacher.anatomy.n_layers)
    config = copy.deepcopy(teacher.model.config)
    setattr(config, N_LAYERS_ATTR[teacher.anatomy.family], len(layer_map))
    config.layer_map = list(layer_map)
    student = type(teacher.model)(config)
    source = teacher.model.state_dict()
    student.load_state_dict({k: source[teacher_key(k, layer_map)].clone() for k in student.state_dict()})
    student.to(teacher.device).eval()
    return LoadedModel(
        student, teacher.tokenizer, Anatomy(student), teacher.head, teacher.head_trained, f"distil({teacher.source})"
    )


class _DistilObjective(nn.Module):
    """Loss of one distillation step; the teacher is frozen and stays in eval mode."""

    def __init__(
        self,
        student: LoadedModel,
        teacher: LoadedModel,
        cfg: DistilSection,
        mode: str,
        mixup: bool,
        fair_gap: float | None = None,
    ):
        super().__init__()
        self.student, self.teacher = student.model, teacher.model
        self.anatomy = student.anatomy
        self.cfg, self.mode, self.mixup, self.fair_gap = cfg, mode, mixup, fair_gap

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()
        return self

    def _teacher(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Teacher logits and last hidden state, mixed with the twin's under mixup."""
        with torch.no_grad():
            out = self.teacher(**model_inputs(batch), output_hidden_states=True)
            logits, hidden = out.logits, out.hidden_states[-1]
            if self.mixup:
                twin = self.teacher(**counterfactual_inputs(batch), output_hidden_states=True)
                lam = batch["mix_lambda"]
                logits, hidden = mix(logits, twin.logits, lam), mix(hidden, twin.hidden_states[-1], lam)
        return logits, hidden

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        t_logits, t_hidden = self._teacher(batch)
        inputs = model_inputs(batch)
        if self.mixup:
            inputs["inputs_embeds"] = mixed_embeddings(self.anatomy, batch)
            del inputs["input_ids"]
        out = self.student(**inputs, output_hidden_states=True)
        cfg, mask, w = self.cfg, batch["attention_mask"], batch.get(BATCH_WEIGHTS)
        loss = cfg.alpha_cos * cosine_loss(out.hidden_states[-1], t_hidden, mask, w)
        if self.mode == "task" and self.fair_gap is not None:
            twin = counterfactual_inputs(batch)
            with torch.no_grad():
                t_twin = self.teacher(**twin).logits
            s_twin = self.student(**twin).logits
            fair = fair_distil_loss(
                out.logits, s_twin, t_logits, t_twin, temperature=cfg.temperature, gap_weight=self.fair_gap, weights=w
            )
            loss = loss + cfg.alpha_kl * fair + cfg.alpha_ce * _ce(out.logits, batch["labels"], w)
        elif self.mode == "task":
            loss = loss + cfg.alpha_kl * soft_kl(out.logits, t_logits, cfg.temperature, w)
            loss = loss + cfg.alpha_ce * _ce(out.logits, batch["labels"], w)
        elif self.mode == "mlm":
            picked = batch["labels"] != -100  # (batch, seq) masked positions
            s, t = out.logits[picked], t_logits[picked]  # (n_masked, vocab)
            w = None if w is None else token_weights(w, picked)
            loss = loss + cfg.alpha_kl * soft_kl(s, t, cfg.temperature, w)
            loss = loss + cfg.alpha_ce * _ce(s, batch["labels"][picked], w)
        return loss


def _ce(logits: Tensor, labels: Tensor, weights: Tensor | None) -> Tensor:
    """Cross-entropy, the mean over rows or (weighted rows) ``mean_i w_i CE_i``."""
    if weights is None:
        return nn.functional.cross_entropy(logits.float(), labels)
    return weighted_mean(nn.functional.cross_entropy(logits.float(), labels, reduction="none"), weights)


def _mode(teacher: LoadedModel) -> str:
    if teacher.head_trained and teacher.head == "classifier":
        return "task"
    if teacher.head_trained and teacher.head == "mlm":
        return "mlm"
    return "hidden"


def distil(
    teacher: LoadedModel,
    train: TaskData,
    cfg: DistilSection,
    seed: int,
    *,
    max_length: int,
    mixup: bool = False,
    swapper: GenderSwapper | None = None,
    mlm_probability: float = 0.15,
    accelerator: Accelerator | None = None,
    fair_gap: float | None = None,
) -> tuple[LoadedModel, TrainResult]:
    """Build and train a DistilBERT-style student of ``teacher`` on the training texts.

    Args:
        teacher: classifier (fine-tuned: task distillation; untrained head: hidden-state distillation) or masked
            LM with a trained head (general distillation).
        train: training texts (and labels, used in task distillation); weighted rows weigh every loss term.
        cfg: the ``[compress.distil]`` section (``layer_map`` default: every other teacher layer).
        seed: seeds batch order, masking, dropout and mixup draws.
        max_length: tokens per text.
        mixup: gender-word mixup (Ahn et al. 2022).
        swapper: the gender-word swapper of mixup; default :meth:`GenderSwapper.from_winobias`.
        mlm_probability: share of masked tokens in general distillation with an MLM head.
        accelerator: defaults to :func:`pipeline.train.make_accelerator`.
        fair_gap: fair distillation with this counterfactual-gap weight (module docstring); needs a fine-tuned
            classifier teacher and no mixup.

    Returns:
        The student (same head kind as the teacher) and the training report.
    """
    require_uncompressed(teacher, "distil")
    mode = _mode(teacher)
    if mode == "hidden" and cfg.alpha_cos == 0:
        raise ValueError(
            f"{teacher.source} has no trained task or MLM head, so only the cosine loss applies, but "
            "compress.distil.alpha_cos = 0; give it a weight or fine-tune the teacher first."
        )
    if fair_gap is not None and (mode != "task" or mixup):
        raise ValueError("fair distillation needs a fine-tuned classifier teacher (task distillation) and no mixup")
    layer_map = cfg.layer_map or default_layer_map(teacher.anatomy.n_layers)
    student = init_student(teacher, check_layer_map(layer_map, teacher.anatomy.n_layers, "compress.distil.layer_map"))
    tokenizer, labels, weights = teacher.tokenizer, torch.tensor(train.labels), example_weights(train)
    paired = mixup or fair_gap is not None
    pairs = GenderMixup(train.texts, swapper=swapper, alpha=cfg.mixup_alpha, seed=seed) if paired else None
    masking = torch.Generator().manual_seed(seed)

    def collate(rows: list[int]) -> dict[str, Tensor]:
        batch = (
            pairs.collate(tokenizer, rows, max_length)
            if pairs
            else encode(tokenizer, [train.texts[i] for i in rows], max_length)
        )
        if mode == "task":
            batch["labels"] = labels[rows]
        elif mode == "mlm":
            masked, batch["labels"] = mask_tokens(
                batch["input_ids"], batch["attention_mask"], tokenizer, probability=mlm_probability, generator=masking
            )
            if pairs:  # the twin is masked at the same positions with the same replacement tokens
                changed = masked != batch["input_ids"]
                batch["cf_input_ids"] = torch.where(changed, masked, batch["cf_input_ids"])
            batch["input_ids"] = masked
        return batch if weights is None else {**batch, BATCH_WEIGHTS: weights[rows]}

    teacher.model.requires_grad_(False)
    with seeded(seed):
        loader = batch_loader(len(train), collate, batch_size=cfg.batch_size, shuffle=True, seed=seed)
        result = fit(
            _DistilObjective(student, teacher, cfg, mode, mixup, fair_gap),
            loader,
            OptimSettings.of(cfg),
            accelerator=accelerator or make_accelerator(),
            desc=f"distil[{mode}]",
        )
    return student, result
