"""data/scan.py: the once-per-call look at in-memory data, its cheap first pass and the exact second one."""
import pytest
import torch

from kerastorch.data import TensorBatcher
from kerastorch.data.scan import scan


def batcher(*arrays):
    return TensorBatcher(arrays, batch_size=2, shuffle=False)


def described(findings):
    return [f.describe() for f in findings]


def test_finite_values_whose_sum_overflows_are_not_reported():
    """The cheap pass's float32 sum overflows to inf; the exact look then finds every value finite."""
    x = torch.full((4, 2), 3e38)
    assert torch.isinf(x.sum())
    assert scan(batcher(x, torch.zeros(4, 1))) == []


@pytest.mark.parametrize(("values", "samples"), [
    ({1: float("inf"), 3: float("-inf")}, [1, 3]),  # their sum is NaN
    ({2: float("nan")}, [2]),
    ({0: float("-inf")}, [0]),
])
def test_every_non_finite_sample_is_found(values, samples):
    x = torch.zeros(5, 3)
    for row, value in values.items():
        x[row, 1] = value
    findings = scan(batcher(x, torch.zeros(5, 1)))
    assert [f.samples.tolist() for f in findings] == [samples]
    assert described(findings) == [f"`x` holds non-finite values (NaN or inf) in {len(samples)} "
                                   f"sample{'s' if len(samples) > 1 else ''} (the first: sample {samples[0]})"]


def test_a_nested_x_a_target_and_weights_are_each_looked_at():
    x = (torch.zeros(4, 2), torch.zeros(4, 1))
    x[1][2, 0] = float("nan")
    y = torch.zeros(4, 1)
    y[3, 0] = float("inf")
    weights = torch.tensor([1.0, -0.5, 1.0, 1.0])
    assert described(scan(batcher(x, y, weights))) == [
        "`x` holds non-finite values (NaN or inf) in 1 sample (the first: sample 2)",
        "`y` holds non-finite values (NaN or inf) in 1 sample (the first: sample 3)",
        "`sample_weight` holds negative values in 1 sample (the first: sample 1)"]


def test_integer_and_clean_data_find_nothing():
    assert scan(batcher(torch.arange(6).reshape(3, 2), torch.zeros(3, 1), torch.ones(3))) == []
