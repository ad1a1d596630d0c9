"""fusedvae.ops against the float64 reference (python_ref/vae_ref.py) on the golden cases' inputs
(python_ref/make_golden.py: clamp edges, huge and tiny mu, saturated logits, SmoothL1 kinks), and
against float64 PyTorch compositions of the same formulas through autograd; torch.library.opcheck
on every custom op; torch.compile against eager; bad inputs give exceptions, never a crash."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="fusedvae.ops needs PyTorch")
import torch.nn.functional as F  # noqa: E402

import make_golden  # noqa: E402  (python_ref, on sys.path through conftest)
import vae_ref  # noqa: E402
from conftest import close, cuda_skip_reason, devices  # noqa: E402

import fusedvae.ops as ops  # noqa: E402

# float32 work against float64 references: the CPU twins sum in double and round once; the kernels
# sum in float trees (README, "The ops"), hence a looser relative bound on CUDA.
REL = {"cpu": 4e-6, "cuda": 2e-5}
SHAPES = list(make_golden.SMALL_SHAPES) + [(1025, 301)]
SEED, DRAW = 1234, 7


def rng_for(name):
    return make_golden.case_rng("pytest/" + name)


def as_tensor(array, device, requires_grad=False):
    return torch.tensor(np.asarray(array, dtype=np.float32), device=device,
                        requires_grad=requires_grad)


def numpy(t):
    return t.detach().cpu().double().numpy()


# ------------------------------------------------------------------------------------------------
# reparam_kl

def reparam_case(name, batch, dim, clamp=(-30.0, 20.0)):
    inputs = make_golden.reparam_inputs(rng_for(name), batch, dim)
    return inputs["mu"], inputs["logvar"], clamp


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("batch,dim", SHAPES)
@pytest.mark.parametrize("clamp", [(-30.0, 20.0), (-10.0, 10.0)], ids=["clamp30_20", "clamp10"])
def test_reparam_kl_forward_matches_float64_reference(device, batch, dim, clamp):
    mu, logvar, _ = reparam_case(f"reparam/{batch}x{dim}", batch, dim)
    z, kl = ops.reparam_kl(as_tensor(mu, device), as_tensor(logvar, device), seed=SEED, draw=DRAW,
                           logvar_min=clamp[0], logvar_max=clamp[1])
    eps = ops.normal_eps(batch, dim, seed=SEED, draw=DRAW, device=device)
    ref = vae_ref.reparam_kl_forward_given_eps(mu, logvar, numpy(eps), clamp[0], clamp[1], "sum")
    assert z.shape == (batch, dim) and kl.shape == (batch,)
    assert z.dtype == kl.dtype == torch.float32 and z.device.type == device
    close(numpy(z), ref.z, ref.z_mag, REL[device])
    close(numpy(kl), ref.kl_per_sample, ref.kl_per_sample_mag, REL[device])


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("batch,dim", SHAPES)
@pytest.mark.parametrize("kl_grad", ["uniform", "per_sample"])
def test_reparam_kl_backward_matches_float64_reference(device, batch, dim, kl_grad):
    """Autograd through reparam_kl: eps regenerated in the backward; a KL gradient shared by every
    sample takes the one fused pass, per-sample ones add the KL terms after it."""
    mu, logvar, _ = reparam_case(f"reparam/{batch}x{dim}", batch, dim)
    rng = rng_for(f"reparam_grad/{batch}x{dim}")
    dz = rng.normal(0.0, 1.0, (batch, dim)).astype(np.float32)
    if kl_grad == "uniform":
        dkl = np.full(batch, np.float32(0.37), dtype=np.float32)
    else:
        dkl = rng.uniform(0.1, 2.0, batch).astype(np.float32)
    mu_t, lv_t = as_tensor(mu, device, True), as_tensor(logvar, device, True)
    z, kl = ops.reparam_kl(mu_t, lv_t, seed=SEED, draw=DRAW)
    ((z * as_tensor(dz, device)).sum() + (kl * as_tensor(dkl, device)).sum()).backward()
    eps = numpy(ops.normal_eps(batch, dim, seed=SEED, draw=DRAW, device=device))
    # The reference's backward takes one KL weight; per sample, scale each row's KL part.
    ref_z = vae_ref.reparam_kl_backward_given_eps(dz, mu, logvar, eps, 0.0, 1.0, reduction="sum")
    ref_kl = vae_ref.reparam_kl_backward_given_eps(np.zeros_like(dz), mu, logvar, eps, 1.0, 1.0,
                                                   reduction="sum")
    w = dkl.astype(np.float64)[:, None]
    dmu, dmu_mag = ref_z.dmu + w * ref_kl.dmu, ref_z.dmu_mag + w * ref_kl.dmu_mag
    dlv, dlv_mag = ref_z.dlogvar + w * ref_kl.dlogvar, ref_z.dlogvar_mag + w * ref_kl.dlogvar_mag
    close(numpy(mu_t.grad), dmu, dmu_mag, REL[device])
    close(numpy(lv_t.grad), dlv, dlv_mag, REL[device])


def torch_reparam_kl_f64(mu, logvar, eps, lo=-30.0, hi=20.0):
    """The same formulas as a float64 PyTorch composition. The clamp passes the gradient on the
    range's ends and blocks it strictly outside, as fusedvae's does (torch.clamp blocks it on the
    ends too, so it is written with torch.where)."""
    passes = (logvar >= lo) & (logvar <= hi)
    lv = torch.where(passes, logvar, logvar.detach().clamp(lo, hi))
    z = mu + torch.exp(0.5 * lv) * eps
    kl = 0.5 * (mu * mu + torch.expm1(lv) - lv).sum(1)
    return z, kl


@pytest.mark.parametrize("device", devices())
def test_reparam_kl_matches_float64_torch_composition_through_a_loss(device):
    batch, dim = 64, 20
    mu, logvar, _ = reparam_case("reparam/compose", batch, dim)
    x = as_tensor(np.random.default_rng(3).normal(size=(batch, dim)), device)
    mu_t, lv_t = as_tensor(mu, device, True), as_tensor(logvar, device, True)
    z, kl = ops.reparam_kl(mu_t, lv_t, seed=5, draw=11)
    loss = ((z - x) ** 2).sum(1).mean() + 0.5 * kl.mean()
    loss.backward()
    eps = ops.normal_eps(batch, dim, seed=5, draw=11, device=device).double()
    mu64 = mu_t.detach().double().requires_grad_()
    lv64 = lv_t.detach().double().requires_grad_()
    z64, kl64 = torch_reparam_kl_f64(mu64, lv64, eps)
    loss64 = ((z64 - x.double()) ** 2).sum(1).mean() + 0.5 * kl64.mean()
    loss64.backward()
    torch.testing.assert_close(loss.double(), loss64, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mu_t.grad.double(), mu64.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(lv_t.grad.double(), lv64.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", devices())
def test_eps_are_keyed_by_seed_draw_and_row(device):
    eps = ops.normal_eps(64, 21, seed=9, draw=3, device=device)
    assert torch.equal(eps, ops.normal_eps(64, 21, seed=9, draw=3, device=device))
    # Row r's eps do not depend on how many rows the call has.
    assert torch.equal(eps[:5], ops.normal_eps(5, 21, seed=9, draw=3, device=device))
    assert not torch.equal(eps, ops.normal_eps(64, 21, seed=9, draw=4, device=device))
    assert not torch.equal(eps, ops.normal_eps(64, 21, seed=10, draw=3, device=device))
    many = ops.normal_eps(4096, 64, seed=1, draw=0, device=device).double()
    n = many.numel()
    assert abs(float(many.mean())) < 5 / n**0.5
    assert abs(float(many.std()) - 1.0) < 5 / (2 * n) ** 0.5
    # The forward uses exactly these eps: z = mu + exp(logvar / 2) * eps.
    mu = torch.randn(64, 21, device=device)
    logvar = torch.randn(64, 21, device=device)
    z, _ = ops.reparam_kl(mu, logvar, seed=9, draw=3)
    torch.testing.assert_close(z, mu + torch.exp(0.5 * logvar) * eps, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(cuda_skip_reason() is not None, reason=cuda_skip_reason() or "")
def test_cpu_and_cuda_draw_the_same_eps():
    cpu = ops.normal_eps(33, 17, seed=4, draw=2, device="cpu")
    gpu = ops.normal_eps(33, 17, seed=4, draw=2, device="cuda")
    # Host and device Box-Muller differ in the last bits (README, "Random numbers").
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-5)


@pytest.mark.parametrize("device", devices())
def test_reparam_kl_is_deterministic(device):
    mu = torch.randn(257, 33, device=device, requires_grad=True)
    logvar = torch.randn(257, 33, device=device, requires_grad=True)
    results = []
    for _ in range(2):
        z, kl = ops.reparam_kl(mu, logvar, seed=3, draw=1)
        dmu, dlv = torch.autograd.grad((z.sum() + kl.sum()), (mu, logvar))
        results.append((z, kl, dmu, dlv))
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_cpu_results_do_not_depend_on_the_thread_count():
    """The CPU path splits rows over torch.get_num_threads() threads: bitwise the same results."""
    gen = torch.Generator().manual_seed(5)
    mu = torch.randn(1001, 67, generator=gen, requires_grad=True)
    logvar = torch.randn(1001, 67, generator=gen, requires_grad=True)
    output = torch.randn(1001, 300, generator=gen, requires_grad=True)
    target = torch.rand(1001, 300, generator=gen)
    dkl = torch.rand(1001, generator=gen)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            z, kl = ops.reparam_kl(mu, logvar, seed=2, draw=9)
            recon = ops.recon_loss(output, target, "bernoulli")
            grads = torch.autograd.grad((z.sum() + (kl * dkl).sum() + kl.sum() + recon.sum()),
                                        (mu, logvar, output))
            results.append((z, kl, recon, ops.normal_eps(1001, 67, seed=2, draw=9), *grads))
    finally:
        torch.set_num_threads(before)
    for one, three in zip(*results):
        assert torch.equal(one, three)


# ------------------------------------------------------------------------------------------------
# recon_loss

RECON_PARAMS = [("bernoulli", {}), ("gaussian", {"sigma": 0.75}), ("gaussian", {"sigma": 1.0}),
                ("mse", {}), ("smooth_l1", {"beta": 1.0}), ("smooth_l1", {"beta": 0.0}),
                ("smooth_l1", {"beta": 0.5})]
RECON_IDS = ["bernoulli", "gaussian0.75", "gaussian1", "mse", "smooth_l1", "l1", "smooth_l1_0.5"]


def recon_case(kind, batch, dim, params):
    beta = np.float32(params.get("beta", 1.0))
    inputs = make_golden.recon_inputs(rng_for(f"recon/{kind}/{batch}x{dim}"), kind, batch, dim,
                                      beta)
    return inputs["output"], inputs["target"]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("batch,dim", SHAPES)
@pytest.mark.parametrize("kind,params", RECON_PARAMS, ids=RECON_IDS)
def test_recon_loss_matches_float64_reference(device, batch, dim, kind, params):
    output, target = recon_case(kind, batch, dim, params)
    out_t = as_tensor(output, device, True)
    loss = ops.recon_loss(out_t, as_tensor(target, device), kind, **params)
    dloss = rng_for(f"recon_grad/{kind}").uniform(0.1, 2.0, batch).astype(np.float32)
    (loss * as_tensor(dloss, device)).sum().backward()
    sigma = float(np.float32(params.get("sigma", 1.0)))
    beta = float(np.float32(params.get("beta", 1.0)))
    ref = vae_ref.recon_loss_forward_backward(output, target, kind, sigma, beta, "sum", 1.0)
    close(numpy(loss), ref.loss_per_sample, ref.loss_per_sample_mag, REL[device])
    w = dloss.astype(np.float64)[:, None]
    close(numpy(out_t.grad), w * ref.grad_output, w * ref.grad_output_mag, REL[device])


def torch_recon_f64(kind, output, target, sigma=1.0, beta=1.0):
    if kind == "bernoulli":
        terms = F.binary_cross_entropy_with_logits(output, target, reduction="none")
    elif kind == "gaussian":
        r = (output - target) / sigma
        terms = 0.5 * r * r + np.log(sigma) + 0.5 * np.log(2 * np.pi)
    elif kind == "mse":
        terms = (output - target) ** 2
    else:
        terms = F.smooth_l1_loss(output, target, reduction="none", beta=beta)
    return terms.sum(1)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("kind,params", RECON_PARAMS, ids=RECON_IDS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_vae_loss_matches_float64_torch_composition(device, kind, params, reduction):
    """The whole objective: vae_loss over recon_loss and reparam_kl against PyTorch's own float64
    losses (binary_cross_entropy_with_logits, smooth_l1_loss) and the KL formula, with autograd."""
    batch, dim, latent = 48, 37, 6
    gen = torch.Generator().manual_seed(17)
    output = (torch.randn(batch, dim, generator=gen) * 3).to(device).requires_grad_()
    target = torch.rand(batch, dim, generator=gen).to(device)
    if kind != "bernoulli":
        target = torch.randn(batch, dim, generator=gen).to(device)
    mu = torch.randn(batch, latent, generator=gen).to(device).requires_grad_()
    logvar = torch.randn(batch, latent, generator=gen).to(device).requires_grad_()
    _, kl = ops.reparam_kl(mu, logvar, seed=1, draw=2)
    loss, recon, kl_reduced = ops.vae_loss(output, target, kl, kind=kind, reduction=reduction,
                                           kl_weight=0.3, **params)
    loss.backward()

    leaves64 = [t.detach().double().requires_grad_() for t in (output, mu, logvar)]
    out64, mu64, lv64 = leaves64
    eps = ops.normal_eps(batch, latent, seed=1, draw=2, device=device).double()
    _, kl64 = torch_reparam_kl_f64(mu64, lv64, eps)
    recon64 = torch_recon_f64(kind, out64, target.double(), params.get("sigma", 1.0),
                              params.get("beta", 1.0))
    scale = 1.0 / batch if reduction == "mean" else 1.0
    loss64 = scale * recon64.sum() + 0.3 * scale * kl64.sum()
    loss64.backward()
    torch.testing.assert_close(loss.double(), loss64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(recon.double(), scale * recon64.sum().detach(), rtol=1e-5,
                               atol=1e-5)
    torch.testing.assert_close(kl_reduced.double(), scale * kl64.sum().detach(), rtol=1e-5,
                               atol=1e-5)
    for got, want in zip((output, mu, logvar), leaves64):
        torch.testing.assert_close(got.grad.double(), want.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("device", devices())
def test_vae_loss_gives_the_kl_gradient_as_one_shared_value(device):
    """vae_loss hands reparam_kl's backward a KL gradient of stride 0 (one value for every sample),
    which lets the CUDA path run the one fused backward; the result equals the general path's."""
    mu = torch.randn(16, 5, device=device, requires_grad=True)
    logvar = torch.randn(16, 5, device=device, requires_grad=True)
    out = torch.randn(16, 9, device=device)
    seen = []
    _, kl = ops.reparam_kl(mu, logvar, seed=0, draw=0)
    kl.register_hook(lambda g: seen.append(g.stride()))
    ops.vae_loss(out, torch.rand(16, 9, device=device), kl).loss.backward()
    assert seen == [(0,)]
    fused = (mu.grad.clone(), logvar.grad.clone())
    mu.grad = logvar.grad = None
    _, kl = ops.reparam_kl(mu, logvar, seed=0, draw=0)
    (kl * torch.linspace(1, 1, 16, device=device) / 16).sum().backward()
    torch.testing.assert_close(mu.grad, fused[0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(logvar.grad, fused[1], rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# opcheck: schema, fake (meta) implementation, autograd registration, AOT dispatch.

@pytest.mark.parametrize("device", devices())
def test_opcheck_every_custom_op(device):
    gen = torch.Generator().manual_seed(0)

    def t(*shape, grad=False):
        return torch.randn(*shape, generator=gen).to(device).requires_grad_(grad)

    cases = [
        (ops._reparam_kl, (t(8, 5, grad=True), t(8, 5, grad=True), 3, 4, -30.0, 20.0)),
        (ops._reparam_kl_backward, (t(8, 5), t(8), t(8, 5), t(8, 5), 3, 4, -30.0, 20.0)),
        (ops._normal_eps, (8, 5, 3, 4, torch.device(device))),
        (ops._batch_loss, (t(8, grad=True), t(8, grad=True), 0.125, 0.5)),
    ]
    for kind in ops.LOSS_KINDS:
        cases.append((ops._recon_loss, (t(8, 5, grad=True), t(8, 5).sigmoid(), kind, 0.5, 0.7)))
    for op, args in cases:
        torch.library.opcheck(op, args)


# ------------------------------------------------------------------------------------------------
# torch.compile

class TinyVae(torch.nn.Module):
    def __init__(self, d=32, h=24, latent=4):
        super().__init__()
        self.enc = torch.nn.Linear(d, h)
        self.mu = torch.nn.Linear(h, latent)
        self.logvar = torch.nn.Linear(h, latent)
        self.dec = torch.nn.Sequential(torch.nn.Linear(latent, h), torch.nn.ReLU(),
                                       torch.nn.Linear(h, d))

    def forward(self, x, draw):
        h = torch.relu(self.enc(x))
        z, kl = ops.reparam_kl(self.mu(h), self.logvar(h), seed=7, draw=draw)
        return ops.vae_loss(self.dec(z), x, kl, kind="bernoulli").loss


@pytest.mark.parametrize("device", devices())
def test_torch_compile_traces_the_ops_and_matches_eager(device):
    torch.manual_seed(0)
    model = TinyVae().to(device)
    x = torch.rand(16, 32, device=device)
    compiled = torch.compile(model, fullgraph=True)
    for draw in (0, 1):
        eager_loss = model(x, draw)
        eager_grads = torch.autograd.grad(eager_loss, list(model.parameters()))
        loss = compiled(x, draw)
        grads = torch.autograd.grad(loss, list(model.parameters()))
        torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-5)
        for g, e in zip(grads, eager_grads):
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Bad inputs: a Python exception naming the problem, never a crash.

def good():
    return torch.randn(4, 3), torch.randn(4, 3)


@pytest.mark.parametrize("make,error,words", [
    (lambda: (torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3)), TypeError, "float32"),
    (lambda: (torch.randn(3, 4).t(), torch.randn(4, 3)), ValueError, "contiguous"),
    (lambda: (torch.randn(4, 3), torch.randn(4, 2)), ValueError, "same shape"),
    (lambda: (torch.randn(12), torch.randn(12)), ValueError, "2-D"),
    (lambda: (torch.randn(0, 3), torch.randn(0, 3)), ValueError, "batch >= 1"),
    (lambda: (torch.randn(4, 3), torch.randn(4, 3, device="meta")), ValueError, "meta"),
    (lambda: (torch.randn(4, 3).numpy(), torch.randn(4, 3)), TypeError, "torch.Tensor"),
])
def test_bad_tensors_raise_clear_errors(make, error, words):
    a, b = make()
    with pytest.raises(error, match=words):
        ops.reparam_kl(a, b, seed=0, draw=0)
    with pytest.raises(error, match=words):
        ops.recon_loss(a, b, "mse")


def test_bad_parameters_raise_clear_errors():
    mu, logvar = good()
    with pytest.raises(ValueError, match="logvar clamp needs finite min <= max"):
        ops.reparam_kl(mu, logvar, seed=0, draw=0, logvar_min=5.0, logvar_max=-5.0)
    with pytest.raises(ValueError, match="logvar clamp"):
        ops.reparam_kl(mu, logvar, seed=0, draw=0, logvar_max=float("inf"))
    with pytest.raises(ValueError, match="seed"):
        ops.reparam_kl(mu, logvar, seed=-1, draw=0)
    with pytest.raises(TypeError, match="draw"):
        ops.reparam_kl(mu, logvar, seed=0, draw=1.5)
    with pytest.raises(ValueError, match="kind must be bernoulli, gaussian, mse or smooth_l1"):
        ops.recon_loss(mu, logvar, "huber")
    with pytest.raises(ValueError, match="gaussian sigma must be finite and > 0"):
        ops.recon_loss(mu, logvar, "gaussian", sigma=0.0)
    with pytest.raises(ValueError, match="smooth_l1 beta must be finite and >= 0"):
        ops.recon_loss(mu, logvar, "smooth_l1", beta=-1.0)
    with pytest.raises(ValueError, match="target requires grad"):
        ops.recon_loss(mu, logvar.requires_grad_(), "mse")
    with pytest.raises(ValueError, match="reduction"):
        ops.vae_loss(mu, torch.rand(4, 3), torch.zeros(4), reduction="max")
    with pytest.raises(ValueError, match="kl_per_sample"):
        ops.vae_loss(mu, torch.rand(4, 3), torch.zeros(5))


@pytest.mark.skipif(cuda_skip_reason() is not None, reason=cuda_skip_reason() or "")
def test_tensors_on_different_devices_raise():
    with pytest.raises(ValueError, match="same device"):
        ops.reparam_kl(torch.randn(4, 3), torch.randn(4, 3, device="cuda"), seed=0, draw=0)
    with pytest.raises(ValueError, match="same device"):
        ops.recon_loss(torch.randn(4, 3, device="cuda"), torch.randn(4, 3), "mse")


def test_bad_inputs_raise_under_torch_compile_too():
    fn = torch.compile(lambda a, b: ops.reparam_kl(a, b, seed=0, draw=0)[1].sum(), fullgraph=True)
    with pytest.raises(Exception, match="float32"):
        fn(torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64))
