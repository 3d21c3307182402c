"""Training in plain PyTorch: datasets of image arrays, a fit loop that keeps the best weights and resumes."""

from __future__ import annotations

import contextlib
import os
import pickle
import secrets
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.transforms import v2
from tqdm.auto import tqdm

from course_utils.assets import shown, writable
from course_utils.env import model_device, release_freed_memory
from course_utils.errors import NotWritableError, SettingError
from course_utils.vision import dihedral, to_input


class ImageArrayDataset(Dataset):
    """uint8 images already resized, grey (N, size, size) or colour (N, size, size, 3), and their labels, as
    ImageNet-normalised tensors."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, augment: bool = False):
        self.images = torch.as_tensor(images)
        self.labels = torch.as_tensor(labels)
        self.augment = augment_transform() if augment else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[i]
        image = image.permute(2, 0, 1) if image.ndim == 3 else image[None]  # (channels, H, W) uint8
        if self.augment is not None:
            image = self.augment(image)
        batch = image.permute(1, 2, 0)[None] if len(image) == 3 else image  # what to_input takes: (1, H, W[, 3])
        return to_input(batch, image.shape[-2])[0], self.labels[i]


class RandomDihedral(nn.Module):
    """One of the 8 flips and quarter turns of an image (``vision.dihedral``), drawn at random."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        turns, flip = torch.randint(4, (1,)).item(), torch.randint(2, (1,)).item()
        return dihedral(x, turns, bool(flip))


def augment_transform() -> v2.Transform:
    """Augmentation for cells: flips, quarter turns, brightness and contrast (what each part buys is not measured apart).

    Introduced in ``04_fine_tuning_images.ipynb``.
    """
    return v2.Compose([RandomDihedral(), v2.ColorJitter(brightness=0.2, contrast=0.2)])


def image_loader(images: np.ndarray, labels: np.ndarray, batch_size: int = 32, train: bool = False,
                 seed: int = 0) -> DataLoader:
    """A DataLoader over image arrays; ``num_workers=0`` works the same on Linux, macOS and Windows."""
    return DataLoader(ImageArrayDataset(images, labels, augment=train), batch_size=batch_size, shuffle=train,
                      generator=torch.Generator().manual_seed(seed), num_workers=0)


def feature_loader(features: np.ndarray, labels: np.ndarray, batch_size: int = 64, train: bool = False,
                   seed: int = 0) -> DataLoader:
    """A DataLoader over precomputed feature vectors, for training a head alone."""
    data = TensorDataset(torch.as_tensor(features, dtype=torch.float32), torch.as_tensor(labels))
    return DataLoader(data, batch_size=batch_size, shuffle=train, generator=torch.Generator().manual_seed(seed))


