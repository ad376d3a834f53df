"""Three AdamW and SGD steps in PyTorch on fixed gradients -> tests/fixtures/optim.json."""
import json

import torch

torch.manual_seed(0)
p0 = torch.randn(3, 4)
q0 = torch.randn(4)
grads = [(torch.randn(3, 4), torch.randn(4)) for _ in range(3)]


def run(make_opt):
    p = p0.clone().requires_grad_()
    q = q0.clone().requires_grad_()
    opt = make_opt(p, q)
    for gp, gq in grads:
        opt.zero_grad()
        p.grad = gp.clone()
        q.grad = gq.clone()
        opt.step()
    return p.detach().flatten().tolist(), q.detach().flatten().tolist()


out = {
    "p0": p0.flatten().tolist(), "q0": q0.flatten().tolist(),
    "grads": [[gp.flatten().tolist(), gq.flatten().tolist()] for gp, gq in grads],
    "adamw": run(lambda p, q: torch.optim.AdamW([{"params": [p], "weight_decay": 0.1}, {"params": [q], "weight_decay": 0.0}],
                                                lr=1e-2, betas=(0.9, 0.999), eps=1e-8)),
    "sgd": run(lambda p, q: torch.optim.SGD([{"params": [p], "weight_decay": 0.01}, {"params": [q], "weight_decay": 0.0}],
                                            lr=0.1, momentum=0.9)),
    "sgd_nesterov": run(lambda p, q: torch.optim.SGD([{"params": [p], "weight_decay": 0.01}, {"params": [q], "weight_decay": 0.0}],
                                                     lr=0.1, momentum=0.9, nesterov=True)),
}
with open("tests/fixtures/optim.json", "w") as f:
    json.dump(out, f)
print("wrote tests/fixtures/optim.json")
