"""Run configuration: typed TOML sections, validated on load, one section per stage.

``bias-atlas run CONFIG.toml`` reads a TOML file into a frozen :class:`RunConfig`. Every section is a
pydantic model with ``frozen=True, extra="forbid"``: unknown keys are errors that name the key, suggest the closest
allowed key (``epoch`` -> "did you mean `epochs`?") and list the section's keys; bad values are errors that name
the key path (``compress.prune.sparsities[1]``), the value and what is allowed. Checks that need the file system
(output folder, teacher config, dataset classes) live in :func:`pipeline.runs.run.preflight`, which runs before any
model is built.

Sections (see ``configs/demo.toml`` for a commented example):

    [run]           name, out_dir, seeds, device, amp, data_root
    [teacher]       source (hub name, folder or "minilm")
    [task]          dataset, files/columns, class and size limits, training sets, split, max_length
    [finetune]      task fine-tuning and optional masked-LM domain fine-tuning
    [compress.distil] [compress.tiny] [compress.prune] [compress.int8]   one per compression method, with orders
    [compress.biasprune] [compress.erase]   mitigations as variants (bias-aware pruning, LEACE concept erasure)
    [[hub_students]] ready-made students from the hub (paper runs)
    [metrics]       latency settings and the bias metrics (pipeline.metrics.config.BiasMetricsConfig)
    [attribution]   the attribution methods (attribution.config.AttributionConfig)
    [probes]        the probes (probes.config.ProbeConfig)
    [findings]      statistics and report (pipeline.runs.findings_config.FindingsConfig)

Fine-tuning orders (docs/DESIGN.md section 6): ``none`` (no task fine-tuning anywhere), ``before`` (fine-tune the
teacher, then compress), ``after`` (compress the pretrained teacher, then fine-tune the student), ``both``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import tomllib
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from attribution.config import AttributionConfig
from pipeline.compress.config import (
    BiasPruneSection,
    DistilSection,
    EraseSection,
    Int8Section,
    PruneSection,
    TinySection,
)
from pipeline.compress.registry import CompressSection, on_change
from pipeline.metrics.config import BiasMetricsConfig
from pipeline.runs.findings_config import FindingsConfig
from pipeline.settings import FT_ORDERS, Order, Settings, check_orders, distinct
from pipeline.train import FinetuneSection
from probes.config import ProbeConfig

__all__ = [
    "FT_ORDERS",
    "BiasPruneSection",
    "CompressSection",
    "ConfigError",
    "DistilSection",
    "EraseSection",
    "FinetuneSection",
    "HubStudent",
    "Int8Section",
    "MetricsSection",
    "Order",
    "PruneSection",
    "RunConfig",
    "RunSection",
    "TaskSection",
    "TeacherSection",
    "TinySection",
    "config_from_dict",
    "load_config",
]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # safe as a folder name
# a file name may hold 255 bytes; the run's temp folders add ".<name>.<pid>.<random>.tmp" and variant names their
# recipe, so names stay well below that
_NAME_MAX = 100


class ConfigError(ValueError):
    """A configuration problem; the message names the key, the bad value, what is allowed and the fix."""


# ---- sections ---------------------------------------------------------------------------------------------------
class RunSection(Settings):
    """Where and how the run executes."""

    name: str = Field(pattern=_NAME, max_length=_NAME_MAX)  # the run folder is <out_dir>/<name>
    out_dir: Path = Path("runs")
    seeds: tuple[int, ...] = Field(default=(0,), min_length=1)  # every trained variant is built once per seed
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda when available
    amp: Literal["no", "fp16", "bf16"] = "no"  # mixed precision of training (accelerate); fp16 needs a GPU
    data_root: Path | None = None  # default: $BIAS_ATLAS_DATA or ../shared/data beside the checkout
    analyses: tuple[Literal["bias_metrics", "attribution", "probes"], ...] = ("bias_metrics", "attribution", "probes")
    # where units run: "local" (one after another here) or "ray" (tasks on the cluster at $RAY_ADDRESS or a local
    # one; pip install -e ".[ray]"), each asking for these resources
    executor: Literal["local", "ray"] = "local"
    ray_cpus: float = Field(default=1.0, gt=0)
    ray_gpus: float = Field(default=0.0, ge=0)  # e.g. 1 for a BERT-base fine-tune on a GPU cluster
    ray_memory_gb: float | None = Field(default=None, gt=0)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(s < 0 for s in v):
            raise ValueError(f"seeds must be non-negative integers, got {list(v)}")
        if any(s >= 2**32 for s in v):
            raise ValueError(f"seeds must be below 2**32 (numpy's seed range), got {list(v)}")
        return distinct(v, "seeds")


class TeacherSection(Settings):
    """The uncompressed model: a BERT-family hub name, a save_pretrained folder, or ``"minilm"`` (offline)."""

    source: str = "minilm"
    # a teacher with a trained classifier head whose classes are not the data's by name (other names, or the
    # default LABEL_k): each head class -> the data class it is, e.g. { LABEL_0 = "nurse", LABEL_1 = "writer" }
    label_map: dict[str, str] | None = None


class TaskSection(Settings):
    """The occupation-classification task and its splits."""

    dataset: Literal["bug", "bias_in_bios", "table"] = "bug"
    # bug: a BUG CSV or folder (default <data_root>/bug); bias_in_bios: "LabHC/bias_in_bios" or a local file or
    # folder (default <data_root>/bias_in_bios/sample); table: the file (required)
    path: str | None = None
    bug_file: Literal["balanced", "gold"] = "balanced"
    min_per_class: int = Field(default=50, ge=1)  # BUG: rarer entity words are dropped
    text_col: str | None = None  # table only
    label_col: str | None = None
    gender_col: str | None = None
    max_classes: int | None = Field(default=None, ge=2)  # keep the most frequent classes only
    max_train: int | None = Field(default=None, ge=2)  # subsample the train split (after splitting)
    max_eval: int | None = Field(default=None, ge=1)  # subsample dev and test
    # "original" = the split as drawn; "balanced" = equal women and men per class (Leteno et al. 2023); "cda" =
    # counterfactual data augmentation, every text with its gender-swapped twin (Webster et al. 2020); "reweighed" =
    # the original texts with Kamiran & Calders (2012) instance weights in every training loss. With several,
    # variants that learn from the training set get a suffix "@balanced" / "@cda" / "@reweighed".
    training_sets: tuple[Literal["original", "balanced", "cda", "reweighed"], ...] = Field(
        default=("original",), min_length=1
    )
    cda: Literal["two_sided", "one_sided"] = "two_sided"  # each text and its twin, or the twin instead of the text
    split_seed: int = Field(default=0, ge=0)
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train, dev, test
    max_length: int = Field(default=128, ge=8, le=512)  # tokens per text, everywhere in the run

    @field_validator("training_sets")
    @classmethod
    def _sets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return distinct(v, "training_sets")

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(v) < 0 or abs(sum(v) - 1.0) > 1e-6 or v[0] == 0 or v[2] == 0:
            raise ValueError(f"fractions {list(v)} must be non-negative, sum to 1 and give train and test rows")
        return v

    @model_validator(mode="after")
    def _table_columns(self) -> TaskSection:
        if self.dataset == "table":
            missing = [k for k in ("path", "text_col", "label_col", "gender_col") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"dataset = 'table' needs {missing}; set them to the file and its column names")
        return self


class HubStudent(Settings):
    """A ready-made compressed model from the hub, compared beside the pipeline-made students."""

    source: str
    name: str = Field(pattern=_NAME, max_length=_NAME_MAX)  # variants are "hub-<name>-ft_<order>"
    orders: tuple[Order, ...] = ("after",)

    @field_validator("orders")
    @classmethod
    def _orders(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_orders(v, ("none", "after"), "a hub student is not compressed from this run's teacher")


class MetricsSection(BiasMetricsConfig):
    """Task metrics (latency) and the bias metrics of every variant (fields: :class:`BiasMetricsConfig`)."""

    latency_batch_sizes: tuple[int, ...] = (1, 32)  # CPU latency is measured at these batch sizes
    latency_repeats: int = Field(default=5, ge=1)  # median of this many timed runs


class RunConfig(Settings):
    """The whole run; each stage reads its own section."""

    run: RunSection
    teacher: TeacherSection = TeacherSection()
    task: TaskSection = TaskSection()
    finetune: FinetuneSection = FinetuneSection()
    compress: CompressSection = CompressSection()
    hub_students: tuple[HubStudent, ...] = ()
    metrics: MetricsSection = MetricsSection()
    attribution: AttributionConfig = AttributionConfig()
    probes: ProbeConfig = ProbeConfig()
    findings: FindingsConfig = FindingsConfig()

    @field_validator("hub_students")
    @classmethod
    def _hub_names(cls, v: tuple[HubStudent, ...]) -> tuple[HubStudent, ...]:
        distinct(tuple(h.name for h in v), "hub student names")
        return v


on_change(lambda: RunConfig.model_rebuild(force=True))  # a registered compression method adds its [compress.<key>]


# ---- loading ----------------------------------------------------------------------------------------------------
def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _section_model(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that holds the key at ``loc[:-1]`` (for listing allowed keys)."""
    model: Any = RunConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        nested += [
            a
            for c in candidates
            for a in getattr(c, "__args__", ())
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not nested:
            return None
        model = nested[0]
    return model


def _describe(error: dict) -> str:
    loc = tuple(error["loc"])
    path = _key_path(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        key, model = str(loc[-1]), _section_model(loc)
        allowed = list(model.model_fields) if model is not None else []
        section = _key_path(loc[:-1]) or "top level"
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        keys = f"Allowed keys in [{section}]: {', '.join(allowed)}." if allowed else f"[{section}] takes no keys yet."
        return f"`{path}`: unknown key.{hint} {keys}"
    msg = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"`{path}`: required key is missing; add it to the config."
    value = error.get("input")
    shown = f" = {value!r}" if not isinstance(value, dict) else ""
    return f"`{path}`{shown}: {msg}."


def config_from_dict(data: dict[str, Any], *, source: str = "<dict>") -> RunConfig:
    """Validate a parsed config.

    Raises:
        ConfigError: listing every problem, each with its key path, value and what is allowed.
    """
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        problems = "\n  - ".join(_describe(e) for e in err.errors())
        raise ConfigError(f"invalid config {source}:\n  - {problems}") from None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a TOML run config.

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigError: TOML syntax errors, unknown keys (with the closest allowed key) and bad values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist; see configs/demo.toml for an example.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}. Fix the syntax at that line.") from None
    return config_from_dict(data, source=str(path))
