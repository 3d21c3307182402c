"""``python -m course_utils reproduce 04``: lesson 04's comparisons at a budget its cold run cannot afford.

Every strategy of the lesson over 3 seeds with a longer schedule (8 epochs; scratch also 30 with its best
validation epoch, which may still not be its best), the levers tried on the top
blocks (cached augmented views, test-time augmentation, input size, where the frozen part ends, a seed ensemble),
and the top blocks on several random 75/25 splits. Each row is cached in ``data/reproduce/`` as soon as it is
measured, so an interrupted run continues where it stopped. The table goes to ``course_utils/reproduced/`` (package data) with the
date, machine, device, versions and wall time; lesson 04 shows it after its own, smaller live run.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from course_utils import env
from course_utils.assets import REPO_ROOT
from course_utils.data import cached
from course_utils.features import cached_activations, cached_features
from course_utils.lessons import check_output_file
from course_utils.models import freeze, freeze_batchnorm, load_efficientnet_lite0, load_mobilenet_v2, top_blocks
from course_utils.train import (class_weights, discriminative_param_groups, feature_loader, fit, image_loader,
                                layer_groups, predict_proba, scores)
from course_utils.vision import elpv_splits, load_elpv, paper_split, resize

# The lesson's own settings (a test checks they match the notebook): top blocks, then discriminative rates.
TOP_EPOCHS, TOP_LR = 4, 3e-3
LR, SPAN = 1e-3, 100
SCRATCH_PLATEAU = "from scratch, best validation epoch"
ENSEMBLES = 3  # seed ensembles per input size, each over as many seeds as the budget has
if TYPE_CHECKING:
    import pandas

OUT = Path(__file__).parent / "reproduced" / "04_fine_tuning_images.json"  # package data: Colab and a wheel have it


@dataclass(frozen=True)
class Budget:
    """How much to run: the full budget, or a tiny one for the unit test."""

    seeds: tuple[int, ...] = (0, 1, 2)
    end_epochs: int = 8  # from scratch, full fine-tuning and LP-FT share this schedule
    plateau_epochs: int = 30  # from scratch again, scored on the validation cells after every epoch
    end_size: int = 128
    top_epochs: int = 8  # top blocks trained on cached augmented views (one view per cell per epoch)
    size: int = 160
    large_size: int = 224  # the input-size lever
    views: int = 8  # dihedral views cached per cell (flips and quarter turns)
    splits: tuple[int, ...] = (0, 1, 2)  # random 75/25 draws of vision.paper_split; draw 0 is the lesson's
    max_cells: int | None = None  # keep only this many cells per split (the unit test's tiny budget)


FULL = Budget()
TINY = Budget(seeds=(0, 1), end_epochs=1, plateau_epochs=2, top_epochs=1, size=64, large_size=96, views=2, splits=(0,), max_cells=24)


class RandomViews(Dataset):
    """Cached activations of several views (views, N, ...): each time an item is read, one view drawn at random."""

    def __init__(self, maps: np.ndarray, labels: np.ndarray, seed: int):
        self.maps, self.labels = maps, torch.as_tensor(labels)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        view = int(torch.randint(len(self.maps), (1,), generator=self.generator))
        return torch.from_numpy(np.asarray(self.maps[view, i], np.float32)), self.labels[i]


def tta_proba(model: nn.Module, maps: np.ndarray, views: int) -> np.ndarray:
    """Class probabilities averaged over the first ``views`` cached views of each cell (test-time augmentation)."""
    return np.mean([predict_proba(model, feature_loader(maps[v], np.zeros(maps.shape[1], np.int64)))
                    for v in range(views)], axis=0)


def top_blocks_run(maps: np.ndarray, labels: np.ndarray, split: dict, seed: int, k: int, epochs: int,
                   views: int = 1, test_views: int | None = None, lr: float = TOP_LR,
                   backbone: Callable[..., nn.Module] = load_mobilenet_v2) -> np.ndarray:
    """Lesson 04's top blocks trained on the first ``views`` cached views (views, N, C, H, W); the test cells'
    probabilities, averaged over ``test_views`` views (test-time augmentation; default: ``views``)."""
    torch.manual_seed(seed)
    model = backbone(num_classes=2).to(env.get_device())
    freeze(model.features[:-k])
    top = top_blocks(model, k)
    train = split["train"]
    loader = DataLoader(RandomViews(maps[:views, train], labels[train], seed), batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.AdamW([p for p in top.parameters() if p.requires_grad], lr=lr, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * len(loader))
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(labels[train]))
    fit(top, loader, None, optimizer, epochs, schedule, loss_fn=loss_fn, progress=False)
    test_views = test_views or views
    return tta_proba(top, maps[:test_views, split["test"]], test_views)


def end_to_end_run(strategy: str, small: np.ndarray, features: np.ndarray, labels: np.ndarray, split: dict,
                   seed: int, epochs: int) -> np.ndarray:
    """Lesson 04's from scratch, full fine-tuning or LP-FT, trained end to end; the test cells' probabilities."""
    from torchvision.models import mobilenet_v2

    torch.manual_seed(seed)
    train, test = split["train"], split["test"]
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(labels[train]))
    if strategy == "from scratch":
        model = mobilenet_v2(num_classes=2).to(env.get_device())
        groups = [{"params": model.parameters(), "lr": 3e-3}]
    else:
        model = freeze_batchnorm(load_mobilenet_v2(num_classes=2).to(env.get_device()))
        if strategy == "LP-FT":  # the head first, as a probe on frozen features, then everything
            probe = feature_loader(features[train], labels[train], train=True, seed=seed)
            optimizer = torch.optim.AdamW(model.classifier.parameters(), lr=1e-3, weight_decay=1e-2)
            fit(model.classifier, probe, None, optimizer, 40, loss_fn=loss_fn, progress=False)
        groups = discriminative_param_groups(layer_groups(model), LR, SPAN)
    loader = image_loader(small[train], labels[train], batch_size=16, train=True, seed=seed)
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-2)
    peaks = [group["lr"] for group in optimizer.param_groups]
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, peaks, total_steps=epochs * len(loader))
    fit(model, loader, None, optimizer, epochs, schedule, loss_fn=loss_fn, progress=False)
    return predict_proba(model, image_loader(small[test], labels[test]))


def scratch_plateau_run(small: np.ndarray, labels: np.ndarray, split: dict, val_images: np.ndarray,
                        val_labels: np.ndarray, seed: int, epochs: int) -> tuple[np.ndarray, dict]:
    """From scratch as in ``end_to_end_run``, for ``epochs`` epochs, the validation cells scored after each: the test
    cells' probabilities at the best validation epoch, and the validation curve (where it stopped rising)."""
    from torchvision.models import mobilenet_v2

    torch.manual_seed(seed)
    train, test = split["train"], split["test"]
    model = mobilenet_v2(num_classes=2).to(env.get_device())
    loader = image_loader(small[train], labels[train], batch_size=16, train=True, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=epochs * len(loader))
    history = fit(model, loader, image_loader(val_images, val_labels), optimizer, epochs, schedule,
                  loss_fn=nn.CrossEntropyLoss(weight=class_weights(labels[train])), progress=False)
    curve = [row["balanced_accuracy"] for row in history]  # fit keeps the first epoch with the best of these
    return (predict_proba(model, image_loader(small[test], labels[test])),
            {"epochs": epochs, "best_epoch": int(np.argmax(curve)) + 1, "val_curve": curve})


