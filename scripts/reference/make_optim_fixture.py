"""Reference for the engine's AdamW and gradient clipping: torch.optim.AdamW with
torch.nn.utils.clip_grad_norm_ on two small tensors over three steps.
Run: /work/refenv/bin/python scripts/reference/make_optim_fixture.py"""
import json, torch

torch.manual_seed(0)
params = [torch.randn(7, dtype=torch.float32, requires_grad=True), torch.randn(2, 3, dtype=torch.float32, requires_grad=True)]
init = [p.detach().clone().flatten().tolist() for p in params]
opt = torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
steps = []
for step in range(3):
    grads = [torch.randn_like(p) * (step + 1) for p in params]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm=1.5)
    opt.step()
    steps.append({"grads": [g.flatten().tolist() for g in grads], "norm": float(norm),
                  "params_after": [p.detach().flatten().tolist() for p in params]})
out = {"torch": torch.__version__, "lr": 1e-2, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1,
       "max_norm": 1.5, "shapes": [list(p.shape) for p in params], "init": init, "steps": steps}
json.dump(out, open("crates/engine/tests/fixtures/reference/adamw.json", "w"), indent=1)
print("wrote adamw.json")
