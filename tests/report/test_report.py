"""harness.report and `harness report`: a report from real tiny runs has every section, every
figure is a real non-empty PNG (on disk for the Markdown, embedded in the HTML), every title says
where its numbers come from; the HTML renders in headless Chromium when one is installed."""

import base64
import re
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest

from harness import report

from harness.results import store
from harness.config import build_spec
from harness.measure.run import measure
from tests.conftest import tiny_raw
from tests.cli.test_cli import REPO, harness, write_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PROVENANCE_WORDS = ("measured", "counted", "datasheet", "estimated", "published", "projected", "snapshot",
                    "fetched", "cache", "assumed")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three real tiny runs: GPT-2 and BERT with 512 positions (the BERT recipe fits), Llama with 64
    (it does not: its cost falls back to one epoch)."""
    root = tmp_path_factory.mktemp("report") / "results"
    for family, positions in (("gpt2", 512), ("bert", 512), ("llama", 64)):
        raw = tiny_raw(family)
        raw["model"]["max_positions"] = positions
        raw["measure"] = {"warmup_steps": 1, "steps": 3}
        store.save(measure(build_spec(raw), log=lambda message: None), root)
    return root


@pytest.fixture(scope="module")
def written(runs):
    records = store.load_records(runs)
    built = report.build(records, cache_dir=runs / "cache" / "prices")
    return built, report.write(built, runs.parent / "out"), records


def test_the_report_has_every_section(written):
    built, paths, records = written
    md = paths.markdown.read_text()
    for heading in ("## Runs", "## Across runs", "### MFU and throughput against model size",
                    "### Cost against model size", "### Energy and CO2e", "## Provenance"):
        assert f"\n{heading}\n" in md, heading
    for r in records:
        section = md.split(f"## Run {r.run_id}\n")[1].split("\n## ")[0]
        for heading in ("### Step time", "### FLOPs by module", "### Achieved FLOP/s against peaks", "### Cost"):
            assert f"{heading}\n" in section, (r.run_id, heading)
        for stem in ("step-time", "flops", "peaks", "cost"):
            assert f"figures/{stem}-{r.run_id.lower()}.png" in section, (r.run_id, stem)
    assert "| run | model | params |" in md
    assert md.count("![") == len(built.figures) == 4 * len(records) + 4
    assert "\n### Public training runs beside this project's projection\n" in md


def test_every_image_exists_is_a_png_and_is_embedded_in_the_html(written):
    built, paths, _ = written
    md = paths.markdown.read_text()
    linked = re.findall(r"\]\((figures/[^)]+\.png)\)", md)
    assert sorted(linked) == sorted(f"figures/{f.key}.png" for f in built.figures)
    for rel in linked:
        data = (paths.markdown.parent / rel).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, rel
    html = paths.html.read_text()
    embedded = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert [base64.b64decode(e) for e in embedded] == [f.png for f in built.figures]
    assert not re.search(r'(src|href)="(?!data:|#)', html)  # self-contained: nothing loaded from outside


def test_every_figure_says_where_its_numbers_come_from(written):
    built, _, _ = written
    for fig in built.figures:
        tag = re.search(r"\[([^\]]+)\]", fig.title)
        assert tag and any(word in tag.group(1) for word in PROVENANCE_WORDS), fig.title
        assert len(fig.caption) > 80, fig.key


def test_cost_uses_the_recipe_or_says_why_not(written):
    built, _, records = written
    captions = {f.key: f.caption for f in built.figures}
    by_family = {r.model.family: r for r in records}
    gpt2 = captions[f"cost-{by_family['gpt2'].run_id.lower()}"]
    assert "Plan bert-pretraining over bert-wiki-books" in gpt2 and "snapshot" in gpt2
    assert "projected" in gpt2 and "published: " in gpt2  # a CPU run priced on A100 at the nearest published MFU
    llama = captions[f"cost-{by_family['llama'].run_id.lower()}"]
    assert "Plan one-epoch" in llama and "does not fit this model" in llama


def test_published_figures_are_drawn_for_matching_sizes(written):
    _, _, records = written
    bert_sized = records[0].evolve(params=110_000_000)
    (priced,) = report.price_runs([bert_sized], records, _snapshot_offers(), report.Options())
    fig = report.cost_figure(priced)
    assert "AI21 BERT-base" in fig.caption and "Strubell BERT_base" in fig.caption
    tiny = report.cost_figure(report.price_runs([records[0]], records, _snapshot_offers(), report.Options())[0])
    assert "No published figure within" in tiny.caption


def _snapshot_offers():
    from harness.cost.prices import load_snapshot

    return load_snapshot().offers


def test_module_breakdown_sums_to_the_counted_forward(written):
    """The record carries the breakdown (the report never counts): it sums to a forward counted here."""
    from harness.config import with_changes
    from harness.flops.count import count_model_flops

    _, _, records = written
    groups = records[0].flops.model.forward_by_module
    forward = count_model_flops(with_changes(records[0].spec, {"train.grad_accum": 1}), backward=False)[0].total
    assert sum(groups.values()) == forward > 0
    assert any(".*." in name for name in groups) and not any(re.search(r"\.\d+\.", name) for name in groups)
    assert records[0].model_flops_per_step == 3 * forward * records[0].grad_accum  # backward = 2x forward


def test_no_energy_means_no_energy_figure_and_a_sentence_saying_so(written):
    _, _, records = written
    bare = [r.evolve(energy=None) for r in records[:1]]
    built = report.build(bare, cache_dir=None)
    assert "across-energy" not in {f.key for f in built.figures}
    assert "No run in this report carries an energy measurement" in report.to_markdown(built)


def test_html_escapes_text(written):
    built, _, _ = written
    page = report.Report("<script>x</script>")
    page.p("a < b & c")
    page.figure(replace(built.figures[0], caption='"quoted" <b>'))
    html = report.to_html(page)
    assert "<script>x" not in html and "a &lt; b &amp; c" in html and "&lt;b&gt;" in html


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_the_html_renders_in_headless_chromium(written):
    _, paths, _ = written
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "check_report.py"), str(paths.html)],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    n = len(written[0].figures)
    assert out.stdout.startswith("OK ") and f"{n}/{n} images rendered" in out.stdout


# ---------------------------------------------------------------------------------------------
# The command line


def test_cli_report_for_a_chosen_run(runs, tmp_path, capsys):
    from harness.cli import main

    records = store.load_records(runs)
    # in-process: the public runs' counted FLOPs are cached per process (the process itself is
    # tested by test_run_with_report_shows_progress_and_writes_the_report)
    assert main(["report", records[2].run_id[:22], "--out", str(tmp_path / "rep"),
                 "--results-dir", str(runs)]) == 0
    assert f"report written to {tmp_path / 'rep' / 'report.html'}" in capsys.readouterr().out
    md = (tmp_path / "rep" / "report.md").read_text()
    assert records[2].run_id in md and records[1].run_id not in md and records[0].run_id not in md


@pytest.mark.parametrize("args, message", [
    ([], "RUN_ID: give one or more run ids"),
    (["nope"], "RUN_ID: no stored run matches 'nope'"),
    (["--all", "x"], "--all: give RUN_ID ... or --all, not both"),
    (["--all", "--gpu", "Z9000"], "--gpu: no datasheet row"),
    (["--all", "--corpus", "wikipedia-2031"], "--corpus"),
])
def test_cli_report_bad_input_is_one_line_exit_2(runs, tmp_path, args, message):
    out = harness("report", *args, "--out", str(tmp_path / "rep"), "--results-dir", str(runs), cwd=tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and message in lines[0], out.stderr
    assert not (tmp_path / "rep").exists()


def test_run_with_report_shows_progress_and_writes_the_report(tmp_path):
    raw = tiny_raw("gpt2")
    raw["measure"] = {"warmup_steps": 2, "steps": 3}
    out = harness("run", str(write_config(tmp_path, raw)), "--report", "--results-dir", str(tmp_path / "r"),
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "record written to" in out.stdout and "MFU" in out.stdout
    assert f"report written to {tmp_path / 'r' / 'report' / 'report.html'}" in out.stdout
    assert re.search(r"measured step 3 .* 5/5", out.stderr)  # the bar, on stderr, over 2 + 3 steps
    assert "timing 2 warm-up + 3 measured steps" in out.stderr
    assert (tmp_path / "r" / "report" / "report.html").stat().st_size > 10_000


def test_a_multi_rank_run_shows_its_ranks(written):
    _, _, records = written
    r = records[0]
    ranks = [{"rank": i, "warmup_times_s": r.warmup_times_s, "step_times_s": [t * (1 + i) for t in r.step_times_s],
              "peak_memory_bytes": r.peak_memory_bytes}
             for i in range(2)]
    fig = report.step_time_figure(r.evolve(world_size=2, per_rank=ranks))
    assert "x2 ·" in fig.title and "2 ranks" in fig.caption and fig.png.startswith(PNG_MAGIC)


def test_the_on_prem_bill_is_shown_when_given(written):
    """`harness report --on-prem-usd-per-gpu ...`: each run's cost section says what owning costs."""
    _, _, records = written
    options = report.Options(on_prem=(("on_prem_usd_per_gpu", 25_000.0), ("usd_per_kwh", 0.1)))
    md = report.to_markdown(report.build(records[:1], cache_dir=None, options=options))
    assert "On premises [estimated; user-given prices]" in md and "$/device-hour" in md
    assert "amortize years 4.0 (default 4 years" in md
    assert "On premises" not in report.to_markdown(report.build(records[:1], cache_dir=None))


