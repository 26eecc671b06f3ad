"""Probes of bias-atlas: where is gender linearly decodable inside a BERT-family model, and what happens if it is
erased?

- :mod:`probes.extract`: pooled representations of every layer and head, one forward pass per batch, disk cache.
- :mod:`probes.linear`: cross-validated logistic-regression probes per layer and per head (Conneau et al. 2018).
- :mod:`probes.control`: control tasks and selectivity (Hewitt & Liang 2019).
- :mod:`probes.mdl`: online-code minimum description length (Voita & Titov 2020).
- :mod:`probes.erasure`: LEACE erasure inside the model and amnesic probing (Belrose et al. 2023; Elazar et al. 2021).
- :mod:`probes.curves`: curves on normalised depth across variants, per-head maps.
- :mod:`probes.analysis`: the probes of one variant (:func:`run_probes`); :mod:`probes.config` its settings.

Command line: ``bias-atlas probe run --model minilm --data bug`` (see :mod:`probes.cli`).
"""

from pipeline.lazy import lazy_exports

# Public name -> defining module, imported lazily (PEP 562): importing ``probes.config`` (as the run config does)
# must not import every probe module, so that stage cache keys follow real imports only.
_EXPORTS = {
    "BLOCK_FRACTIONS": "mdl",
    "ConceptEraser": "erasure",
    "DEFAULT_CS": "linear",
    "FIT_ON": "erasure",
    "LinearProbe": "linear",
    "METRICS": "linear",
    "POOLINGS": "extract",
    "ProbeConfig": "config",
    "Representations": "extract",
    "PROBE_TABLES": "analysis",
    "add_depth": "compare",
    "amnesic_effect": "erasure",
    "control_labels": "control",
    "control_task": "control",
    "data_fingerprint": "extract",
    "default_cache_dir": "extract",
    "depth_curves": "compare",
    "erase_layer": "erasure",
    "extract": "extract",
    "fit_eraser": "erasure",
    "head_map": "compare",
    "interval": "linear",
    "make_splits": "linear",
    "mdl_layers": "mdl",
    "model_fingerprint": "extract",
    "online_codelength": "mdl",
    "plot_depth_curves": "compare",
    "plot_head_map": "compare",
    "prepare_data": "analysis",
    "probe_heads": "linear",
    "probe_layers": "linear",
    "run_probes": "analysis",
}

__all__ = [
    "BLOCK_FRACTIONS",
    "DEFAULT_CS",
    "FIT_ON",
    "METRICS",
    "POOLINGS",
    "PROBE_TABLES",
    "ConceptEraser",
    "LinearProbe",
    "ProbeConfig",
    "Representations",
    "add_depth",
    "amnesic_effect",
    "control_labels",
    "control_task",
    "data_fingerprint",
    "default_cache_dir",
    "depth_curves",
    "erase_layer",
    "extract",
    "fit_eraser",
    "head_map",
    "interval",
    "make_splits",
    "mdl_layers",
    "model_fingerprint",
    "online_codelength",
    "plot_depth_curves",
    "plot_head_map",
    "prepare_data",
    "probe_heads",
    "probe_layers",
    "run_probes",
]


__getattr__, __dir__ = lazy_exports("probes", _EXPORTS)
