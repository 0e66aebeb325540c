"""The fused AdamW the trainer uses on CPU takes the same steps as the plain one."""

from __future__ import annotations

import torch

from sidetune.engine import TrainConfig, build_optimizer


def test_fused_cpu_adamw_equals_plain() -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(lr=1e-2, weight_decay=1e-2)
    plain = [torch.randn(6, 5, requires_grad=True), torch.randn(5, requires_grad=True)]
    fused = [p.detach().clone().requires_grad_() for p in plain]
    start = [p.detach().clone() for p in plain]

    def groups(params: list[torch.Tensor]) -> list[dict[str, object]]:
        return [{"params": [params[0]]}, {"params": [params[1]], "weight_decay": 0.0}]

    opt_plain = build_optimizer(groups(plain), cfg)
    opt_fused = build_optimizer(groups(fused), cfg, fused=True)
    assert opt_fused.defaults["fused"] and not opt_plain.defaults.get("fused")
    for _ in range(5):
        grads = [torch.randn_like(p) for p in plain]
        for p, q, g in zip(plain, fused, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        opt_plain.step()
        opt_fused.step()
    for p, q in zip(plain, fused, strict=True):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7)
    assert all(not torch.allclose(p, s) for p, s in zip(plain, start, strict=True))
