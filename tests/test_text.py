"""Lesson 05's helpers: the movie split, sampling, predictions, and the save/load round trip."""

import numpy as np
import torch
import pytest
from transformers import pipeline

from course_utils.text import (LABELS, MAX_LENGTH, describe_prediction, load_reviews, load_tokenizer,
                               new_classifier, predict_texts, sample_indices)


@pytest.fixture(scope="module")
def reviews():
    return load_reviews()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def model():
    return new_classifier(seed=0)


def test_split_is_by_movie_and_drops_plot_lines(reviews):
    sizes = {name: len(split) for name, split in reviews.items()}
    assert sum(sizes.values()) == 4866  # fresh 2,455 + rotten 2,411
    movies = [set(split["movie_name"][:]) for split in reviews.values()]
    assert not (movies[0] & movies[1]) and not (movies[0] & movies[2]) and not (movies[1] & movies[2])
    assert set(reviews["train"]["label"][:]) == {0, 1}
    assert reviews["train"].features["label"].names == LABELS


def test_split_is_fixed(reviews):
    again = load_reviews()
    assert again["test"]["text"][:] == reviews["test"]["text"][:]


def test_sample_indices_is_balanced_and_seeded(reviews):
    labels = np.array(reviews["train"]["label"][:])
    idx = sample_indices(labels, 100, seed=3)
    assert len(idx) == 100 and labels[idx].sum() == 50 and len(set(idx)) == 100
    assert (idx == sample_indices(labels, 100, seed=3)).all()
    assert len(sample_indices(labels, 10**9, seed=0)) == len(labels)


def test_describe_prediction_handles_empty_and_long_text(model, tokenizer):
    assert describe_prediction(model, tokenizer, "   ").startswith("Type a sentence first")
    long = describe_prediction(model, tokenizer, "word " * 200)
    assert f"only the first {MAX_LENGTH} of its 202 word pieces were read" in long
    assert describe_prediction(model, tokenizer, "Great fun.").split()[0] in LABELS


def test_save_and_load_round_trip(model, tokenizer, tmp_path):
    texts = ["A gem of a film.", "Dull, dull, dull.", "It has moments."]
    before = predict_texts(model, tokenizer, texts)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    classify = pipeline("text-classification", model=str(tmp_path), device="cpu")
    after = classify(texts)
    assert [LABELS[i] for i in before.argmax(1)] == [o["label"] for o in after]
    assert np.allclose(before.max(1), [o["score"] for o in after], atol=1e-5)


def test_train_or_reuse_trains_once_then_loads_the_finished_run(reviews, tokenizer, tmp_path, capsys):
    from course_utils.text import add_lengths, make_trainer, tokenize, train_or_reuse

    data = add_lengths(tokenize(reviews, tokenizer))["train"].select(range(16))

    def trainer(**settings):
        return make_trainer(new_classifier(seed=0), data, None, tokenizer, num_epochs=1, batch_size=8,
                            output_dir=tmp_path / "out", quiet=True, **settings)

    first = train_or_reuse(trainer(), "run")
    assert first.state.global_step == 2 and first.optimizer is None  # trained; AdamW's state freed
    assert all(not optimizer.state for optimizer in first.accelerator._optimizers)  # not only dropped: emptied
    assert "Reused" not in capsys.readouterr().out
    second = train_or_reuse(trainer(), "run")  # same arguments, weights and data: the saved run is loaded
    assert "Reused the finished run" in capsys.readouterr().out
    assert second.state.global_step == 2 and second.state.log_history == first.state.log_history
    trained, loaded = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(trained[name], loaded[name]) for name in trained)  # the very weights it trained
    changed = train_or_reuse(trainer(lr=3e-4), "run")  # a changed setting is a new run, trained anew
    assert "Reused" not in capsys.readouterr().out and changed.state.global_step == 2
    assert len(list((tmp_path / "data" / "models").glob("run-*"))) == 2


def test_load_encoder_has_no_pooler_and_says_nothing(capfd):
    from course_utils.text import load_encoder

    encoder = load_encoder()
    assert encoder.pooler is None and encoder.config.hidden_size == 384
    out = capfd.readouterr()
    assert "pooler" not in out.out + out.err  # no load report about the skipped pooler weights


def test_quiet_loading_restores_the_verbosity_even_after_an_error():
    import pytest
    import transformers

    from course_utils.text import quiet_loading

    before = transformers.logging.get_verbosity()
    with pytest.raises(RuntimeError), quiet_loading():
        assert transformers.logging.get_verbosity() == transformers.logging.ERROR
        raise RuntimeError
    assert transformers.logging.get_verbosity() == before
