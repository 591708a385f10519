import pytest

from harness.measure.run import measure
from tests.measure.test_timing import FakeClock


def test_record_on_a_fake_clock_derives_every_figure(tiny_spec):
    spec = tiny_spec("gpt2")  # 1 warm-up + 3 steps
    record = measure(spec, clock=FakeClock([5.0, 0.5, 1.0, 1.5]), log=lambda m: None)
    assert record.warmup_times_s == [5.0] and record.step_times_s == [0.5, 1.0, 1.5]
    assert record.median_step_s == 1.0 and record.total_measured_s == 3.0
    assert record.tokens_per_s == pytest.approx(2 * 16 * 3 / 3.0)
    assert record.samples_per_s == pytest.approx(2 * 3 / 3.0)
    assert record.achieved_flops_per_s == pytest.approx(record.model_flops_per_step * 3 / 3.0)
    assert record.mfu_measured == pytest.approx(record.achieved_flops_per_s / record.peak_flops_measured)
    assert record.peak_flops_datasheet is None and record.mfu_datasheet is None  # CPU: unknown
    assert record.hardware_flops_per_step > record.model_flops_per_step  # fused CPU attention backward
    assert record.flops.convention == "2*MAC"
    assert any("CV" in w for w in record.warnings)  # 0.5..1.5 s is a 50% spread


@pytest.mark.parametrize("family", ["bert", "t5", "llama"])
def test_real_timed_run_for_each_family(tiny_spec, family):
    record = measure(tiny_spec(family), log=lambda m: None)
    assert len(record.step_times_s) == 3 and all(t > 0 for t in record.step_times_s)
    assert 0 < record.mfu_measured <= 1
    assert record.peak_memory_bytes > 0 and record.env.device.type == "cpu"
    assert record.model.family == family


def test_grad_accumulation_counts_every_micro_batch(tiny_spec):
    one = measure(tiny_spec("gpt2"), log=lambda m: None)
    two = measure(tiny_spec("gpt2", grad_accum=2), log=lambda m: None)
    assert two.model_flops_per_step == 2 * one.model_flops_per_step
    assert two.tokens_per_step == 2 * one.tokens_per_step


@pytest.mark.slow
def test_torch_compile_runs_and_says_what_it_counted(tiny_spec):
    record = measure(tiny_spec("gpt2", compile=True), log=lambda m: None)
    assert record.compile and 0 < record.mfu_measured <= 1
    assert record.warmup_times_s[0] > max(record.step_times_s)  # compilation happens in warm-up
    assert "hardware FLOPs were counted on the uncompiled model" in record.warnings
