"""Stand-ins for the hub models of configs/paper.toml: small random models saved in the layouts the hub ships.

Kept beside ``hub_layouts.py`` (``tests/`` is on the import path). All three use the real uncased WordPiece
vocabulary (30,522 tokens; MiniLM's tokenizer, the same as bert-base-uncased's), so the Bias in Bios texts and the
benchmarks tokenize as they would with the real models; the weights are tiny and random (results mean nothing):

==================================  ===============================================================================
``bert-base-uncased``               a BERT pre-training checkpoint (``bert.*`` with pooler, ``cls.predictions.*``,
                                    ``cls.seq_relationship.*``; config ``architectures = ["BertForMaskedLM"]``),
                                    whose MLM head is trained briefly on WinoBias dev sentences so that it beats
                                    the unigram baseline of :mod:`pipeline.metrics.mlm_check` (a usable head)
``distilbert-base-uncased``         a ``DistilBertForMaskedLM`` folder with a random (unusable) MLM head
``TinyBERT_General_4L_312D``        the TinyBERT general layout of :func:`hub_layouts.tinybert_layout`: config
                                    without ``model_type``, ``pytorch_model.bin`` with ``fit_denses.*``, only
                                    ``vocab.txt``; its ``cls.*`` tensors load but are not an LM head
==================================  ===============================================================================
"""

from __future__ import annotations

import json
from pathlib import Path

import tomllib
import torch
from hub_layouts import tinybert_layout
from transformers import BertConfig, BertForPreTraining, DistilBertConfig, DistilBertForMaskedLM

from pipeline.data import data_root, load_winobias
from pipeline.models import load_model

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "configs" / "paper.toml"
HUB_NAMES = ("bert-base-uncased", "distilbert-base-uncased", "huawei-noah/TinyBERT_General_4L_312D")
BERT_SHAPE = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 512,
}


def _tokenizer():
    return load_model("minilm", head="encoder").tokenizer


def _train_mlm_head(model: BertForPreTraining, tokenizer, *, steps: int, seed: int = 0) -> None:
    """Masked-LM training on WinoBias dev sentences, logits at masked positions only (fast on CPU)."""
    texts = sorted({i.text for k in (1, 2) for s in ("pro", "anti") for i in load_winobias(k, s, "dev")})
    enc = tokenizer(texts, padding=True, truncation=True, max_length=40, return_tensors="pt")
    ids, att = enc["input_ids"], enc["attention_mask"]
    special = (ids == tokenizer.cls_token_id) | (ids == tokenizer.sep_token_id) | (att == 0)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        rows = torch.randint(0, len(texts), (64,), generator=g)
        width = int(att[rows].sum(1).max())
        x, a, sp = ids[rows, :width].clone(), att[rows, :width], special[rows, :width]
        pick = (torch.rand(x.shape, generator=g) < 0.15) & ~sp
        target = x[pick]
        x[pick] = tokenizer.mask_token_id
        hidden = model.bert(input_ids=x, attention_mask=a).last_hidden_state[pick]
        loss = torch.nn.functional.cross_entropy(model.cls.predictions(hidden), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def bert_base_uncased(folder: Path, tokenizer=None, *, steps: int = 100) -> Path:
    """The bert-base-uncased stand-in (pre-training checkpoint layout, a briefly trained MLM head)."""
    tokenizer = tokenizer or _tokenizer()
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig(vocab_size=tokenizer.vocab_size, **BERT_SHAPE))
    _train_mlm_head(model, tokenizer, steps=steps)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architectures": ["BertForMaskedLM"]}, indent=2))
    return folder


def distilbert_base_uncased(folder: Path, tokenizer=None) -> Path:
    """The distilbert-base-uncased stand-in (``DistilBertForMaskedLM``; random, so its head is not usable)."""
    tokenizer = tokenizer or _tokenizer()
    torch.manual_seed(1)
    model = DistilBertForMaskedLM(
        DistilBertConfig(
            vocab_size=tokenizer.vocab_size, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=512
        )
    )
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tinybert_general(folder: Path, tokenizer=None) -> Path:
    """The huawei-noah/TinyBERT_General_4L_312D stand-in (its hub layout, the real uncased vocabulary)."""
    tokenizer = tokenizer or _tokenizer()
    vocab = [token for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])]
    tinybert_layout(folder, seed=2, vocab=vocab, max_position_embeddings=512, num_labels=2)
    return folder


def build_standins(root: Path) -> dict[str, Path]:
    """The three stand-in folders under ``root``, keyed by the hub name they replace."""
    tokenizer = _tokenizer()
    return {
        "bert-base-uncased": bert_base_uncased(root / "bert-base-uncased", tokenizer),
        "distilbert-base-uncased": distilbert_base_uncased(root / "distilbert-base-uncased", tokenizer),
        "huawei-noah/TinyBERT_General_4L_312D": tinybert_general(root / "TinyBERT_General_4L_312D", tokenizer),
    }


def shrunk_paper_config(out_dir: Path, standins: dict[str, Path], *, name: str = "paper") -> dict:
    """configs/paper.toml (as parsed TOML) with the hub models replaced by ``standins`` and every size shrunk.

    Kept as in the paper: the plan (every method, order, training set and hub student), the metric families, the
    analyses. Shrunk: one seed, CPU, few examples, one epoch, 16 tokens, small students, few bootstrap draws;
    the attribution and probes run on a few variants (one of them trained on the balanced set).
    """
    cfg = tomllib.loads(PAPER.read_text())
    swap = {name: str(path) for name, path in standins.items()}
    cfg["run"].update(name=name, out_dir=str(out_dir), seeds=[0], device="cpu", amp="no")
    cfg["teacher"]["source"] = swap[cfg["teacher"]["source"]]
    for hub in cfg["hub_students"]:
        hub["source"] = swap[hub["source"]]
    cfg["task"].update(path=str(data_root() / "bias_in_bios" / "sample"), max_train=48, max_eval=28, max_length=16)
    cfg["finetune"].update(epochs=1, batch_size=16, eval_batch_size=64)
    cfg["compress"]["distil"].update(epochs=1, batch_size=16)
    cfg["compress"]["tiny"].update(
        n_layers=2, hidden_size=16, n_heads=4, d_ff=32, epochs=1, pred_epochs=1, batch_size=16
    )
    cfg["compress"]["prune"].update(importance_examples=16)
    cfg["compress"]["biasprune"].update(heads=[1], protect=0.0, bias_examples=8, importance_examples=16)
    cfg["compress"]["erase"].update(fit_examples=32)
    cfg["metrics"].update(
        latency_batch_sizes=[1],
        latency_repeats=1,
        n_boot=100,
        seat_n_samples=100,
        seat_form="word",
        poolings=["mean"],
        max_examples=6,
        batch_size=64,
    )
    cfg["attribution"].update(
        variants=["teacher-ft", "hub-tinybert-ft_after@balanced"],
        n_examples=4,
        ig_steps=2,
        token_examples=1,
        cumulative_steps=2,
        n_boot=100,
        batch_size=64,
    )
    cfg["probes"].update(
        variants=["teacher-ft", "distil-ft_none@balanced"],
        max_examples=28,
        n_folds=2,
        inner_cv=2,
        n_boot=100,
        mdl=False,
        heads=False,
    )
    return cfg
