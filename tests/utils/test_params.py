from __future__ import annotations

from torch import nn

from sidetune.utils.params import count_parameters, freeze, parameter_table


def test_freeze_and_counts() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    assert count_parameters(model) == (23, 23)
    freeze(model[0])
    assert count_parameters(model) == (8, 23)
    assert not model[0].training


def test_shared_parameters_counted_once() -> None:
    lin = nn.Linear(2, 2)
    model = nn.ModuleDict({"a": lin, "b": lin})
    assert count_parameters(model) == (6, 6)


def test_table_ends_with_summary_line() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Sequential(nn.Linear(3, 2)))
    freeze(model[0])
    table = parameter_table(model, depth=2)
    assert table.splitlines()[-1] == "trainable parameters: 8 / total 23 (34.78%)"
    assert "1.0" in table  # nested child listed at depth 2
