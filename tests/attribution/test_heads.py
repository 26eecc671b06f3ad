"""TaskHead: the model's own head applied to final hidden states equals the full model's logits."""

from __future__ import annotations

import pytest
import torch
from tiny import random_batch

from attribution.task_head import TaskHead, check_head


@pytest.mark.parametrize("family", ["bert", "distilbert"])
@pytest.mark.parametrize("head", ["classifier", "mlm"])
def test_head_on_hidden_equals_model_logits(tiny_loaded, family, head):
    loaded = tiny_loaded(family, head)
    ids, mask = random_batch(4, 9)
    with torch.no_grad():
        full = loaded.model(input_ids=ids, attention_mask=mask).logits
        hidden = loaded.anatomy.base(input_ids=ids, attention_mask=mask).last_hidden_state
        task = TaskHead(loaded)
        if head == "classifier":
            torch.testing.assert_close(task.classify(hidden), full, atol=1e-6, rtol=0)
        else:
            torch.testing.assert_close(task.mlm(hidden), full, atol=1e-5, rtol=0)
            pos = torch.tensor([1, 2, 3, 0])
            expected = full[torch.arange(4), pos].log_softmax(-1)
            torch.testing.assert_close(task.mlm_at(hidden, pos), expected, atol=1e-5, rtol=0)


def test_missing_head_is_a_clear_error(tiny_loaded):
    loaded = tiny_loaded("bert", "mlm")
    with pytest.raises(ValueError, match="needs a model with a classifier head.*head='mlm'"):
        check_head(loaded, "classifier", "TaskLoss")
    with pytest.raises(ValueError, match="classifier head"):
        TaskHead(loaded).classify(torch.zeros(1, 3, 32))
    check_head(loaded, "encoder", "SeatEffect")  # any model has an encoder
