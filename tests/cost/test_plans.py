import pytest

from harness.errors import ConfigError
from harness.cost.plans import build_corpus, build_plan, corpora, load_corpus, load_plan, plans


def test_bert_recipe_tokens_by_hand():
    """Devlin et al. 2019: 900k steps x 256 x 128 + 100k steps x 256 x 512."""
    plan = load_plan("bert-pretraining")
    tokens = [p.tokens_total(None) for p in plan.phases]
    assert tokens == [900_000 * 256 * 128, 100_000 * 256 * 512]
    assert sum(tokens) == 42_598_400_000
    assert plan.corpus == "bert-wiki-books"


def test_t5_recipe_is_about_a_trillion_tokens():
    assert load_plan("t5-c4").phases[0].tokens_total(None) == 1_000_000 * 2 ** 11 * 512  # "about 1 trillion"


def test_corpus_sizes_in_tokens_bytes_and_words():
    assert load_corpus("bert-wiki-books").size_tokens == 3.3e9
    webtext = load_corpus("webtext")
    assert webtext.size_tokens == pytest.approx(40e9 / 4.43)
    assert "OpenWebText" in webtext.size_provenance
    assert build_corpus({"tokens": 5e9}).size_provenance == "stated"


def test_epochs_need_a_corpus_and_scale_it():
    plan = build_plan({"phases": [{"epochs": 2.5}]})
    assert plan.phases[0].tokens_total(build_corpus({"tokens": 4e9})) == 10e9
    with pytest.raises(ConfigError, match="epochs"):
        plan.phases[0].tokens_total(None)


def test_every_shipped_config_loads():
    assert {"bert-wiki-books", "webtext", "c4"} <= set(corpora())
    assert {"bert-pretraining", "t5-c4", "one-epoch"} <= set(plans())
    for name in corpora():
        assert load_corpus(name).size_tokens > 0
    for name in plans():
        assert load_plan(name).phases


@pytest.mark.parametrize("raw, field", [
    ({"tokens": -1}, "corpus.tokens"),
    ({"tokens": 1e9, "bytes": 1e9, "bytes_per_token": 4, "ratio_source": "x"}, "corpus"),
    ({"bytes": 1e9}, "corpus"),
    ({"bytes": 1e9, "bytes_per_token": 4}, "corpus"),
    ({"tokens": 1e9, "colour": "red"}, "corpus.colour"),
    ({"tokens": float("inf")}, "corpus.tokens"),
    ({"tokens": 1e308}, "corpus.tokens"),
    ({"tokens": True}, "corpus.tokens"),
    ({"bytes": 1e9, "bytes_per_token": float("nan"), "ratio_source": "x"}, "corpus.bytes_per_token"),
    ({"words": 1e17, "tokens_per_word": 1.3, "ratio_source": "x"}, "corpus.words"),
])
def test_bad_corpus_names_the_field(raw, field):
    with pytest.raises(ConfigError) as err:
        build_corpus(raw)
    assert err.value.field == field


@pytest.mark.parametrize("raw, field", [
    ({}, "plan.phases"),
    ({"phases": []}, "plan.phases"),
    ({"phases": [{"steps": 10}]}, "plan.phases.0"),
    ({"phases": [{"steps": -10, "batch_size": 1, "seq_len": 8}]}, "plan.phases.0.steps"),
    ({"phases": [{"tokens": 1e9, "epochs": 1}]}, "plan.phases.0"),
    ({"phases": [{"tokens": 1e9, "speed": 3}]}, "plan.phases.0.speed"),
    ({"phases": [{"tokens": float("nan")}]}, "plan.phases.0.tokens"),
    ({"phases": [{"epochs": float("inf")}]}, "plan.phases.0.epochs"),
    ({"phases": [{"steps": 10**10, "batch_size": 1, "seq_len": 8}]}, "plan.phases.0.steps"),
    ({"phases": [{"steps": 10, "batch_size": True, "seq_len": 8}]}, "plan.phases.0.batch_size"),
    ({"phases": [{"steps": 10, "batch_size": 8, "seq_len": 2**23}]}, "plan.phases.0.seq_len"),
    ({"phases": [{"tokens": 1e9}] * 1001}, "plan.phases"),
])
def test_bad_plan_names_the_field(raw, field):
    with pytest.raises(ConfigError) as err:
        build_plan(raw)
    assert err.value.field == field


def test_unknown_names_list_what_exists():
    with pytest.raises(ConfigError, match="bert-wiki-books") as err:
        load_corpus("wikipedia-2031")
    assert err.value.field == "corpus.file"
    with pytest.raises(ConfigError, match="bert-pretraining"):
        load_plan("nope")
