"""``python -m course_utils reproduce paper``: a recipe in the spirit of Deitsch et al. on their kind of split, run by run.

The recipe (a pilot of it, scored on two draws' test cells, is why the course runs it): MobileNetV2 from ImageNet with one output trained by
binary cross-entropy on the soft defect probabilities (0, 1/3, 2/3, 1); the head alone first, then every layer with a
one-cycle schedule and BatchNorm in training mode; a random flip and quarter turn of each training cell; 8-view
test-time averaging; the last epoch kept, so nothing is chosen on these runs' test cells. ``PLAN`` lists the runs: the
recipe on three 75/25 draws first, then the controlled comparison (full fine-tuning and the top blocks trained the
recipe's way), then the ablations that say which ingredient moved the result.

Every finished run is appended as one JSON line to ``course_utils/reproduced/04_paper_recipe.jsonl`` (with ``--commit``
it is also committed at once), and a run already in that file is never run again: the hours it takes finish over
several sessions, even from a fresh clone. Within a session, an interrupted run resumes from its last epoch.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, Dataset

from course_utils import env
from course_utils.assets import REPO_ROOT, shown
from course_utils.data import keyed_path
from course_utils.errors import SettingError
from course_utils.models import freeze, load_efficientnet_lite0, load_mobilenet_v2, top_blocks
from course_utils.reproduce import machine
from course_utils.train import fit, mixed_precision, to_model
from course_utils.vision import DIHEDRAL, dihedral, load_elpv, paper_split, resize, to_input

if TYPE_CHECKING:
    import pandas

TABLE = Path(__file__).parent / "reproduced" / "04_paper_recipe.jsonl"  # package data: Colab and a wheel have it
PAPER_ACCURACY = 0.8842  # Deitsch et al. 2019, fine-tuned VGG-19


@dataclass(frozen=True)
class Recipe:
    """Every setting of one run; a changed setting is a different run."""

    size: int = 224
    soft: bool = True  # BCE on the defect probability; False: on the hard label (probability >= 0.5)
    turns: bool = True  # training views: flips and quarter turns; False: flips and half turns only (busbars kept)
    head_epochs: int = 2  # the head alone (AdamW, head_lr), the body frozen
    head_lr: float = 1e-3
    epochs: int = 8  # then every layer (AdamW, one-cycle to lr)
    lr: float = 3e-4
    batch_size: int = 32
    backbone: str = "mobilenet_v2"  # or "efficientnet_lite0"
    test_views: int = 8  # views averaged at test time (the row also reports view 0 alone)
    max_cells: int | None = None  # keep this many cells per split (the unit test's tiny budget)
    trainable: str = "all"  # after the head stage: "all" layers, or "top" (the top TOP_K blocks and the head)

    def __post_init__(self) -> None:
        if self.trainable not in ("all", "top"):
            raise SettingError(f"Unknown trainable {self.trainable!r}: choose 'all' or 'top'.")


@dataclass(frozen=True)
class Run:
    """One row of the table: a named recipe on one 75/25 draw with one seed."""

    name: str
    recipe: Recipe
    split: int
    seed: int = 0

    @property
    def key(self) -> str:
        """What identifies the run in the table (its name is only a label)."""
        recipe = {k: v for k, v in asdict(self.recipe).items() if ADDED_LATER.get(k, object()) != v}
        text = json.dumps({"recipe": recipe, "split": self.split, "seed": self.seed}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


ADDED_LATER = {"trainable": "all"}  # settings added after rows were measured: at this value, left out of the key
TOP_K = 3  # blocks retrained by lesson 04's top-blocks strategy
PAPER = Recipe()
CONTROLLED = {  # lesson 04's three strategies with everything else the recipe's: input, views, BatchNorm, batch,
    # one-cycle, 10 epochs in all, the last one kept. The paper recipe itself is LP-FT (the head, then every layer).
    "full fine-tuning": replace(PAPER, head_epochs=0, epochs=10),
    "top 3 blocks": replace(PAPER, head_epochs=0, epochs=10, trainable="top"),
}
ABLATIONS = {  # one ingredient changed at a time
    "hard labels instead of soft": replace(PAPER, soft=False),
    "no quarter turns in training": replace(PAPER, turns=False),
    "160 px instead of 224": replace(PAPER, size=160),
    "288 px instead of 224": replace(PAPER, size=288),
}
PUSH = {  # toward 90%: a larger input, more seeds to average, the second backbone
    "300 px": replace(PAPER, size=300),
    "EfficientNet-Lite0 instead of MobileNetV2": replace(PAPER, backbone="efficientnet_lite0"),
}
SPLITS = (0, 1, 2)
PLAN: list[Run] = list({r.key: r for r in (  # in this order, each run once
    [Run("paper recipe", PAPER, s) for s in SPLITS]
    + [Run(name, recipe, 0, seed) for seed in (0, 1, 2)
       for name, recipe in [("paper recipe", PAPER), *CONTROLLED.items()]]  # the controlled comparison
    + [Run(name, recipe, 0) for name, recipe in ABLATIONS.items()]
    + [Run(name, recipe, s) for s in SPLITS[1:] for name, recipe in ABLATIONS.items()]
    + [Run("paper recipe", PAPER, s, seed) for seed in (1, 2) for s in SPLITS]  # for seed averaging
    + [Run(name, recipe, s) for name, recipe in PUSH.items() for s in SPLITS]
)}.values())
TINY = Recipe(size=64, head_epochs=1, epochs=1, test_views=2, max_cells=48)
TINY_PLAN = [Run("paper recipe", TINY, 0), Run("hard labels instead of soft", replace(TINY, soft=False), 0)]


class Cells(Dataset):
    """Resized uint8 cells and their targets; with ``turns`` set, each read draws a random flip and turn."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, size: int, turns: tuple[int, ...] | None, seed: int):
        self.images, self.targets, self.size = torch.as_tensor(images), torch.as_tensor(targets), size
        self.turns, self.generator = turns, torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[i]
        if self.turns is not None:
            turn = self.turns[int(torch.randint(len(self.turns), (1,), generator=self.generator))]
            image = dihedral(image, turn, bool(torch.randint(2, (1,), generator=self.generator)))
        return to_input(image[None], self.size)[0], self.targets[i]


