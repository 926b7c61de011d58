"""Independent reference for engine/dpo.c: the DPO family of losses written
as in TRL's DPOTrainer.dpo_loss (sigmoid with label smoothing, ipo, hinge),
with the gradient with respect to the policy log-probs from autograd, in
float64.

Writes tests/fixtures/dpo.json: run with /usr/bin/python3 from the
repository root. Inputs are float32 values (the C side reads them as float),
so the only difference left is float32 rounding of the C gradients.
"""
import json

import torch
import torch.nn.functional as F


def dpo_loss(loss_type, beta, eps, pc, pr, rc, rr):
    logits = (pc - pr) - (rc - rr)
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * logits) * (1 - eps) - F.logsigmoid(-beta * logits) * eps
    elif loss_type == "ipo":
        losses = (logits - 1 / (2 * beta)) ** 2
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * logits)
    return losses.mean()


def main():
    gen = torch.Generator().manual_seed(16)
    cases = []
    configs = [("sigmoid", 0.1, 0.0), ("sigmoid", 0.5, 0.0), ("sigmoid", 0.1, 0.2),
               ("ipo", 0.1, 0.0), ("ipo", 1.0, 0.0), ("hinge", 0.1, 0.0), ("hinge", 2.0, 0.0)]
    for loss_type, beta, eps in configs:
        n = 8
        # summed log-probs of a few dozen tokens: around -30, spread of a few nats
        x = [(-30 + 6 * torch.randn(n, generator=gen)).float().double() for _ in range(4)]
        pc = x[0].clone().requires_grad_(True)
        pr = x[1].clone().requires_grad_(True)
        loss = dpo_loss(loss_type, beta, eps, pc, pr, x[2], x[3])
        loss.backward()
        r_c = beta * (x[0] - x[2])
        r_r = beta * (x[1] - x[3])
        cases.append({
            "loss_type": loss_type, "beta": beta, "label_smoothing": eps,
            "policy_chosen": x[0].tolist(), "policy_rejected": x[1].tolist(),
            "ref_chosen": x[2].tolist(), "ref_rejected": x[3].tolist(),
            "loss": loss.item(), "d_chosen": pc.grad.tolist(), "d_rejected": pr.grad.tolist(),
            "rewards_chosen": r_c.mean().item(), "rewards_rejected": r_r.mean().item(),
            "rewards_accuracies": (r_c > r_r).double().mean().item(),
            "rewards_margins": (r_c - r_r).mean().item(),
        })
    with open("tests/fixtures/dpo.json", "w") as f:
        json.dump({"generator": "tests/reference/dpo_reference.py",
                   "torch": torch.__version__, "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
