"""compile() misuse (issue 10, item 4): refused with the fix, and the previous configuration kept."""
import numpy as np
import pytest
import torch
from torch import nn

import kerastorch as kt


def compiled():
    model = kt.Model.wrap(nn.Linear(2, 1))
    model.compile("sgd", "mse", device="cpu")
    return model, model._config


def test_a_loss_class_instead_of_an_instance_says_add_parentheses():
    model, config = compiled()
    with pytest.raises(TypeError, match=r"`loss` must be a loss object, not a class: pass MSELoss\(\) \(with "
                                        r"parentheses\)\. Received: loss=<class 'torch.nn.modules.loss.MSELoss'>"):
        model.compile("sgd", nn.MSELoss, device="cpu")
    assert model._config is config


@pytest.mark.parametrize("name", ["grad_clip_norm", "grad_clip_value"])
@pytest.mark.parametrize("value", [-1.0, 0, float("nan"), float("inf")])
def test_clipping_values_must_be_positive_and_finite(name, value):
    model, config = compiled()
    with pytest.raises(ValueError, match=rf"`{name}` must be a positive finite number or None \(no clipping\)\. "
                                         rf"Received: {name}={value!r}.*e\.g\. grad_clip_norm=1\.0"):
        model.compile("sgd", "mse", device="cpu", **{name: value})
    assert model._config is config


def test_numpy_numbers_are_taken_for_clipping_and_accumulation():
    model = kt.Model.wrap(nn.Linear(2, 1))
    model.compile("sgd", "mse", device="cpu", grad_clip_norm=np.float64(1.0), grad_accum_steps=np.int64(2))
    assert type(model._config.grad_accum_steps) is int
    assert len(model.fit(torch.randn(8, 2), torch.randn(8, 1), batch_size=2, verbose=0)) == 1


def test_class_weight_keys_must_be_class_indices():
    model, config = compiled()
    with pytest.raises(ValueError, match=r"`class_weight` must be a dict \{class_index: weight\} with integer "
                                         r"keys >= 0 \(\"0\" and 0\.0 are read as 0\)\. Received: "
                                         r"class_weight=\{'cat': 1\.0\}"):
        model.compile("sgd", "bce_with_logits", class_weight={"cat": 1.0}, device="cpu")
    assert model._config is config
