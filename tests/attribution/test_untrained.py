"""The "weights look untrained" check (pipeline.untrained): random weights are flagged, trained or planted ones
are not, and the commands print it."""

from __future__ import annotations

import pytest
import torch

from pipeline.untrained import untrained_reason


@pytest.mark.parametrize("family, init", [("bert", 0.2), ("bert", 0.02), ("distilbert", 0.02)])
def test_a_random_model_is_flagged(tiny_loaded, family, init):
    reason = untrained_reason(tiny_loaded(family, initializer_range=init).model)
    assert reason and reason.startswith("weights look untrained: all") and f"N(0, {init:g})" in reason


def test_a_few_training_steps_or_planted_weights_are_not_flagged(tiny_loaded, planted):
    model = tiny_loaded("bert").model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids, labels = torch.randint(5, 50, (8, 6), generator=torch.Generator().manual_seed(0)), torch.arange(8) % 2
    for _ in range(3):
        model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert untrained_reason(model) is None  # biases and LayerNorms moved
    assert untrained_reason(planted[0].model) is None  # weights set by hand: not the init distribution


def test_the_commands_print_the_flag(tiny_loaded, tmp_path, capsys):
    from pipeline.cli.main import main

    folder = tmp_path / "random"
    loaded = tiny_loaded("bert", "encoder")
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    assert main(["metrics", "seat", "--model", str(folder), "--form", "word", "--pooling", "mean", "--n-samples",
                 "100", "--n-boot", "0"]) == 0  # fmt: skip
    assert f"warning: {folder}: weights look untrained" in capsys.readouterr().err
    assert main(["ig", "--model", str(folder), "--score", "seat", "--n-boot", "100", "--steps", "4"]) == 0
    assert f"warning: {folder}: weights look untrained" in capsys.readouterr().err
    assert main(["metrics", "seat", "--form", "word", "--pooling", "mean", "--n-samples", "100", "--n-boot", "0"]) == 0
    assert "weights look untrained" not in capsys.readouterr().err  # MiniLM: pretrained
