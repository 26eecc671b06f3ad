"""Attribution of gender bias to heads, neurons and tokens of BERT-family models.

One method per class, captum style: the constructor takes the loaded model and a score
(:mod:`attribution.scores`), ``attribute(data, *, ...)`` returns a tidy table (:mod:`pipeline.schema`):
:class:`HeadAblation`, :class:`GradientHeadImportance`, :class:`TokenIntegratedGradients`,
:class:`HeadIntegratedGradients`, :class:`NeuronIntegratedGradients`, :class:`ActivationPatching`. The data is an
:class:`AttributionData` (texts tokenised once, with aligned gender-swapped twins). :func:`fast_sweep` is the
prefix-cached single-head sweep, :mod:`attribution.lens` the TransformerLens bridge, :mod:`attribution.compare`
the comparison across models, :mod:`attribution.sanity` the randomisation check, and
:func:`run_attribution` the pipeline stage. See ``docs/ATTRIBUTION.md``.
"""

from pipeline.lazy import lazy_exports

# Public name -> defining module. Imported lazily (PEP 562), so that ``pipeline.runs.runfolder`` / the viewer do not
# pull in torch, captum and TransformerLens just by importing the package.
_EXPORTS = {
    "HeadAblation": "ablation", "AttributionConfig": "config", "run_attribution": "analysis",
    "AttributionData": "data", "Batch": "data", "View": "data", "GateIndependentScoreError": "errors",
    "HeadIntegratedGradients": "ig", "NeuronIntegratedGradients": "ig", "TokenIntegratedGradients": "ig",
    "GradientHeadImportance": "importance", "LensModel": "lens", "lens_patching": "lens", "to_bert_mlm": "lens",
    "to_lens": "lens", "ActivationPatching": "patching", "randomised_copy": "sanity", "sanity_check": "sanity",
    "CounterfactualGap": "scores", "PronounGap": "scores", "Score": "scores", "SeatEffect": "scores",
    "TaskLoss": "scores", "TrueClassProb": "scores", "make_score": "scores", "fast_sweep": "sweep",
    "naive_sweep": "sweep",
}  # fmt: skip

__all__ = [
    "ActivationPatching",
    "AttributionConfig",
    "AttributionData",
    "Batch",
    "CounterfactualGap",
    "GateIndependentScoreError",
    "GradientHeadImportance",
    "HeadAblation",
    "HeadIntegratedGradients",
    "LensModel",
    "NeuronIntegratedGradients",
    "PronounGap",
    "Score",
    "SeatEffect",
    "TaskLoss",
    "TokenIntegratedGradients",
    "TrueClassProb",
    "View",
    "fast_sweep",
    "lens_patching",
    "make_score",
    "naive_sweep",
    "randomised_copy",
    "run_attribution",
    "sanity_check",
    "to_bert_mlm",
    "to_lens",
]


__getattr__, __dir__ = lazy_exports("attribution", _EXPORTS)
