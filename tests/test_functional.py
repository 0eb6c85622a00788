"""The task-batched functional forward equals the ordinary per-task forward."""
import torch
from torch.func import functional_call

from bilevel_anil.models import MLP, Conv4, build_model


def _per_task(model, params_per_task, x):
    return torch.stack([functional_call(model, p, (x[b],)) for b, p in enumerate(params_per_task)])


def test_conv4_shared_and_per_task_parameters():
    torch.manual_seed(0)
    model = Conv4(ways=5, hidden=8)
    x = torch.rand(3, 6, 1, 28, 28)
    theta = dict(model.named_parameters())
    shared = model.head_forward(theta, model.body_forward(theta, x))
    want = torch.stack([model(x[b]) for b in range(3)])
    torch.testing.assert_close(shared, want, rtol=1e-5, atol=1e-5)
    per_task = {n: p.unsqueeze(0).repeat(3, *[1] * p.dim()) + 0.01 * torch.randn(3, *p.shape) for n, p in theta.items()}
    got = model.head_forward(per_task, model.body_forward(per_task, x))
    want = _per_task(model, [{n: p[b] for n, p in per_task.items()} for b in range(3)], x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_batch_norm_uses_each_tasks_own_statistics():
    torch.manual_seed(0)
    model = Conv4(ways=5, hidden=8)
    theta = dict(model.named_parameters())
    x = torch.rand(2, 4, 1, 28, 28)
    alone = model.body_forward(theta, x[:1])
    shifted = x.clone()
    shifted[1] += 5.0  # another task's images must not change task 0's normalisation
    together = model.body_forward(theta, shifted)
    torch.testing.assert_close(together[:1], alone)


def test_mlp_per_task_and_rebuild():
    torch.manual_seed(0)
    model = MLP()
    x = torch.rand(4, 10, 1)
    theta = {n: p.unsqueeze(0).repeat(4, *[1] * p.dim()) for n, p in model.named_parameters()}
    got = model.head_forward(theta, model.body_forward(theta, x))
    torch.testing.assert_close(got, torch.stack([model(x[b]) for b in range(4)]))
    clone = build_model(model.arch)
    assert [n for n, _ in clone.named_parameters()] == [n for n, _ in model.named_parameters()]


def test_running_statistics_mode_matches_batch_norm_2d():
    """Training mode: batch statistics and BatchNorm2d's running update (pooled over the
    meta-batch); evaluation mode: each example normalised with the running statistics."""
    torch.manual_seed(0)
    model = Conv4(ways=5, hidden=8, bn="running")
    reference = Conv4(ways=5, hidden=8, bn="running")
    reference.load_state_dict(model.state_dict())
    x = torch.rand(3, 4, 1, 28, 28)
    theta = dict(model.named_parameters())
    model.train()
    model.body_forward(theta, x)
    reference.train()
    reference.body[0](x.flatten(0, 1))  # the first block sees the same inputs pooled over all tasks
    ours, ref = model.body[0].bn, reference.body[0].bn
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    assert not torch.equal(ref.running_var, torch.ones(8))
    reference.load_state_dict(model.state_dict())
    model.eval()
    reference.eval()
    per_task = {n: p.unsqueeze(0).repeat(3, *[1] * p.dim()) + 0.01 * torch.randn(3, *p.shape) for n, p in theta.items()}
    got = model.head_forward(per_task, model.body_forward(per_task, x))
    want = _per_task(reference, [{n: p[b] for n, p in per_task.items()} for b in range(3)], x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    one = model.head_forward(theta, model.body_forward(theta, x[:, :1]))
    torch.testing.assert_close(one, model.head_forward(theta, model.body_forward(theta, x))[:, :1])  # per example


def test_conv4_colour_input_and_mixed_shared_per_task_parameters():
    """Three input channels (the grouped convolution from the first layer on) and a network
    whose last block and head are per task while the rest is shared, as a partial inner loop
    adapts them; values and the gradients (float64) of the shared parameters match the per-task forward."""
    torch.manual_seed(0)
    model = Conv4(ways=4, in_channels=3, hidden=8, image_size=32).double()
    x = torch.rand(3, 5, 3, 32, 32, dtype=torch.float64)
    theta = dict(model.named_parameters())
    mixed = {n: (p.unsqueeze(0).repeat(3, *[1] * p.dim()) + 0.01 * torch.randn(3, *p.shape)
                 if n.startswith(("body.3.", "head.")) else p) for n, p in theta.items()}
    got = model.head_forward(mixed, model.body_forward(mixed, x))
    want = _per_task(model, [{n: (p[b] if p.dim() > theta[n].dim() else p) for n, p in mixed.items()}
                             for b in range(3)], x)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    shared = [p for n, p in theta.items() if not n.startswith(("body.3.", "head."))]
    g_got = torch.autograd.grad(got.square().sum(), shared, retain_graph=True)
    g_want = torch.autograd.grad(want.square().sum(), shared)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