def test_every_figure_carries_its_range_as_error_bars(written):
    """Cost per offer, cost against size and energy: each estimate's range (harness.cost.ranges) drawn as
    error bars and said in the caption; each run's cost section says steady state beside the goodput."""
    built, paths, records = written
    md = paths.markdown.read_text()
    costs = [f for f in built.figures if f.key.startswith("cost-")]
    assert costs and all("Error bars: x" in f.caption and "goodput 1" in f.caption for f in costs)
    across = next(f for f in built.figures if f.key == "across-cost-size")
    assert "error bars beside them: the whole range" in across.caption
    assert md.count("Goodput [default 1.0: steady state only") == len(records)
    assert "PaLM 540B 0.67; Llama 3.1 405B 0.80–0.91 [published]" in md


def test_public_runs_figure_sets_bills_beside_projections(written):
    built, _, _ = written
    fig = next(f for f in built.figures if f.key == "public-runs")
    assert fig.png.startswith(PNG_MAGIC) and "[published; estimated]" in fig.title
    for name in ("Llama 3.1 405B", "PaLM 540B", "nanoGPT GPT-2 124M", "BERT-base (Strubell)"):
        assert f"{name}: " in fig.caption


def test_the_report_takes_a_goodput(written):
    """`harness report --goodput 0.8`: the bill at that goodput beside the steady state."""
    _, _, records = written
    options = report.Options(on_prem=(("goodput", 0.8),), public_runs=False)
    md = report.to_markdown(report.build(records[:1], cache_dir=None, options=options))
    assert "Goodput [user-given (--goodput)]" in md and "at goodput 0.8:" in md
    assert "Not drawn (public_runs off)." in md
