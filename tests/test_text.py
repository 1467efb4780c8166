"""Text tower: the paper's preprocessing, truncation that keeps the end token, pooling, rebuild offline."""

from __future__ import annotations

import pytest
import torch

from soundsearch.text import TextConfig, TextEncoder, preprocess_caption


@pytest.fixture(scope="module")
def minilm(minilm_path):
    return TextEncoder.from_pretrained(
        TextConfig(name=minilm_path, hidden_dropout=None, attention_dropout=None)
    ).eval()


def test_preprocess_lowercases_and_strips_punctuation():
    assert preprocess_caption("A Dog's bark, LOUD!") == "a dogs bark loud"


def test_truncation_keeps_end_token(minilm):
    long = "a dog barks " * 40
    batch = minilm.tokenize([long, "rain"])
    ids = batch["input_ids"]
    assert ids.shape == (2, 32)  # padded to the longest, truncated to 32
    assert ids[0, -1].item() == minilm.tokenizer.sep_token_id  # end token survives truncation
    assert ids[1, 2].item() == minilm.tokenizer.sep_token_id  # [CLS] rain [SEP] pad...
    assert batch["attention_mask"][1].sum().item() == 3


def test_preprocessing_makes_punctuation_irrelevant(minilm):
    with torch.no_grad():
        a = minilm.encode(["A dog barks!"])
        b = minilm.encode(["a dog barks"])
    torch.testing.assert_close(a, b)


def test_first_token_and_mean_pooling_differ(minilm, minilm_path):
    mean = TextEncoder(
        TextConfig(name=minilm_path, pooling="mean"), minilm.model, minilm.tokenizer
    ).eval()
    with torch.no_grad():
        first = minilm.encode(["water dripping in a cave"])
        avg = mean.encode(["water dripping in a cave"])
        hidden = minilm.model(**minilm.tokenize(["water dripping in a cave"])).last_hidden_state
    torch.testing.assert_close(first, hidden[:, 0])
    torch.testing.assert_close(avg, hidden.mean(1), rtol=1e-5, atol=1e-6)


def test_dropout_is_configurable(minilm_path):
    enc = TextEncoder.from_pretrained(
        TextConfig(name=minilm_path, hidden_dropout=0.3, attention_dropout=0.25)
    )
    assert enc.model.config.hidden_dropout_prob == 0.3
    assert enc.model.config.attention_probs_dropout_prob == 0.25


def test_rebuild_from_exported_config_needs_no_files(minilm):
    hf, files = minilm.export_config()
    clone = TextEncoder.from_config(minilm.cfg, hf, files).eval()
    clone.model.load_state_dict(minilm.model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(
            clone.encode(["glass breaking"]), minilm.encode(["glass breaking"])
        )


def test_unknown_pooling_rejected():
    with pytest.raises(Exception, match="pooling"):
        TextConfig(pooling="max")
