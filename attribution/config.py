"""Settings of the attribution stage (``[attribution]`` of a run; docs/ATTRIBUTION.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from pipeline.method_registry import methods
from pipeline.settings import Settings, resamples

__all__ = ["EXAMPLES_TABLE", "AttributionConfig"]

EXAMPLES_TABLE = "head_examples"  # per-example head effects of ablation and patching (the findings resample them)


class AttributionConfig(Settings):
    """Settings of the attribution stage (docs/ATTRIBUTION.md).

    The defaults keep one MiniLM-sized variant to a few minutes on a CPU; raise ``n_examples`` (and
    ``cumulative_steps``) for paper runs on a GPU.
    """

    # what a classifier's attribution explains: the skew-oriented counterfactual gap (a mean that does not cancel
    # across classes; docs/FINDINGS.md) or the signed gap P(y | female version) - P(y | male version)
    target: Literal["cf_skew_gap", "cf_gap"] = "cf_skew_gap"
    ablation: bool = True
    ablation_modes: tuple[Literal["single", "layer", "leave_one_in"], ...] = ("single", "layer")
    cumulative: bool = True  # curves ordered by gradient importance (by single-head ablation for int8 models)
    cumulative_steps: int = Field(default=13, ge=0)  # points on each curve, evenly spaced; 0 = every head count
    cumulative_random: int = Field(
        default=5, ge=0
    )  # seeded random orders: the baseline the two curves are read against
    importance: bool = True
    head_ig: bool = True
    neuron_ig: bool = True
    token_ig: bool = True
    patching: bool = True
    atp: bool = False  # attribution patching: first-order effects of every head and neuron, top ones confirmed exactly
    atp_baseline: Literal["zero", "mean", "counterfactual"] = "zero"  # counterfactual = patching (true-class prob)
    atp_units: tuple[Literal["head", "neuron"], ...] = ("head", "neuron")
    # units of each kind re-measured exactly (on the half of the examples the screen did not use): about 2x the top k
    # wanted, since a screen can miss a unit of the true top k (docs/ATTRIBUTION.md gives the measured recall)
    atp_confirm_top: int = Field(default=20, ge=0)
    # also patch the top-k neurons of neuron IG (0 = heads only), picked on one half of the examples, tested on the other
    patch_top_neurons: int = Field(default=0, ge=0)
    pruning_curve: bool = False  # classifiers: bias and accuracy as heads go in bias / importance / random order
    pruning_random: int = Field(default=5, ge=1)  # random orders averaged on the pruning curve
    pruning_steps: int = Field(default=13, ge=0)  # points on each pruning curve, evenly spaced; 0 = every head count
    pruning_protect: float = Field(default=0.0, ge=0, lt=1)  # share of most task-important heads put last in bias order
    n_examples: int = Field(default=64, ge=0)  # examples drawn (seeded) from the data; 0 = all
    token_examples: int = Field(default=8, ge=0)  # examples explained token by token
    batch_size: int = Field(default=64, ge=1)  # rows (gate setting x example) per forward pass
    ig_steps: int = Field(default=32, ge=1)
    token_ig_steps: int = Field(default=0, ge=0)  # steps of token IG (harder to make complete); 0 = ig_steps
    # token IG from the gender-swapped twin (the bias: sums to each example's gap) or from padding (the prediction)
    token_ig_baseline: Literal["twin", "padding"] = "twin"
    ig_batch_size: int = Field(default=64, ge=1)  # rows (example x integration step) per IG forward pass
    baseline: Literal["zero", "mean"] = "zero"  # what an ablated head outputs
    n_boot: int = Field(default=500, ge=0)
    seed: int = Field(default=0, ge=0)
    variants: tuple[str, ...] = ()  # in a pipeline run: the variants to attribute (empty = every variant)
    seat_test: str = "sent-weat6"  # in a pipeline run: the SEAT test explained for variants without a trained head
    compare: bool = True  # in a pipeline run: also write the ``comparison`` table across variants and seeds
    top_k: int = Field(default=10, ge=1)  # top-k overlap of head effects between seeds
    extra_methods: tuple[str, ...] = ()  # switches of plug-in methods to run (pipeline.method_registry.register_method)

    @field_validator("extra_methods")
    @classmethod
    def _registered(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        known = {m.switch for m in methods()}
        unknown = [name for name in v if name not in known]
        if unknown:
            raise ValueError(f"extra_methods {unknown}: no registered attribution method has that switch; known: "
                             f"{', '.join(sorted(known))} (a plug-in registers one with register_method).")  # fmt: skip
        return v

    @field_validator("n_boot")
    @classmethod
    def _enough_resamples(cls, v: int) -> int:
        return resamples(v, "n_boot", zero="no intervals")
