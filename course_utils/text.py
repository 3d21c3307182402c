"""Text: the movie-review snippets, MiniLM embeddings, and fine-tuning with the Hugging Face Trainer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import transformers
from datasets import ClassLabel, Dataset, DatasetDict, load_dataset
from sklearn.model_selection import GroupShuffleSplit
from safetensors.torch import load_file
from transformers import (AutoModel, AutoModelForSequenceClassification, AutoTokenizer,
                          DataCollatorWithPadding, PrinterCallback, Trainer, TrainerCallback, TrainerState,
                          TrainingArguments)

from course_utils.assets import ASSETS, asset_file, data_dir, shown
from course_utils.data import cache_key, cache_path, cached_array
from course_utils.env import bf16_is_fast, get_device, release_freed_memory
from course_utils.models import minilm_path
from course_utils.train import predict_proba

LABELS = ["rotten", "fresh"]
MAX_LENGTH = 64  # covers more than 99% of the snippets (measured in lesson 05)


def load_reviews(test_size: float = 0.2, val_size: float = 0.1, seed: int = 0) -> DatasetDict:
    """Fresh/rotten snippets split by movie (no film in two splits); plot lines dropped.

    Introduced in ``05_fine_tuning_language.ipynb``.
    """
    ds = load_dataset("csv", data_files=str(asset_file("rotten_tomatoes")), split="train",
                      cache_dir=str(data_dir() / "hf"))
    ds = ds.filter(lambda row: row["category"] in LABELS and bool(row["text"]))
    ds = ds.map(lambda row: {"label": LABELS.index(row["category"])}, remove_columns=["category", "filename"])
    ds = ds.cast_column("label", ClassLabel(names=LABELS))
    movies = np.array(ds["movie_name"][:])
    split = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    rest, test = next(split.split(movies, groups=movies))
    split = GroupShuffleSplit(n_splits=1, test_size=val_size / (1 - test_size), random_state=seed)
    train, val = next(split.split(rest, groups=movies[rest]))
    return DatasetDict(train=ds.select(np.sort(rest[train])), validation=ds.select(np.sort(rest[val])),
                       test=ds.select(np.sort(test)))


def sample_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` examples drawn at random, half of each class (all of them when n >= len)."""
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(labels == c), n // 2, replace=False) for c in (0, 1)]
    return np.sort(np.concatenate(picks))


def load_tokenizer():
    """MiniLM's WordPiece tokenizer, from the verified offline copy."""
    return AutoTokenizer.from_pretrained(minilm_path())


def tokenize(ds: DatasetDict | Dataset, tokenizer, max_length: int = MAX_LENGTH):
    """Input ids and attention masks, truncated but not padded (the collator pads each batch)."""
    return ds.map(lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length), batched=True)


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence transformers' load report inside the block (it lists skipped or new weights in random order)."""
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)


def load_encoder():
    """MiniLM's encoder, from the verified offline copy, without BERT's pooler: this checkpoint was trained to be
    read as the mean of its token vectors, so its pooler is left out (and loading skips its weights)."""
    with quiet_loading():
        return AutoModel.from_pretrained(minilm_path(), add_pooling_layer=False)


@torch.inference_mode()
def embed(texts: list[str], device: torch.device | str | None = None, batch_size: int = 128) -> np.ndarray:
    """Frozen MiniLM sentence embeddings: the mean of the last layer over real (non-padding) tokens, computed on
    ``device`` (default: the fastest here)."""
    device = torch.device(device) if device is not None else get_device()
    tokenizer = load_tokenizer()
    model = load_encoder().to(device).eval()
    order = np.argsort([len(t) for t in texts])  # similar lengths together: less padding, less work
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        idx = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_LENGTH,
                          return_tensors="pt").to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_is_fast(device)):
            hidden = model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1)
        out[idx] = ((hidden * mask).sum(1) / mask.sum(1)).cpu().numpy()
    del model
    release_freed_memory()
    return out


def cached_embeddings(texts: list[str], device: torch.device | str | None = None) -> np.ndarray:
    """``embed(texts)``, cached under data/text/ and keyed by the model's checksum and the texts."""
    device = torch.device(device) if device is not None else get_device()
    key = cache_key(ASSETS["minilm"].sha256, MAX_LENGTH, bf16_is_fast(device), texts)
    return cached_array("text", "minilm-embeddings", key, lambda: embed(texts, device))


def new_classifier(seed: int = 0, report: bool = False):
    """Pretrained MiniLM with a new, randomly initialised two-class head; ``report`` lists the new weights."""
    torch.manual_seed(seed)  # the new head's initial weights
    with quiet_loading():  # report=True prints the same keys, sorted
        model, info = AutoModelForSequenceClassification.from_pretrained(
            minilm_path(), num_labels=2, id2label=dict(enumerate(LABELS)),
            label2id={name: i for i, name in enumerate(LABELS)}, output_loading_info=True)
    if report:
        print("Not in the checkpoint, so initialised at random:", ", ".join(sorted(info["missing_keys"])))
        print("In the checkpoint but unused:", ", ".join(sorted(info["unexpected_keys"])) or "nothing")
    return model


