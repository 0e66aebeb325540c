import json
import random

import numpy as np
import torch

from sidetune.engine import get_rng_state, seed_everything, set_rng_state


def test_rng_state_round_trips_through_json() -> None:
    seed_everything(123)
    state = json.loads(json.dumps(get_rng_state()))
    a = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(), np.random.randn())
    seed_everything(7)
    set_rng_state(state)
    b = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(), np.random.randn())
    assert a == b


def test_seed_everything_reproducible() -> None:
    seed_everything(5)
    x = torch.randn(4)
    seed_everything(5)
    assert torch.equal(x, torch.randn(4))
