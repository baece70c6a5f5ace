"""The stage-2 teacher: an EMA of the student, beta 0.99, updated every 10 steps from step 0."""

import torch
from torch import nn

from loftup.train.ema import EMATeacher


def test_ema_blends_at_the_recipes_rate_on_steps_0_10_20_only():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    teacher = EMATeacher(student, beta=0.99, every=10)
    assert not teacher.model.training
    assert not any(p.requires_grad for p in teacher.model.parameters())
    start = {k: v.clone() for k, v in teacher.state_dict().items()}
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
        student[1].running_mean.fill_(2.0)
        student[1].num_batches_tracked.fill_(7)
    done = [step for step in range(25) if teacher.update(student, step)]
    assert done == [0, 10, 20]  # "starting at once": step 0 already blends
    mine, theirs = teacher.state_dict(), student.state_dict()
    kept = 0.99**3  # three blends of teacher <- 0.99 teacher + 0.01 student
    for key in ("0.weight", "0.bias", "1.weight", "1.running_mean"):
        want = kept * start[key] + (1 - kept) * theirs[key]
        assert torch.allclose(mine[key], want, atol=1e-6), key
    assert int(mine["1.num_batches_tracked"]) == 7  # integer buffers are copied, not blended