def probe_run(features: np.ndarray, labels: np.ndarray, split: dict, seed: int) -> np.ndarray:
    """Lesson 04's linear probe on pooled frozen features; the test cells' probabilities."""
    torch.manual_seed(seed)
    head = load_mobilenet_v2(num_classes=2).classifier.to(env.get_device())
    train = split["train"]
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-2)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(labels[train]))
    fit(head, feature_loader(features[train], labels[train], train=True, seed=seed), None, optimizer, 40,
        loss_fn=loss_fn, progress=False)
    return predict_proba(head, feature_loader(features[split["test"]], labels[split["test"]]))


def _timed(compute) -> dict:
    """``compute()``'s test probabilities (and anything it returns beside them) with the seconds it took."""
    start = time.perf_counter()
    result = compute()
    probs, extra = result if isinstance(result, tuple) else (result, {})
    return {"probs": probs.tolist(), **extra, "seconds": time.perf_counter() - start}


def _row(table: str, name: str, seed: int, result: dict, labels: np.ndarray, cell_type: np.ndarray) -> dict:
    """One table row: scores on the test cells, overall and for mono and poly cells apart, at the 0.5 cut-off and
    without one (ROC AUC, average precision: how well the defect probability ranks the cells)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    defect = np.asarray(result["probs"])[:, 1]
    predicted = (defect > 0.5).astype(int)  # argmax of two probabilities
    row = {"table": table, "strategy": name, "seed": seed, **scores(labels, predicted, 2),
           "roc_auc": roc_auc_score(labels, defect), "average_precision": average_precision_score(labels, defect),
           **{key: result[key] for key in ("epochs", "best_epoch", "val_curve") if key in result},
           "seconds": result["seconds"]}
    for kind in ("mono", "poly"):
        on = cell_type == kind
        row[f"{kind}_accuracy"] = float(np.mean(predicted[on] == labels[on]))
    return row


def run(budget: Budget = FULL, out: Path | None = OUT) -> dict:
    """Measure every row (reusing rows already measured with the same code and settings) and write the table."""
    if out is not None:  # found after half an hour of training, an unwritable table would lose it
        check_output_file(out, "the reproduced table")
    started = time.perf_counter()
    cells = load_elpv()
    lesson = elpv_splits(cells.labels, n_train=800, n_val=200, seed=0)
    val = lesson["val"]  # only scratch-to-its-plateau reads it; every other run keeps its last epoch
    lesson = {"train": lesson["train"], "test": lesson["test"]}
    draws = {draw: paper_split(cells.labels, draw) for draw in budget.splits}
    if budget.max_cells:  # the tiny budget: a few cells of each split
        lesson = {name: index[:budget.max_cells] for name, index in lesson.items()}
        val = val[:budget.max_cells]
        draws = {d: {name: index[:budget.max_cells] for name, index in s.items()} for d, s in draws.items()}
    # Two sets of cells: all that some 75/25 split uses, and the lesson's 800 + 656 (a subset of them).
    used = np.unique(np.concatenate([*lesson.values(), *(i for s in draws.values() for i in s.values())]))
    mine = np.unique(np.concatenate(list(lesson.values())))
    draws = {d: {name: np.searchsorted(used, index) for name, index in s.items()} for d, s in draws.items()}
    lesson = {name: np.searchsorted(mine, index) for name, index in lesson.items()}
    images, labels, cell_type = np.asarray(cells.images[used]), cells.labels[used], cells.cell_type[used]
    mine_images, mine_labels, mine_types = np.asarray(cells.images[mine]), cells.labels[mine], cells.cell_type[mine]
    pretrained = load_mobilenet_v2(num_classes=2).eval().to(env.get_device())

    print("frozen activations and features (computed once, then cached)...", flush=True)
    start = time.perf_counter()
    size, large, views = budget.size, budget.large_size, budget.views
    maps = cached_activations(pretrained, images, size, "features.15", 1)[0]
    large_maps = cached_activations(pretrained, images, large, "features.15", 1)[0]
    in_mine = np.searchsorted(used, mine)
    view_maps = cached_activations(pretrained, mine_images, size, "features.15", views)
    lower_maps = cached_activations(pretrained, mine_images, size, "features.13", 1)[0]
    features = cached_features(pretrained, mine_images, size)["features"]
    small = resize(mine_images, budget.end_size)
    val_small, val_labels = resize(np.asarray(cells.images[val]), budget.end_size), cells.labels[val]
    small_features = cached_features(pretrained, mine_images, budget.end_size)["features"]
    lite = load_efficientnet_lite0(num_classes=2).eval().to(env.get_device())  # a second ImageNet backbone; its top 3 blocks start at 15
    lite_maps = {s: cached_activations(lite, mine_images, s, "features.14", 1) for s in (size, large)}
    print(f"  {time.perf_counter() - start:.0f} s", flush=True)

    rows: list[dict] = []

    def measure(table: str, name: str, seed: int, split: dict, run_fn, *args, report: bool = True) -> dict:
        """One row: trained and scored, or read back when the same code and settings measured it before."""
        result = cached("reproduce", "row", lambda: _timed(lambda: run_fn(*args)), run_fn, table, name, seed,
                        split["train"], split["test"], budget)
        on_labels, on_types = (mine_labels, mine_types) if table != "75/25" else (labels, cell_type)
        row = _row(table, name, seed, result, on_labels[split["test"]], on_types[split["test"]])
        if report:
            rows.append(row)
        print(f"{table:<10} {name:<44} seed {seed}: accuracy {row['accuracy']:.3f}, "
              f"balanced {row['balanced_accuracy']:.3f}, ROC AUC {row['roc_auc']:.3f} ({result['seconds']:.0f} s)", flush=True)
        return result

    recipe = "top blocks (the lesson's recipe)"
    lesson_maps = maps[in_mine][None]  # (1 view, cells, ...)
    for seed in budget.seeds:
        measure("strategy", "linear probe", seed, lesson, probe_run, features, mine_labels, lesson, seed)
        measure("strategy", recipe, seed, lesson, top_blocks_run, lesson_maps, mine_labels, lesson, seed, 3,
                TOP_EPOCHS, 1)
        for strategy in ("from scratch", "full fine-tuning", "LP-FT"):
            measure("strategy", strategy, seed, lesson, end_to_end_run, strategy, small, small_features, mine_labels,
                    lesson, seed, budget.end_epochs)
        measure("strategy", SCRATCH_PLATEAU, seed, lesson, scratch_plateau_run, small, mine_labels, lesson,
                val_small, val_labels, seed, budget.plateau_epochs)

    mobilenet, larger = load_mobilenet_v2, f"{large} px instead of {size}"
    large_lesson_maps = large_maps[in_mine][None]  # (1 view, the lesson's cells, ...)
    levers = {  # name: (cached maps, blocks trained, epochs, views trained on, views averaged at test, backbone)
        f"+ test-time augmentation over {views} views": (view_maps, 3, TOP_EPOCHS, 1, views, mobilenet),
        f"+ {views} cached views, {budget.top_epochs} epochs, TTA": (view_maps, 3, budget.top_epochs, views, views,
                                                                     mobilenet),
        larger: (large_lesson_maps, 3, TOP_EPOCHS, 1, 1, mobilenet),
        "top 5 blocks instead of 3": (lower_maps[None], 5, TOP_EPOCHS, 1, 1, mobilenet),
        f"EfficientNet-Lite0 instead of MobileNetV2, {size} px": (lite_maps[size], 3, TOP_EPOCHS, 1, 1,
                                                                  load_efficientnet_lite0),
        f"EfficientNet-Lite0, {large} px": (lite_maps[large], 3, TOP_EPOCHS, 1, 1, load_efficientnet_lite0),
    }
    for name, (lever_maps, k, epochs, train_views, test_views, backbone) in levers.items():
        for seed in budget.seeds:
            measure("lever", name, seed, lesson, top_blocks_run, lever_maps, mine_labels, lesson, seed, k, epochs,
                    train_views, test_views, TOP_LR, backbone)

    # Ensembles: the recipe's probabilities averaged over n seeds, three times over disjoint seeds (0..n-1, n..2n-1,
    # ...), so an ensemble gets a mean and a spread like any strategy. Members already measured above are reused.
    n, test = len(budget.seeds), lesson["test"]
    for px, (table, name), ensemble_maps in ((size, ("strategy", recipe), lesson_maps),
                                             (large, ("lever", larger), large_lesson_maps)):
        for e in range(ENSEMBLES):
            members = [measure(table if e == 0 else "member", name, seed, lesson, top_blocks_run, ensemble_maps,
                               mine_labels, lesson, seed, 3, TOP_EPOCHS, 1, report=False)
                       for seed in range(e * n, (e + 1) * n)]  # reported through their ensemble
            probs = np.mean([m["probs"] for m in members], axis=0)
            rows.append(_row("ensemble", f"{recipe}, {px} px, average of {n} seeds", e,
                             {"probs": probs, "seconds": sum(m["seconds"] for m in members)}, mine_labels[test],
                             mine_types[test]))

    for draw, split in draws.items():  # 75/25 splits: the lesson's recipe, and at the larger input
        for name, split_maps in ((f"{recipe}, {size} px", maps), (f"{recipe}, {large} px", large_maps)):
            measure("75/25", f"{name}, split {draw}", 0, split, top_blocks_run, split_maps[None], labels, split, 0,
                    3, TOP_EPOCHS, 1)

    report = {"date": date.today().isoformat(), "machine": machine(),
              "device": env.describe_device(env.get_device()), "versions": env.versions(), "wall_seconds": time.perf_counter() - started, "budget": asdict(budget),
              "rows": rows}
    if out is not None:
        write_report(out, report)
    return report


def write_report(path: Path, report: dict) -> None:
    """Write a reproduced table as JSON and say where, with its wall time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path} "
          f"({report['wall_seconds'] / 60:.1f} min)")


def machine() -> str:
    """The CPU's model name and core count (what a reader compares wall times against)."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def summary(report: dict) -> "pandas.DataFrame":
    """The report's rows as one table: mean and spread over seeds (or, for 75/25, over splits) of each strategy."""
    import pandas as pd

    frame = pd.DataFrame(report["rows"])
    frame["strategy"] = frame.strategy.str.replace(r", split \d+$", "", regex=True)  # the splits pooled
    return frame.groupby(["table", "strategy"], sort=False).agg(
        runs=("seed", "count"), accuracy=("accuracy", "mean"), accuracy_std=("accuracy", "std"),
        balanced_accuracy=("balanced_accuracy", "mean"), balanced_std=("balanced_accuracy", "std"),
        roc_auc=("roc_auc", "mean"), roc_auc_std=("roc_auc", "std"),
        average_precision=("average_precision", "mean"), mono=("mono_accuracy", "mean"), poly=("poly_accuracy", "mean"), seconds=("seconds", "mean"))


def load(path: Path = OUT) -> dict:
    """The committed full-budget report."""
    return json.loads(path.read_text())