class BinaryCrossEntropy(nn.Module):
    """BCE between one logit per cell, shaped (N, 1), and a target in [0, 1] (a probability or a 0/1 label)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits.squeeze(1), target.float())


def build(backbone: str) -> nn.Module:
    """The ImageNet backbone with one output (the defect logit)."""
    loaders = {"mobilenet_v2": load_mobilenet_v2, "efficientnet_lite0": load_efficientnet_lite0}
    if backbone not in loaders:
        raise SettingError(f"Unknown backbone {backbone!r}: choose one of {', '.join(loaders)}.")
    return loaders[backbone](num_classes=1)


@torch.no_grad()
def view_probabilities(model: nn.Module, images: np.ndarray, size: int, views: int,
                       batch_size: int = 64) -> np.ndarray:
    """Defect probabilities (views, N) of each cell under the first ``views`` flips and turns, as CPU numpy."""
    device = env.model_device(model)
    model.eval()
    out = np.empty((views, len(images)), np.float32)
    for start in range(0, len(images), batch_size):
        x = to_input(images[start:start + batch_size], size)
        for v, (turns, flip) in enumerate(DIHEDRAL[:views]):
            with mixed_precision(device):
                logits = model(to_model(dihedral(x, turns, flip), device))
            out[v, start:start + batch_size] = torch.sigmoid(logits.float().squeeze(1)).cpu().numpy()
    return out


def checkpoint_path(run: Run, stage: str) -> Path:
    """Where a run's stage ("head" or "all") saves its state after every epoch, to resume from."""
    return keyed_path("paper_recipe", stage, run.key)


