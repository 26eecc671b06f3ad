"""The viewer's Head inspector: one head of one saved model, everything measured about it (ablation, patching, IG,
gradient importance, gender probe, each with its interval and q-value), its counterpart in the teacher or the
student (the layer it was initialised from / into), its attention pattern on a sentence and on the gender-swapped
twin, every head's attention on the sentence minus on the twin (:mod:`pipeline.viewer.twin_attention`), its signed
lineage in the teacher and its counterparts (:mod:`pipeline.viewer.viewer_lineage`), and the tokens it attends to
most over the run's test data.

Like the Playground, it computes: it loads the saved model with :func:`pipeline.models.load_model` (eager attention,
so that the weights can be read) and the run's test split with :func:`pipeline.viewer.widgets.test_split`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from pipeline.data import GenderSwapper
from pipeline.findings.comparisons import reference_of
from pipeline.models import LoadedModel, load_model
from pipeline.runs.runfolder import RunFolder
from pipeline.variants import Variant, variant_sort_key
from pipeline.viewer.navigation import INSPECT_WANTED
from pipeline.viewer.playground import DEFAULT_SENTENCE
from pipeline.viewer.twin_attention import forward_attentions, twin_attention_section
from pipeline.viewer.viewer_data import head_profile
from pipeline.viewer.viewer_heads import head_sources
from pipeline.viewer.viewer_lineage import lineage_section
from pipeline.viewer.widgets import Selection, figure, findings_config, flag_notice, load, table, test_split

__all__ = ["attention", "counterparts", "flagged_heads", "inspector", "top_attended"]

N_DATA = 64  # test texts behind "attends to most"
MIN_COUNT = 5  # occurrences a token needs to be ranked in "attends to most" (default)


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _model(folder: str) -> LoadedModel:
    loaded = load_model(folder, head="classifier")
    loaded.model.set_attn_implementation("eager")  # sdpa does not return attention weights
    return loaded


def _config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def attention(loaded: LoadedModel, texts: list[str], layer: int, head: int) -> list[tuple[list[str], np.ndarray]]:
    """(tokens, weights of shape (seq, seq)) of head ``head`` (its original id) at ``layer`` for each text (cut to
    the model's positions, at most 128 tokens)."""
    position = list(loaded.anatomy.head_ids[layer]).index(head)
    batch, attentions = forward_attentions(loaded, texts)
    weights = attentions[layer][:, position]  # (texts, seq, seq)
    out = []
    for i in range(len(texts)):
        keep = batch["attention_mask"][i].bool()
        ids = batch["input_ids"][i][keep].tolist()
        out.append((loaded.tokenizer.convert_ids_to_tokens(ids), weights[i][keep][:, keep].float().cpu().numpy()))
    return out


@st.cache_data(show_spinner="Reading the head's attention over the test data…", max_entries=16)
def top_attended(
    folder: str, texts: tuple[str, ...], layer: int, head: int, k: int = 15, min_count: int = 2
) -> pd.DataFrame:
    """The tokens head (layer, head) attends to most over ``texts``: per token, the attention it receives (mean over
    the query positions of a text), averaged over its occurrences; tokens seen at least ``min_count`` times."""
    loaded = _model(folder)
    received: dict[str, list[float]] = {}
    for start in range(0, len(texts), 16):
        for tokens, weights in attention(loaded, list(texts[start : start + 16]), layer, head):
            for token, mass in zip(tokens, weights.mean(axis=0)):
                received.setdefault(token, []).append(float(mass))
    rows = [
        {
            "token": t,
            "mean attention received": float(np.mean(v)),
            "occurrences": len(v),
            "share of all attention": float(np.sum(v)),
        }
        for t, v in received.items()
        if len(v) >= min_count
    ]
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["share of all attention"] /= out["share of all attention"].sum()
    return out.sort_values("mean attention received", ascending=False).head(k).round(4).reset_index(drop=True)


def counterparts(run: RunFolder, variant: str, seed: int, layer: int, present: list[str]) -> list[tuple[str, int]]:
    """(variant, layer) of the head's counterparts among ``present``: for a student, the teacher layer it was
    initialised from (``layer_map`` in its saved config, else 2i for a distilled one; the same layer when it has as
    many layers); for the teacher, the student layers initialised from this layer."""

    def mapping(name: str) -> list[int] | None:
        folder = run.models_dir / name / f"seed{seed}"
        config = _config(folder)
        if config.get("layer_map"):
            return [int(t) for t in config["layer_map"]]
        n, n_teacher = (
            config.get("num_hidden_layers"),
            _config(run.models_dir / "teacher-ft" / f"seed{seed}").get("num_hidden_layers"),
        )
        if n is not None and n == n_teacher:
            return list(range(n))
        if n is not None and Variant.parse(name).family == "distil":
            return list(range(0, 2 * n, 2))
        return None

    try:
        parsed = Variant.parse(variant)
    except ValueError:
        return []
    if parsed.method.startswith("teacher"):
        out = []
        for other in sorted(set(present) - {variant}, key=variant_sort_key):
            try:
                if other.startswith("teacher") or reference_of(other, "task", set(present)) != variant:
                    continue
            except ValueError:
                continue
            layers = mapping(other) or []
            out += [(other, i) for i, t in enumerate(layers) if t == layer]
        return out
    teacher = reference_of(variant, "task", set(present) | {"teacher-ft"})
    layers = mapping(variant)
    return [(teacher, layers[layer])] if teacher and layers and layer < len(layers) else []


def flagged_heads(units: pd.DataFrame | None, variant: str, seed: int) -> dict[tuple[int, int], str]:
    """(layer, head) -> which methods find that head of ``variant`` / ``seed`` carries bias (findings
    ``bias_units``) and its share of the model's effect, largest share first; empty without findings."""
    if units is None or units.empty:
        return {}
    rows = units[
        (units["variant"] == variant)
        & (units["seed"] == seed)
        & (units["unit"] == "head")
        & units["carries"].astype(bool)
    ]
    rows = rows.sort_values("share", ascending=False, kind="stable", key=np.abs)
    out: dict[tuple[int, int], list[str]] = {}
    for r in rows.itertuples():
        share = f" {r.share:.0%}" if np.isfinite(r.share) else ""
        out.setdefault((int(r.layer), int(r.head)), []).append(f"{r.method}{share}")
    return {key: f"layer {key[0]}, head {key[1]}: " + ", ".join(words) for key, words in out.items()}


def _jump() -> None:
    picked = st.session_state.get("inspect_jump")
    if picked is not None:
        st.session_state["inspect_layer"], st.session_state["inspect_head"] = picked
        st.session_state["inspect_jump"] = None  # an action, not a setting: the picker empties again


def _sources(view: Selection) -> tuple[dict, dict[str, pd.DataFrame | None]]:
    tables = {t: load(view, t) for t in {*(t for t, _ in head_sources().values()), "probes_heads", "bias_units"}}
    sources = {}
    for label, (name, metrics) in head_sources().items():
        frame = tables.get(name)
        present = set() if frame is None else set(frame.loc[frame["unit"] == "head", "metric"])
        metric = next((m for m in metrics if m in present), None)
        if metric is not None:
            sources[label] = (name, metric)
    if tables.get("probes_heads") is not None:
        sources["gender probe accuracy"] = ("probes_heads", "probe_accuracy")
    return sources, tables


def inspector(view: Selection) -> None:
    runs = [RunFolder(p) for p in view.runs]
    prefix = (lambda r: f"{r.name}/") if len(runs) > 1 else (lambda r: "")
    models = [
        (r, v, s) for r in runs for v, s in r.saved_models() if prefix(r) + v in view.variants and s in view.seeds
    ]
    sources, tables = _sources(view)
    attributed = {v for f in tables.values() if f is not None for v in set(f["variant"])}
    models.sort(key=lambda m: (prefix(m[0]) + m[1] not in attributed, variant_sort_key(m[1]), m[2]))
    if not models:
        st.info(
            "No saved model for the selected variants and seeds: the pipeline saves each variant under "
            "models/<variant>/seed<k>/ (run `bias-atlas run CONFIG`)."
        )
        return
    wanted = st.session_state.pop(INSPECT_WANTED, None)
    chosen = next((m for m in models if (prefix(m[0]) + m[1], m[2]) == wanted), None)
    if chosen is not None:
        st.session_state["inspect_model"] = chosen
    cols = st.columns([3, 1, 1])
    run, variant, seed = cols[0].selectbox(
        "Model", models, key="inspect_model", format_func=lambda m: f"{prefix(m[0])}{m[1]} (seed {m[2]})"
    )
    folder = run.model_dir(variant, seed)
    config = _config(folder)
    n_layers, n_heads = int(config.get("num_hidden_layers", 1)), int(config.get("num_attention_heads", 1))
    name = prefix(run) + variant
    flagged = flagged_heads(tables.get("bias_units"), name, seed)
    if flagged:
        st.selectbox(
            "Jump to a head that carries bias",
            list(flagged),
            index=None,
            format_func=flagged.get,
            key="inspect_jump",
            on_change=_jump,
            placeholder=f"{len(flagged)} heads carry bias (findings; method and share of the model's effect)",
        )
    layer = cols[1].selectbox("Layer", range(n_layers), key="inspect_layer")
    head = cols[2].selectbox("Head", range(n_heads), key="inspect_head")
    flag_notice(view, [name])
    st.subheader(f"{name} seed {seed}: layer {layer}, head {head}")
    alpha = findings_config(view).alpha
    profile = head_profile(tables, sources, name, layer, head, alpha=alpha)
    if profile.empty:
        st.info(
            f"No attribution table measures {name}: the attribution stage measures the variants of "
            "`[attribution] variants` (and the probes stage those of `[probes] variants`)."
        )
    else:
        table(
            f"head_{name}_L{layer}H{head}",
            profile[profile["seed"] == seed] if (profile["seed"] == seed).any() else profile,
            data=profile,
        )
        st.caption(
            f"Significant: q < {alpha:g} (Benjamini-Hochberg over the heads of the model); carries bias: "
            "the findings' verdict (significant and material). Ablation and IG explain the counterfactual gap "
            "P(y|female) - P(y|male); patching the true-class probability, oriented to the female twin. Gender "
            "probe: a linear probe of gender on the head's output, pooled over the text as the [CLS] token's "
            "(cls) or the mean over tokens (mean)."
        )
    present = sorted({v for v, _ in run.saved_models()}, key=variant_sort_key)
    mates = counterparts(run, variant, seed, layer, present)
    if mates:
        st.markdown(
            "**Counterpart** (same head id; the layer it was initialised from / into): "
            + ", ".join(f"{v} layer {lay}" for v, lay in mates)
        )
        rows = [head_profile(tables, sources, prefix(run) + v, lay, head, alpha=alpha) for v, lay in mates]
        rows = [
            r.assign(variant=v, layer=lay)[["variant", "layer", *r.columns]]
            for r, (v, lay) in zip(rows, mates)
            if len(r)
        ]
        if rows:
            table(f"counterparts_{name}_L{layer}H{head}", pd.concat(rows, ignore_index=True))
    lineage_section(view, run, prefix(run), variant, seed, layer, head)
    _attention_section(run, folder, layer, head, name)


def _attention_section(run: RunFolder, folder: Path, layer: int, head: int, name: str) -> None:
    st.subheader("Attention")
    try:
        texts = test_split(str(run.path)).texts
    except Exception as err:  # noqa: BLE001 - a data set that cannot be loaded here costs only this part
        texts = ()
        st.caption(f"The run's test texts cannot be loaded here ({type(err).__name__}: {err}); type a sentence.")
    choices = [DEFAULT_SENTENCE, *texts[:N_DATA]]
    text = st.selectbox(
        "Sentence",
        choices,
        key="inspect_text",
        accept_new_options=True,
        help="A test sentence of the run, or type your own.",
    )
    try:
        twin = GenderSwapper.from_winobias().swap(text)
    except FileNotFoundError:
        twin = text
    try:
        loaded = _model(str(folder))
    except (OSError, ValueError) as err:
        st.error(f"Cannot load {name}: {err}")
        return
    (tokens, weights), (twin_tokens, twin_weights) = attention(loaded, [text, twin], layer, head)
    figure(
        f"attention_{name}_L{layer}H{head}",
        "attention_pattern",
        (
            (f"text: {text[:60]}", tuple(tokens), weights),
            (f"gender-swapped twin: {twin[:60]}", tuple(twin_tokens), twin_weights),
        ),
        title=f"{name}: layer {layer}, head {head}",
        caption="Rows: the token that attends; columns: the token attended to (weights of each row sum to 1).",
    )
    twin_attention_section(loaded, name, text, twin, layer, head)
    if texts:
        st.markdown(f"**Tokens it attends to most** over {min(len(texts), N_DATA)} test sentences")
        least = int(
            st.number_input(
                "Seen at least (times)",
                1,
                N_DATA,
                MIN_COUNT,
                key="inspect_min_count",
                help="Tokens seen fewer times are left out: a mean over one or two occurrences is noise.",
            )
        )
        attended = top_attended(str(folder), tuple(texts[:N_DATA]), layer, head, min_count=least)
        table(f"attended_{name}_L{layer}H{head}", attended)