def compute_metrics(eval_pred) -> dict[str, float]:
    """The Trainer's metrics: accuracy and balanced accuracy of the arg-max prediction."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    logits, labels = eval_pred
    predicted = np.argmax(logits, axis=-1)
    return {"accuracy": accuracy_score(labels, predicted), "balanced_accuracy": balanced_accuracy_score(labels, predicted)}


class ReleaseFreedMemory(TrainerCallback):
    """Every 10 steps and after each evaluation, hand memory that training freed back to the system.

    Batches of different lengths leave freed blocks of every size behind; without this a run's memory
    climbs by hundreds of MB that it does not use (see ``env.release_freed_memory``).
    """

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % 10 == 0:
            release_freed_memory()

    def on_evaluate(self, args, state, control, **kwargs):
        release_freed_memory()


def make_trainer(model, train: Dataset, eval_dataset: Dataset | None, tokenizer, seed: int = 0,
                 num_epochs: float = 1, lr: float = 1e-4, batch_size: int = 16, eval_steps: int | None = None,
                 output_dir: Path | None = None, quiet: bool = False) -> Trainer:
    """The Trainer lesson 05 builds on the page (its ``TrainingArguments``, data collator and ``compute_metrics``),
    as one function whose arguments are the settings that change between runs.

    Batches of 16: the same speed per review as 32 on a CPU, and half the activations in memory.
    Introduced in ``05_fine_tuning_language.ipynb``.
    """
    device = get_device()
    args = TrainingArguments(
        output_dir=str(output_dir or data_dir() / "checkpoints" / "minilm"),
        num_train_epochs=num_epochs, learning_rate=lr, weight_decay=0.01, warmup_steps=0.1,
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=64,
        train_sampling_strategy="group_by_length",  # similar lengths together: little padding to compute
        eval_strategy="no" if eval_dataset is None else "steps" if eval_steps else "epoch",
        eval_steps=eval_steps, save_strategy="no",
        optim="adamw_torch_fused",  # one fused kernel for the update: faster per step on a CPU
        bf16=bf16_is_fast(device),  # mixed precision where the hardware does it fast (AMX CPUs, GPUs)
        use_cpu=device.type == "cpu",
        logging_steps=10, report_to="none", seed=seed, data_seed=seed, dataloader_num_workers=0,
        dataloader_pin_memory=device.type == "cuda", disable_tqdm=quiet, log_level="error")
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=eval_dataset,
                      data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
                      compute_metrics=compute_metrics, callbacks=[ReleaseFreedMemory()])
    if quiet:
        trainer.remove_callback(PrinterCallback)  # it prints every log line once tqdm is off
    return trainer


def run_key(trainer: Trainer) -> str:
    """A short hash of what a Trainer run depends on: its arguments, its model's starting weights and its data."""
    from course_utils.features import fingerprint

    args = {k: v for k, v in trainer.args.to_dict().items() if k not in ("output_dir", "logging_dir")}
    data = [None if ds is None else (len(ds), cache_key(list(ds["input_ids"]), list(ds["label"])))
            for ds in (trainer.train_dataset, trainer.eval_dataset)]
    return cache_key(args, fingerprint(trainer.model), data)


def train_or_reuse(trainer: Trainer, name: str) -> Trainer:
    """``trainer.train()``, then save the weights and the training log in ``data/models/<name>-<key>``; when
    that folder already holds a finished run, load it instead of training again (a re-run of the lesson).

    The key covers the arguments, the starting weights and the data, so a changed setting trains anew.
    """
    folder = cache_path("models", name, run_key(trainer), suffix="/trainer_state.json").parent
    state_file = folder / "trainer_state.json"
    if state_file.is_file():
        trainer.model.load_state_dict(load_file(folder / "model.safetensors"))
        trainer.state = TrainerState.load_from_json(str(state_file))
        print(f"Reused the finished run saved in {shown(folder)} (delete it to train again).")
        return trainer
    trainer.train()
    trainer.save_model(str(folder))  # safetensors weights and config
    trainer.state.save_to_json(str(state_file))  # written last: its presence means the run finished
    if trainer.optimizer is not None:  # AdamW's state (twice the weights) is not needed any more; the accelerator
        trainer.optimizer.state.clear()  # keeps its own reference to the optimizer, so empty it, not only drop it
    trainer.optimizer = trainer.lr_scheduler = None
    trainer.model.zero_grad(set_to_none=True)  # nor are the gradients
    release_freed_memory()
    return trainer


def add_lengths(ds: DatasetDict) -> DatasetDict:
    """A 'length' column (tokens per review), and evaluation splits sorted by it: less padding, faster."""
    ds = ds.map(lambda batch: {"length": [len(ids) for ids in batch["input_ids"]]}, batched=True)
    return DatasetDict({name: split if name == "train" else split.select(np.argsort(split["length"][:], kind="stable"))
                        for name, split in ds.items()})


def predict_texts(model, tokenizer, texts: list[str], batch_size: int = 128) -> np.ndarray:
    """Class probabilities of a sequence classifier for each text, shape (len(texts), num_labels).

    ``train.predict_proba`` over batches of tokenized texts (the same loop as for images).
    """
    batches = (tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=MAX_LENGTH,
                         return_tensors="pt") for start in range(0, len(texts), batch_size))
    return predict_proba(model, batches)


def describe_prediction(model, tokenizer, text: str) -> str:
    """One line for a learner's own sentence: the predicted label and its probability."""
    text = (text or "").strip()
    if not text:
        return "Type a sentence first: an empty review has nothing to classify."
    n_tokens = len(tokenizer(text)["input_ids"])
    probs = predict_texts(model, tokenizer, [text])[0]
    label = model.config.id2label[int(probs.argmax())]
    note = (f" (only the first {MAX_LENGTH} of its {n_tokens} word pieces were read)"
            if n_tokens > MAX_LENGTH else "")
    return f"{label} with probability {probs.max():.2f}{note}"
