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


# ---- fp8: which layers torchao converts (a stand-in at the torchao boundary: no GPU here) ---------

from harness.measure.train import convert_fp8  # noqa: E402


def _recording_converter(calls):
    def convert(model, module_filter_fn):
        calls.append({name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)
                      and module_filter_fn(m, name)})
        return model
    return convert


def test_fp8_converts_every_linear_layer_but_the_head(tiny_spec):
    spec = tiny_spec("llama")  # hidden 32, ffn 64, 4 heads of 8, 2 kv heads: every shape a multiple of 16
    model = build_model(spec.model, "meta")
    calls = []
    conversion = convert_fp8(model, convert=_recording_converter(calls))
    per_layer = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}
    expected = {f"model.layers.{i}.{name}" for i in range(2) for name in per_layer}
    assert calls == [expected] and set(conversion.converted) == expected
    assert list(conversion.kept) == ["lm_head"] and "head" in conversion.kept["lm_head"]


def test_fp8_keeps_shapes_fp8_kernels_cannot_take(tiny_spec):
    spec = tiny_spec("llama", model={"ffn": 72})  # 72 is not a multiple of 16
    conversion = convert_fp8(build_model(spec.model, "meta"), convert=_recording_converter([]))
    kept_mlp = sorted(k for k in conversion.kept if ".mlp." in k)
    assert kept_mlp == [f"model.layers.{i}.mlp.{p}" for i in range(2) for p in ("down_proj", "gate_proj", "up_proj")]
    assert "32x72" in conversion.kept["model.layers.0.mlp.up_proj"]
    assert len(conversion.converted) == 2 * 4  # the attention projections


def test_fp8_refuses_a_model_with_nothing_to_convert(tiny_spec):
    """GPT-2 is Conv1D throughout: an fp8 run of it would be a bf16 run under another name."""
    spec = tiny_spec("gpt2")
    with pytest.raises(ConfigError, match="^train.dtype: fp8: no linear layer"):
        convert_fp8(build_model(spec.model, "meta"), convert=_recording_converter([]))


def test_fp8_on_cpu_is_refused_before_anything_is_built():
    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match="^train.dtype: fp8 needs a GPU with FP8 tensor cores.*allowed: fp32, bf16"):
        check_dtype(cpu, "fp8")


def test_fp8_without_torchao_says_how_to_install(monkeypatch, tiny_spec):
    import builtins

    real_import = builtins.__import__

    def no_torchao(name, *args, **kwargs):
        if name.startswith("torchao"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchao)
    spec = tiny_spec("llama")
    with pytest.raises(ConfigError, match=r"pip install harness\[fp8\]"):
        convert_fp8(build_model(spec.model, "meta"))


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_harness_run_in_fp8_on_a_cpu_is_one_line_and_exit_2(capsys, tmp_path, device):
    """device cpu: refused by the config; auto on this GPU-less machine: by the run, before the model is built."""
    from harness.cli import main

    if device == "auto" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code = main(["run", "gpt2", "--set", "train.dtype=fp8", "--set", f"device={device}",
                 "--results-dir", str(tmp_path / "results")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("harness: error: train.dtype: fp8 needs a GPU with FP8 tensor cores")
    assert "allowed" in err[0] and "fp32, bf16" in err[0]
    assert not any(p.is_file() for p in tmp_path.rglob("*.json"))  # no record written