def train(run: Run, images: np.ndarray, targets: np.ndarray, checkpoint: bool = True) -> tuple[nn.Module, list]:
    """The recipe trained on ``images`` (resized uint8) and ``targets``: the head alone, then every layer (or the
    top blocks and the head)."""
    recipe = run.recipe
    torch.manual_seed(run.seed)
    model = build(recipe.backbone).to(env.get_device())
    turns = (0, 1, 2, 3) if recipe.turns else (0, 2)
    loader = DataLoader(Cells(images, targets, recipe.size, turns, run.seed), batch_size=recipe.batch_size,
                        shuffle=True, generator=torch.Generator().manual_seed(run.seed), num_workers=0)
    loss_fn = BinaryCrossEntropy()
    saved = (lambda stage: checkpoint_path(run, stage)) if checkpoint else (lambda stage: None)
    freeze(model.features)  # stage 1: the head alone
    history = []
    if recipe.head_epochs:
        head = torch.optim.AdamW(model.classifier.parameters(), lr=recipe.head_lr, weight_decay=1e-2)
        history = fit(model, loader, None, head, recipe.head_epochs, loss_fn=loss_fn, checkpoint=saved("head"),
                      progress=False, amp=True)
    trained = model if recipe.trainable == "all" else top_blocks(model, TOP_K)  # shares the model's weights
    for p in trained.parameters():  # stage 2: every layer, or the top blocks and the head
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(trained.parameters(), lr=recipe.lr, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.lr, total_steps=recipe.epochs * len(loader))
    history += fit(model, loader, None, optimizer, recipe.epochs, schedule, loss_fn=loss_fn,
                   checkpoint=saved("all"), progress=False, amp=True)
    return model, history


def score(labels: np.ndarray, probability: np.ndarray, cell_type: np.ndarray) -> dict[str, float]:
    """Test scores of defect probabilities cut at 0.5, and the threshold-free ROC AUC and average precision."""
    predicted = (probability >= 0.5).astype(int)
    out = {"accuracy": float(np.mean(predicted == labels)),
           "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
           "roc_auc": float(roc_auc_score(labels, probability)),
           "average_precision": float(average_precision_score(labels, probability))}
    for kind in ("mono", "poly"):
        on = cell_type == kind
        out[f"{kind}_accuracy"] = float(np.mean(predicted[on] == labels[on]))
    return out


def measure(run: Run, checkpoint: bool = True) -> dict:
    """Train one run and score it on its draw's test cells: one row of the table."""
    started = time.perf_counter()
    cells = load_elpv()
    split = paper_split(cells.labels, run.split)
    if run.recipe.max_cells:
        split = {name: index[:run.recipe.max_cells] for name, index in split.items()}
    train_cells, test_cells = split["train"], split["test"]
    size = run.recipe.size
    targets = cells.defect_prob if run.recipe.soft else cells.labels
    train_images = resize(np.asarray(cells.images[train_cells]), size)
    resumed = checkpoint and any(checkpoint_path(run, stage).is_file() for stage in ("head", "all"))
    model, history = train(run, train_images, targets[train_cells].astype(np.float32), checkpoint)
    views = view_probabilities(model, resize(np.asarray(cells.images[test_cells]), size), size,
                               run.recipe.test_views)
    labels, types = cells.labels[test_cells], cells.cell_type[test_cells]
    plain, averaged = score(labels, views[0], types), score(labels, views.mean(0), types)
    return {"key": run.key, "name": run.name, "split": run.split, "seed": run.seed, "recipe": asdict(run.recipe),
            **plain, **{f"tta_{k}": v for k, v in averaged.items()},
            "train_loss": [round(row["train_loss"], 4) for row in history],
            "test_probability": [round(float(p), 4) for p in views.mean(0)],
            "test_probability_view0": [round(float(p), 4) for p in views[0]],
            "seconds": round(time.perf_counter() - started, 1), "resumed": resumed,  # seconds: this session's part
            "date": date.today().isoformat(),
            "machine": machine(), "device": env.describe_device(env.get_device()),
            "versions": {k: v for k, v in env.versions().items() if k in ("python", "torch", "torchvision")}}


