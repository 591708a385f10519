import pytest
import torch

from harness.build import build_model, make_batch
from harness.errors import ConfigError
from harness.measure.train import check_dtype, prepare, resolve_device


@pytest.mark.parametrize("family", ["bert", "gpt2", "t5", "llama"])
def test_a_step_trains_every_family(tiny_spec, family):
    spec = tiny_spec(family, lr=1e-2)
    model = build_model(spec.model, "cpu")
    step, impl = prepare(spec, model, make_batch(spec), torch.device("cpu"))
    assert impl in ("fused", "foreach")
    before = [p.detach().clone() for p in model.parameters()]
    losses = [float(step()) for _ in range(5)]
    assert losses[-1] < losses[0]  # same batch: the loss must fall
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())  # zero_grad(set_to_none)


def test_grad_accumulation_averages_micro_batches(tiny_spec):
    """K accumulated copies of one micro-batch give the gradient of one (loss / K each)."""
    grads = []
    for accum in (1, 3):
        spec = tiny_spec("gpt2", grad_accum=accum)
        model = build_model(spec.model, "cpu")
        step, _ = prepare(spec, model, make_batch(spec), torch.device("cpu"))
        step.optimizer.step = lambda: None  # keep the gradient to compare it
        step.optimizer.zero_grad = lambda set_to_none=True: None
        step()
        grads.append(model.lm_head.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_bf16_autocast_and_checkpointing_on_cpu(tiny_spec):
    spec = tiny_spec("llama", dtype="bf16", checkpointing=True)
    model = build_model(spec.model, "cpu")
    step, _ = prepare(spec, model, make_batch(spec), torch.device("cpu"))
    assert model.is_gradient_checkpointing
    assert torch.isfinite(step())


def test_device_and_dtype_checks():
    cpu = torch.device("cpu")
    check_dtype(cpu, "bf16")
    with pytest.raises(ConfigError, match="train.dtype: fp16 is not supported on cpu"):
        check_dtype(cpu, "fp16")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="^device: cuda requested"):
            resolve_device("cuda")
        assert resolve_device("auto").type == "cpu"
