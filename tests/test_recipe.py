"""Recipes: every packaged row loads, inheritance and overrides work, the learning-rate schedule."""

from __future__ import annotations

import itertools

import pytest

from soundsearch.errors import UserError
from soundsearch.recipe import TrainConfig, load_recipe, lr_at, recipe_names


def test_every_packaged_recipe_loads():
    names = recipe_names()
    assert {"stage1", "stage2", "tiny", "table3-cnn10-bert-base", "table4-wavcaps-clotho"} <= set(
        names
    )
    for name in names:
        cfg = load_recipe(name)
        assert cfg.name == name
        assert cfg.description


def test_table_rows_inherit_and_override():
    small = load_recipe("table3-passt-n-bert-small")
    assert small.model.text.name == "prajjwal1/bert-small"
    assert small.model.audio_encoder == "passt-n" and small.epochs == 16 and small.lr == 2e-5
    cnn = load_recipe("table3-cnn14-bert-base")
    assert cnn.model.audio_encoder == "cnn14" and cnn.model.audio_overrides == {}
    assert cnn.audio_init == "cnn14-audioset"
    t4 = load_recipe("table4-wavcaps-clotho")
    assert t4.sources == ["wavcaps:all", "clotho:development"]
    assert t4.model.text.name == "bert-base-uncased"
    ft = load_recipe("table3-finetune-gpt-roberta-large")
    assert (ft.epochs, ft.lr, ft.gpt_swap_p, ft.audio_init) == (5, 8e-6, 0.3, None)
    assert ft.sources == ["clotho:development"]


def test_overrides_are_typed():
    cfg = load_recipe(
        "tiny",
        [
            "lr=0.5",
            "model.text.pooling=mean",
            "sources=['clotho:development']",
            "model.audio_overrides.depth=3",
            "gpt_variations=/tmp/x.json",
        ],
    )
    assert cfg.lr == 0.5 and cfg.model.text.pooling == "mean"
    assert cfg.model.audio_overrides["depth"] == 3 and cfg.gpt_variations == "/tmp/x.json"


def test_bad_recipes_are_named():
    with pytest.raises(UserError, match="unknown recipe"):
        load_recipe("no-such-recipe")
    with pytest.raises(UserError, match="unknown recipe keys: learning_rate"):
        load_recipe("tiny", ["learning_rate=1"])
    with pytest.raises(UserError, match="key=value"):
        load_recipe("tiny", ["lr"])


def test_schedule_warmup_cosine_floor():
    cfg = TrainConfig(
        lr=2e-5, min_lr=1e-7, warmup_epochs=1, rampdown_start=1, rampdown_stop=15, epochs=16
    )
    assert lr_at(0.0, cfg) == 0.0
    assert lr_at(0.5, cfg) == pytest.approx(1e-5)
    assert lr_at(1.0, cfg) == pytest.approx(2e-5)
    assert lr_at(8.0, cfg) == pytest.approx(1e-7 + (2e-5 - 1e-7) * 0.5)  # cosine midpoint
    assert lr_at(15.0, cfg) == pytest.approx(1e-7)
    assert lr_at(15.7, cfg) == pytest.approx(1e-7)
    steps = [lr_at(1 + i * 0.1, cfg) for i in range(140)]
    assert all(a >= b for a, b in itertools.pairwise(steps))  # monotone after warm-up