def load(table: Path = TABLE) -> list[dict]:
    """The rows measured so far (none when the table does not exist yet)."""
    if not table.is_file():
        return []
    return [json.loads(line) for line in table.read_text().splitlines() if line.strip()]


def run(plan: list[Run] = PLAN, table: Path = TABLE, max_runs: int | None = None, commit: bool = False,
        checkpoint: bool = True) -> list[dict]:
    """Measure every run of ``plan`` not yet in ``table``, appending each row as soon as it is finished."""
    done = {row["key"] for row in load(table)}
    left = [r for r in plan if r.key not in done]
    todo = left[:max_runs]
    print(f"{len(plan) - len(left)} of {len(plan)} runs already in {shown(table)}; {len(todo)} to run now.",
          flush=True)
    seconds, rows = [], []
    for i, r in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {r.name}, split {r.split}, seed {r.seed} ...", flush=True)
        row = measure(r, checkpoint)
        table.parent.mkdir(parents=True, exist_ok=True)
        with table.open("a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
        seconds.append(row["seconds"])
        left = np.mean(seconds) * (len(todo) - i) / 60
        print(f"  accuracy {row['accuracy']:.4f}, with test-time averaging {row['tta_accuracy']:.4f} "
              f"(ROC AUC {row['tta_roc_auc']:.3f}); {row['seconds'] / 60:.1f} min; "
              f"about {left:.0f} min left for {len(todo) - i} runs", flush=True)
        if commit:
            _commit(table, f"Paper recipe, one more row: {r.name}, split {r.split}, seed {r.seed}: accuracy "
                           f"{row['tta_accuracy']:.4f} with 8-view test-time averaging ({row['seconds'] / 60:.0f} "
                           f"min on {row['device']})")
    return rows


def _commit(path: Path, message: str, tries: int = 5) -> None:
    """Commit ``path`` alone (whatever else is staged), retrying while another git command holds the index."""
    for attempt in range(tries):
        done = subprocess.run(["git", "add", "--", str(path)], cwd=REPO_ROOT, capture_output=True, text=True)
        if done.returncode == 0:  # a new file must be known to git before it can be committed alone
            done = subprocess.run(["git", "commit", "--quiet", "-m", message, "--", str(path)], cwd=REPO_ROOT,
                                  capture_output=True, text=True)
        if done.returncode == 0:
            return
        time.sleep(2 + 3 * attempt)
    print(f"  (could not commit {shown(path)}: {done.stderr.strip().splitlines()[-1] if done.stderr else ''}; "
          "the row is in the file, commit it by hand)")


def summary(rows: list[dict]) -> "pandas.DataFrame":
    """Mean and spread over runs of each named recipe: accuracy at 0.5 without and with test-time averaging,
    balanced accuracy, ROC AUC, and minutes per run (runs resumed from a checkpoint left out of the minutes)."""
    import pandas as pd

    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    resumed = frame["resumed"].fillna(False).astype(bool) if "resumed" in frame else frame.seconds < 0
    frame["minutes"] = frame.seconds.where(~resumed) / 60
    return frame.groupby("name", sort=False).agg(
        runs=("split", "count"), splits=("split", lambda s: ",".join(map(str, sorted(set(s))))),
        accuracy=("accuracy", "mean"), tta_accuracy=("tta_accuracy", "mean"), tta_std=("tta_accuracy", "std"),
        balanced=("tta_balanced_accuracy", "mean"), roc_auc=("tta_roc_auc", "mean"),
        minutes=("minutes", "mean"))