def to_model(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch sent to the model's device; images in channels-last layout, which CPU convolutions run faster."""
    if x.ndim == 4:
        return x.to(device, memory_format=torch.channels_last)
    return x.to(device)


@torch.no_grad()
def predict_proba(model: nn.Module, loader) -> np.ndarray:
    """Class probabilities (N, num_classes) of a model over a loader, in evaluation mode, as CPU numpy.

    A batch is ``(inputs, labels)`` (images, features) or a dict of tensors (a Hugging Face tokenizer's
    output, for a model that returns ``.logits``); it goes to the model's device.
    """
    device = model_device(model)
    model.eval()
    out = []
    for batch in loader:
        if isinstance(batch, Mapping):
            logits = model(**{k: v.to(device) for k, v in batch.items() if k != "labels"}).logits
        else:
            logits = model(to_model(batch[0], device))
        out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    return np.concatenate(out)


def scores(labels: np.ndarray, predicted: np.ndarray, num_classes: int | None = None) -> dict[str, float]:
    """Accuracy, balanced accuracy, and F1 (scikit-learn's definitions), for any number of classes.

    With two classes, ``f1`` is the F1 of class 1 (the defective cells in ELPV); with more, ``macro_f1`` is the
    mean of every class's F1. ``num_classes`` defaults to the largest label seen plus one.
    Introduced in ``03_replacing_the_head.ipynb``.
    """
    num_classes = num_classes or int(max(np.max(labels), np.max(predicted))) + 1
    out = {"accuracy": accuracy_score(labels, predicted),
           "balanced_accuracy": balanced_accuracy_score(labels, predicted)}
    if num_classes <= 2:
        out["f1"] = f1_score(labels, predicted, zero_division=0)
    else:
        out["macro_f1"] = f1_score(labels, predicted, labels=range(num_classes), average="macro", zero_division=0)
    return out


def class_weights(labels: np.ndarray, num_classes: int | None = None) -> torch.Tensor:
    """Loss weights inversely proportional to each class's frequency, so every class counts equally in total.

    scikit-learn's "balanced" weights, n / (num_classes * count), for any number of classes.
    Introduced in ``03_replacing_the_head.ipynb``.
    """
    num_classes = num_classes or int(np.max(labels)) + 1
    counts = np.bincount(labels, minlength=num_classes)
    if (counts == 0).any():
        raise SettingError(f"Class {int(np.flatnonzero(counts == 0)[0])} has no training examples: every class "
                         "needs some, or pass fewer num_classes.")
    weights = compute_class_weight("balanced", classes=np.arange(num_classes), y=labels)
    return torch.tensor(weights, dtype=torch.float32)


def evaluate(model: nn.Module, loader: DataLoader) -> dict[str, float]:
    """The ``scores`` of a model on a loader."""
    labels = np.concatenate([y.numpy() for _, y in loader])
    probs = predict_proba(model, loader)
    return scores(labels, probs.argmax(1), num_classes=probs.shape[1])


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader | None, optimizer: torch.optim.Optimizer,
        num_epochs: int, scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        loss_fn: nn.Module | None = None, checkpoint: str | Path | None = None,
        max_seconds: float | None = None, metric: str = "balanced_accuracy", progress: bool = True,
        amp: bool = False) -> list[dict]:
    """Train for ``num_epochs``, evaluating each epoch; keep the best weights; resume from ``checkpoint``.

    The scheduler (if any) steps after every batch. With ``checkpoint``, the state is saved after each
    epoch, so an interrupted run (Kernel -> Interrupt, a closed laptop) continues where it stopped when
    the cell is run again. ``max_seconds`` stops after the epoch that crosses the time budget. At the end,
    the model holds the weights of its best epoch by ``metric`` on the validation set (or of its last
    epoch when ``val_loader`` is None). ``amp`` trains under ``mixed_precision`` (bfloat16 where the
    hardware is fast at it). Introduced in ``03_replacing_the_head.ipynb``.
    """
    device = model_device(model)
    loss_fn = (loss_fn or nn.CrossEntropyLoss()).to(device)  # class weights go where the logits are
    history: list[dict] = []
    best = {"score": -1.0, "state": None}
    path = Path(checkpoint) if checkpoint else None
    if path is not None and not writable(path.parent):  # say so now, not after the first epoch has trained
        raise NotWritableError(f"Cannot write the checkpoint {shown(path)}: its folder is read-only. Pass a "
                              "checkpoint path in a folder you can write to (or checkpoint=None).")
    resumed = _resume(path, model, optimizer, scheduler, train_loader) if path is not None and path.is_file() else None
    if resumed is not None:
        history, best = resumed
        print(f"Resumed from {path.name} after epoch {len(history)}.")
    start = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)  # seconds so far are cumulative
    bar = tqdm(total=num_epochs * len(train_loader), initial=len(history) * len(train_loader),
               desc="training", disable=not progress)
    try:
        for epoch in range(len(history), num_epochs):
            model.train()
            total, count = torch.zeros((), device=device), 0  # summed on the device: no sync every batch
            for x, y in train_loader:
                x, y = to_model(x, device), y.to(device)
                with mixed_precision(device) if amp else contextlib.nullcontext():
                    loss = loss_fn(model(x).float(), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                total, count = total + loss.detach().float() * len(y), count + len(y)
                bar.update()
            row = {"epoch": epoch + 1, "train_loss": total.item() / count,
                   **(evaluate(model, val_loader) if val_loader is not None else {}),
                   "seconds": time.perf_counter() - start}
            history.append(row)
            if val_loader is not None and row[metric] > best["score"]:
                best = {"score": row[metric], "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
            if path is not None:
                _save(path, model, optimizer, scheduler, history, best, train_loader)
            postfix = {metric: f"{row[metric]:.3f}"} if val_loader is not None else {}
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", **postfix)
            if max_seconds is not None and row["seconds"] > max_seconds:
                break
    except KeyboardInterrupt:  # say what is kept and how to go on, then stop: "Run All" must not carry on
        where = f"; run the cell again to resume from {path}" if path else " (pass checkpoint= to be able to resume)"
        print(f"Interrupted after epoch {len(history)}{where}.")
        raise
    finally:
        bar.close()
        release_freed_memory()  # training's activations go back to the system: the next cell starts from what is used
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    return history


def _generators(loader: DataLoader) -> list[torch.Generator]:
    """The random generators that decide a loader's shuffle (its own and its sampler's, once each)."""
    found = [getattr(loader, "generator", None), getattr(getattr(loader, "sampler", None), "generator", None)]
    unique = {id(g): g for g in found if g is not None}
    return list(unique.values())


def _rng_state(loader: DataLoader) -> dict:
    """Every random state the next epoch draws from: the shuffle, augmentation and dropout (CPU and GPU)."""
    state = {"torch": torch.get_rng_state(), "loader": [g.get_state() for g in _generators(loader)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, loader: DataLoader) -> None:
    """Put back the random states saved by ``_rng_state``, so a resumed run draws what the whole run would."""
    torch.set_rng_state(state["torch"].cpu())
    for generator, saved in zip(_generators(loader), state["loader"]):
        generator.set_state(saved.cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _save(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, history: list[dict],
          best: dict, loader: DataLoader) -> None:
    """Write the training state whole, then rename it, so a crash mid-write never leaves a broken file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "history": history,
             "best_score": best["score"], "best_state": best["state"], "rng": _rng_state(loader),
             "scheduler": scheduler.state_dict() if scheduler is not None else None}
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")  # two runs never share it
    torch.save(state, tmp)
    tmp.replace(path)


def _resume(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
            loader: DataLoader) -> tuple[list[dict], dict] | None:
    """Load a checkpoint written by ``fit`` (weights only: no code is unpickled), random states included.

    A checkpoint cut short or damaged is not read: one line says so, and None means "train from the start".
    """
    try:
        state = torch.load(path, map_location=model_device(model), weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as exc:
        print(f"The checkpoint {shown(path)} is damaged ({str(exc).splitlines()[0][:80]}): training this run from "
              "the start; it is written again after the first epoch.", file=sys.stderr)
        return None
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if "rng" in state:
        _set_rng_state(state["rng"], loader)
    return state["history"], {"score": state["best_score"], "state": state["best_state"]}


def layer_groups(model: nn.Module) -> list[nn.Module]:
    """MobileNetV2 in four layer groups, input to output: stem and early blocks, middle blocks, upper blocks, head.

    Introduced in ``04_fine_tuning_images.ipynb``.
    """
    return [model.features[:7], model.features[7:14], model.features[14:], model.classifier]


def discriminative_param_groups(groups: list[nn.Module], lr: float, span: float = 100.0) -> list[dict]:
    """One optimizer group per layer group, learning rates spread geometrically from ``lr / span`` (the first,
    lowest group) up to ``lr`` (the last, the head): fastai's ``slice(lr / span, lr)``.

    ULMFiT (Howard & Ruder 2018) divides the rate by 2.6 per layer of a 3-layer LSTM; grouping consecutive blocks is
    fastai's practice for CNNs, since 2.6 per block over MobileNetV2's 19 blocks would leave the lowest ones at 1e-8
    of the head's rate, untrained.
    Frozen parameters are left out. Introduced in ``04_fine_tuning_images.ipynb``.
    """
    steps = max(len(groups) - 1, 1)
    rates = [lr / span ** (1 - i / steps) for i in range(len(groups))] if len(groups) > 1 else [lr]
    out = []
    for group, rate in zip(groups, rates):
        params = [p for p in group.parameters() if p.requires_grad]
        if params:
            out.append({"params": params, "lr": rate})
    return out


def train_steps(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, steps: int, lr: float,
                batch_size: int = 32, augment: bool = False, seed: int = 0, eval_every: int = 0,
                evaluate_fn=None) -> list[float]:
    """Train on tensors for a fixed number of steps (AdamW, random batches); return the evaluation curve.

    With ``augment``, each batch of images gets a random flip and quarter turn. ``evaluate_fn(model)``
    is called every ``eval_every`` steps (and not at all when 0). Introduced in ``01_doctor_to_lawyer.ipynb``.
    """
    device = model_device(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    generator = torch.Generator().manual_seed(seed)
    curve = []
    for step in range(1, steps + 1):
        model.train()
        batch = torch.randint(len(labels), (min(batch_size, len(labels)),), generator=generator)
        x, y = inputs[batch], labels[batch]
        if augment:
            turns, flip = torch.randint(4, (2,), generator=generator).tolist()
            x = dihedral(x, turns, flip % 2 == 1)
        loss = nn.functional.cross_entropy(model(to_model(x, device)), y.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if eval_every and step % eval_every == 0:
            curve.append(evaluate_fn(model))
    return curve


def mixed_precision(device: torch.device):
    """bfloat16 autocast for training convolutions on a GPU that does bfloat16; a no-op elsewhere.

    Not on a CPU, even one with AMX: there it made MobileNetV2's fine-tuning steps slower (batches of 16 at
    128 px, 2-core Xeon with AMX: 300-400 ms a step against 200 ms in float32). Lesson 05's transformer is
    another matter (faster in bfloat16 on such a CPU, see ``env.bf16_is_fast``). Introduced in
    ``04_fine_tuning_images.ipynb``.
    """
    from course_utils.env import bf16_is_fast

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and bf16_is_fast(device))
