"""Lesson 07's training loop for the cube's position, and ``python -m course_utils reproduce 07``.

The models, the loop and the open-loop reach are the ones ``07_robot_reaching.ipynb`` writes out (a test keeps
them equal). ``reproduce`` runs the lesson's approaches with controls the live lesson cannot afford: the scratch
network trained with random shifts (Hansen et al. 2023; DrQ) or with colour and light jitter, and the spatial-softmax
head on a frozen network with random weights (its BatchNorm statistics re-estimated on the training frames), over 6
label budgets and 3-5 seeds. Each run is cached in ``data/reproduce07/`` as soon as it is measured, so an
interrupted run continues where it stopped. The table goes to ``course_utils/reproduced/`` (package data) with the
date, machine, device, versions and wall time.
"""

from __future__ import annotations

import inspect
import json
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import env, sim
from course_utils.assets import data_dir
from course_utils.data import cached, key_of
from course_utils.features import estimate_batchnorm
from course_utils.lessons import check_output_file
from course_utils.reproduce import machine, write_report
from course_utils.models import IMAGENET_MEAN, IMAGENET_STD, freeze, freeze_batchnorm, load_mobilenet_v2
from course_utils.vision import to_input

if TYPE_CHECKING:
    import pandas

OUT = Path(__file__).parent / "reproduced" / "07_robot_reaching.json"  # package data: Colab and a wheel have it
EVAL = ("test", "new colours", "dim light")
TOLERANCE = 0.02  # a reach succeeds within 2 cm (m)
SIZE = 96  # the frames' side (px)
LUMA = (0.2989, 0.587, 0.114)  # grey from RGB, torchvision's weights
RANDOM = "random 0-6"  # the source whose features depend on the run's seed (the random backbone's)


def reach(scene: sim.Scene, target: np.ndarray, q0: np.ndarray, goal: np.ndarray, seconds: float = 1.0,
          film_at: tuple[float, ...] = ()) -> tuple[float, list[np.ndarray]]:
    """Start at rest at q0 with the cube at target; command the joints to reach goal; return the final
    gripper-cube distance in the table's plane (m) and frames at the times in film_at (s).

    Introduced in ``07_robot_reaching.ipynb``."""
    mujoco = sim.mujoco_module()
    scene.place(target, q0)
    q = sim.inverse_kinematics(goal)
    scene.data.ctrl[:] = q0 + np.angle(np.exp(1j * (q - q0)))  # the same angles, turning the short way round
    steps = round(seconds / scene.model.opt.timestep)
    film_steps = {round(t / scene.model.opt.timestep) for t in film_at}
    film = []
    for step in range(steps + 1):
        if step in film_steps:
            film.append(scene.frame())
        if step < steps:
            mujoco.mj_step(scene.model, scene.data)
    return float(np.linalg.norm(scene.data.site("tip").xpos[:2] - target)), film


def servo(scene: sim.Scene, estimate: Callable[[np.ndarray], np.ndarray], target: np.ndarray, q0: np.ndarray,
          every: float | None = 0.1, seconds: float = 1.0, moved: tuple[float, np.ndarray] | None = None,
          film_at: tuple[float, ...] = ()) -> tuple[float, list[tuple[float, np.ndarray, np.ndarray]], list[np.ndarray]]:
    """Start at rest at q0 with the cube at target; every ``every`` s (None: once, open loop) read a frame, estimate
    the cube's (x, y) (m) and command the joints there; ``moved=(t, xy)`` moves the cube at t s. Return the final
    gripper-cube distance (m), each estimate with its time and the joints then, and frames at film_at (s).

    Introduced in ``07_robot_reaching.ipynb``."""
    mujoco = sim.mujoco_module()
    scene.place(target, q0)
    cube = scene.data.mocap_pos[scene.mocap]
    dt = scene.model.opt.timestep
    steps = round(seconds / dt)
    period = round(every / dt) if every else steps  # open loop: the one estimate at t = 0
    move_step = round(moved[0] / dt) if moved else -1
    film_steps = {round(t / dt) for t in film_at}
    estimates, film = [], []
    for step in range(steps + 1):
        if step == move_step:
            cube[:2] = moved[1]
            mujoco.mj_forward(scene.model, scene.data)  # the frame below shows the cube where it is now
        if step % period == 0 and step < steps:
            goal, q = estimate(scene.frame()), scene.data.qpos.copy()
            estimates.append((step * dt, goal, q))
            scene.data.ctrl[:] = q + np.angle(np.exp(1j * (sim.inverse_kinematics(goal) - q)))  # the short way round
        if step in film_steps:
            film.append(scene.frame())
        if step < steps:
            mujoco.mj_step(scene.model, scene.data)
    return float(np.linalg.norm(scene.data.site("tip").xpos[:2] - cube[:2])), estimates, film


def estimator(model: nn.Module, inputs: Callable[[np.ndarray], torch.Tensor], mean: torch.Tensor,
              std: torch.Tensor) -> Callable[[np.ndarray], np.ndarray]:
    """A frame (uint8, H x W x 3) -> the model's estimate of the cube's (x, y) in m; ``inputs`` turns uint8
    frames into the model's inputs on its device (pixels, or frozen blocks' features)."""
    @torch.no_grad()
    def estimate(frame: np.ndarray) -> np.ndarray:
        was = model.training
        model.eval()
        out = model(inputs(frame[None])).cpu()[0]
        model.train(was)  # the caller's model as it was
        return ((out * std + mean) / 100).numpy()
    return estimate


class SpatialSoftmax(nn.Module):
    """Feature maps -> K keypoint maps -> a softmax over positions -> each map's expected (x, y) -> the cube's (x, y).

    Introduced in ``07_robot_reaching.ipynb``."""

    def __init__(self, channels: int, keypoints: int = 16, hidden: int = 64):
        super().__init__()
        self.maps = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, keypoints, 1))
        self.log_temperature = nn.Parameter(torch.zeros(()))
        self.readout = nn.Sequential(nn.Linear(2 * keypoints, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        maps = self.maps(features)
        n, k, height, width = maps.shape
        p = F.softmax(maps.flatten(2) / self.log_temperature.exp(), dim=-1).view(n, k, height, width)
        xs = torch.linspace(-1, 1, width, device=features.device)
        ys = torch.linspace(-1, 1, height, device=features.device)
        keypoints = torch.cat([(p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)], dim=1)  # (n, 2k): x's, then y's
        return self.readout(keypoints)


class PooledLinear(nn.Module):
    """A classification-style head: the average of each feature map (where is lost), then a linear layer.

    Introduced in ``07_robot_reaching.ipynb``."""

    def __init__(self, channels: int):
        super().__init__()
        self.linear = nn.Linear(channels, 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features.mean(dim=(2, 3)))


def scratch_cnn() -> nn.Sequential:
    """Three conv-BatchNorm-ReLU blocks (8, 16, 32 channels), the first with stride 2, the others max-pooled:
    96 px down to 12 x 12, then the spatial-softmax head. Introduced in ``07_robot_reaching.ipynb``."""
    def block(c_in: int, c_out: int, stride: int = 1, pool: bool = True) -> nn.Sequential:
        layers = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
        return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))
    return nn.Sequential(block(3, 8, stride=2, pool=False), block(8, 16), block(16, 32), SpatialSoftmax(32))


def random_shift(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image padded by ``pad`` px (its edge pixels repeated) and cropped back at its own random offset: a shift
    of up to ``pad`` px each way (DrQ; Hansen et al. 2023). Drawn from ``generator``, else torch's global seed."""
    n, _, height, width = x.shape
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).tolist()  # (dy, dx) per image
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    out = torch.empty_like(x)  # one copy per image: 3x faster than one gather of the batch on a CPU
    for i, (dy, dx) in enumerate(offsets):
        out[i] = padded[i, :, dy:dy + height, dx:dx + width]
    return out


def _colour_matrices(turns: torch.Tensor, saturation: torch.Tensor) -> torch.Tensor:
    """One 3 x 3 matrix per image: its hues turned by ``turns`` of the colour wheel around the grey axis (in YIQ's
    chroma plane, as CSS's hue-rotate), then its saturation scaled (a blend with its grey, as torchvision's)."""
    n = len(turns)
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    cos, sin = torch.cos(2 * torch.pi * turns), torch.sin(2 * torch.pi * turns)
    rotate = torch.zeros(n, 3, 3)
    rotate[:, 0, 0] = 1
    rotate[:, 1, 1], rotate[:, 1, 2], rotate[:, 2, 1], rotate[:, 2, 2] = cos, -sin, sin, cos
    grey = torch.tensor(LUMA).expand(3, 3)  # each row: an output channel set to the pixel's grey
    blend = saturation.view(n, 1, 1) * torch.eye(3) + (1 - saturation).view(n, 1, 1) * grey
    return blend @ torch.linalg.inv(yiq) @ rotate @ yiq


def colour_jitter(x: torch.Tensor, brightness: tuple[float, float] = (0.35, 1.3),
                  contrast: tuple[float, float] = (0.6, 1.4), saturation: tuple[float, float] = (0.5, 1.5),
                  hue: float = 0.5, tint: tuple[float, float] = (0.6, 1.2),
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """ImageNet-normalised images, each with its own random hue, saturation, contrast, brightness and per-channel
    tint (a cube of any colour under a dim, tinted light), clipped to valid pixels after each step as torchvision's
    ColorJitter does. Hue and saturation are one matrix per image, so the batch is done at once (torchvision's
    adjust_hue takes one factor per call: image by image, about 10 times slower). Drawn from ``generator``, else
    torch's global seed."""
    n, _, height, width = x.shape

    def uniform(span: tuple[float, float], *shape: int) -> torch.Tensor:
        return span[0] + (span[1] - span[0]) * torch.rand(n, *shape, generator=generator)

    turns, saturate = uniform((-hue, hue)), uniform(saturation)
    contrasts, light = uniform(contrast).view(n, 1, 1), uniform(brightness).view(n, 1, 1) * uniform(tint, 3, 1)
    matrices, contrasts, light = (t.to(x.device) for t in (_colour_matrices(turns, saturate), contrasts, light))
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1)
    rgb = (x.reshape(n, 3, -1) * std + mean).clamp(0, 1)  # (n, 3, pixels) in [0, 1]
    rgb = torch.bmm(matrices, rgb).clamp(0, 1)  # the colours of things ...
    grey = (torch.tensor(LUMA, device=x.device).view(1, 3, 1) * rgb).sum(1, keepdim=True).mean(2, keepdim=True)
    rgb = (grey + contrasts * (rgb - grey)).clamp(0, 1)
    rgb = (rgb * light).clamp(0, 1)  # ... then the light's strength and colour
    return ((rgb - mean) / std).view(n, 3, height, width).contiguous(memory_format=torch.channels_last)


def random_backbone(seed: int, frames_uint8: np.ndarray, device: torch.device | str = "cpu") -> nn.Module:
    """MobileNetV2's blocks 0-6 with random weights (drawn with ``seed``), their BatchNorm statistics re-estimated on
    the frames, frozen in eval mode: the control without ImageNet. With its initial statistics (mean 0, variance 1)
    BatchNorm would normalise nothing and the activations' scale would drift block by block: an unfair control."""
    from torchvision.models import mobilenet_v2

    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        torch.manual_seed(seed)
        blocks = mobilenet_v2(weights=None).features[:7]
    return estimate_batchnorm(freeze(blocks).to(device), frames_uint8, SIZE)  # frozen first: no graph is kept


@torch.no_grad()
def features(images: np.ndarray, blocks: nn.Module, device: torch.device, batch: int = 200) -> torch.Tensor:
    """The output of ``blocks`` for uint8 frames, computed in batches on the device, kept on the CPU.

    Introduced in ``07_robot_reaching.ipynb``."""
    return torch.cat([blocks(to_input(images[i:i + batch], SIZE).to(device)).cpu() for i in range(0, len(images), batch)])


class Approach(NamedTuple):
    """How one approach trains: steps, the peak learning rate of each parameter group (the trained block's, then
    the head's), where its inputs come from, and the augmentation of its training batches."""

    steps: int
    rates: list[float]
    source: str  # "pixels", "imagenet 0-5", "imagenet 0-6" or RANDOM (cached features of those blocks)
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None


APPROACHES = {  # the lesson's four (same steps and rates), and three controls
    "scratch": Approach(300, [1e-3], "pixels"),
    "scratch, random shifts": Approach(300, [1e-3], "pixels", random_shift),
    "scratch, colour and light jitter": Approach(300, [1e-3], "pixels", colour_jitter),
    "frozen random weights, spatial softmax": Approach(400, [3e-3], RANDOM),
    "frozen, spatial softmax": Approach(400, [3e-3], "imagenet 0-6"),
    "fine-tuned block 6": Approach(300, [1e-3, 3e-3], "imagenet 0-5"),
    "frozen, pooled head": Approach(400, [3e-2], "imagenet 0-6"),
}


def build(approach: str) -> tuple[nn.Module, list[dict]]:
    """The new model of an approach and its parameter groups (learning rates), created in the lesson's order."""
    _, rates, source, _ = APPROACHES[approach]
    if source == "pixels":
        model = scratch_cnn()
    elif source == "imagenet 0-5":
        block = freeze_batchnorm(load_mobilenet_v2().features[6])  # ImageNet's block 6, its statistics kept
        model = nn.Sequential(block, SpatialSoftmax(32))
    elif "pooled" in approach:
        model = PooledLinear(32)
    else:
        model = SpatialSoftmax(32)
    parts = [model[0], model[1]] if len(rates) == 2 else [model]
    return model, [{"params": list(part.parameters()), "lr": lr} for part, lr in zip(parts, rates)]


def train_xy(model: nn.Module, groups: list[dict], steps: int, inputs: Callable[[torch.Tensor], torch.Tensor],
             labelled: torch.Tensor, targets: torch.Tensor, seed: int,
             augment: Callable[[torch.Tensor], torch.Tensor] | None = None, batch: int = 32) -> nn.Module:
    """AdamW, one-cycle schedule, batches from the labelled frames, smooth L1 on standardised targets (n, 2) of all
    training frames; ``augment`` changes each training batch. Introduced in ``07_robot_reaching.ipynb``."""
    device = env.model_device(model)
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in groups], total_steps=steps,
                                                   pct_start=0.15)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        chosen = labelled[torch.randint(len(labelled), (min(batch, len(labelled)),), generator=generator)]
        x = inputs(chosen)
        if augment is not None:
            x = augment(x)
        loss = F.smooth_l1_loss(model(x), targets[chosen].to(device), beta=0.1)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    return model


@torch.no_grad()
def predict_cm(model: nn.Module, inputs: Callable[[torch.Tensor], torch.Tensor], n: int, mean: torch.Tensor,
               std: torch.Tensor, batch: int = 200) -> np.ndarray:
    """Predicted (x, y) in cm for the first n frames of a set. Introduced in ``07_robot_reaching.ipynb``."""
    model.eval()
    out = torch.cat([model(inputs(torch.arange(i, min(i + batch, n)))).cpu() for i in range(0, n, batch)])
    return (out * std + mean).numpy()


def store_name(source: str, seed: int) -> str:
    """The key in ``stores`` of a source's cached features (the random backbone's depend on the run's seed)."""
    return f"{source}, seed {seed}" if source == RANDOM else source


def _inputs(frames: dict, stores: dict, source: str, seed: int, device: torch.device
            ) -> Callable[[str], Callable[[torch.Tensor], torch.Tensor]]:
    """Set name -> (frame indices -> the model's inputs on the device): pixels, or cached features."""
    if source == "pixels":
        return lambda name: lambda idx: to_input(frames[name]["images"][idx.numpy()], SIZE).to(device)
    store = stores[store_name(source, seed)]
    return lambda name: lambda idx: store[name][idx].to(device)


def standardise(frames: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The training labels' mean and std (cm): the targets are standardised with them."""
    y_train = torch.tensor(frames["train"]["xy_cm"])
    return y_train.mean(0), y_train.std(0)


def trained(approach: str, n: int, seed: int, frames: dict, stores: dict, device: torch.device,
            steps: int | None = None) -> tuple[nn.Module, float]:
    """One approach trained on n labelled frames with one seed (``steps``: its own unless given), and the seconds
    its training took."""
    mean, std = standardise(frames)
    y_train = torch.tensor(frames["train"]["xy_cm"])
    torch.manual_seed(seed)  # the new weights (and the augmentations' draws)
    labelled = torch.tensor(np.random.default_rng(seed).permutation(len(y_train))[:n])
    model, groups = build(approach)
    model = model.to(device)
    setting = APPROACHES[approach]
    source = _inputs(frames, stores, setting.source, seed, device)
    start = time.perf_counter()
    train_xy(model, groups, steps or setting.steps, source("train"), labelled, (y_train - mean) / std, seed,
             setting.augment)
    return model, time.perf_counter() - start


def run(approach: str, n: int, seed: int, frames: dict, stores: dict, device: torch.device,
        steps: int | None = None) -> dict:
    """Train one approach on n labelled frames with one seed (``steps``: its own unless given); its predictions
    (cm) on every evaluation set and its training time."""
    model, seconds = trained(approach, n, seed, frames, stores, device, steps)
    source = _inputs(frames, stores, APPROACHES[approach].source, seed, device)
    mean, std = standardise(frames)
    return {"seconds": seconds, **{name: predict_cm(model, source(name), len(frames[name]["images"]), mean,
                                                    std).tolist() for name in EVAL}}


def full_grid() -> list[tuple[str, int, int]]:
    """Every (approach, labels, seed) of the full table: 5 seeds up to 50 labels, 3 above; each budget's runs
    together, so the time left is estimated from every approach early on."""
    return [(approach, n, seed) for n in (10, 25, 50, 100, 400, 1600) for seed in range(5 if n <= 50 else 3)
            for approach in APPROACHES]


TINY_GRID = [("scratch, colour and light jitter", 10, 0), ("frozen random weights, spatial softmax", 10, 0)]
TINY_FRAMES, TINY_STEPS, TINY_REACHES = (64, 20), 20, 20  # training frames, frames per evaluation set


def make_frames(train: int = 1600, evaluate: int = 200) -> dict[str, dict[str, np.ndarray]]:
    """The lesson's frame sets (rendered once, then cached under data/sim/): training, test, and the two shifts."""
    return {"train": sim.frame_set(train, seed=0), "test": sim.frame_set(evaluate, seed=1),
            "new colours": sim.frame_set(evaluate, seed=2, shift="colour"),
            "dim light": sim.frame_set(evaluate, seed=3, shift="light")}


def _slug(text: str) -> str:
    """A name for a cache file, as the lesson makes them."""
    return text.replace(" ", "-").replace(",", "")


def imagenet_stores(frames: dict, device: torch.device) -> dict[str, dict[str, torch.Tensor]]:
    """ImageNet MobileNetV2's blocks 0-5 and 0-6 on every set, as the lesson computes them; cached on disk."""
    backbone = load_mobilenet_v2().features.eval().to(device)
    weights = key_of(backbone)

    @torch.no_grad()
    def both(images: np.ndarray) -> np.ndarray:
        low = features(images, backbone[:6], device)
        high = torch.cat([backbone[6](low[i:i + 200].to(device)).cpu() for i in range(0, len(low), 200)])
        return np.stack([low.numpy(), high.numpy()])

    stores: dict[str, dict[str, torch.Tensor]] = {"imagenet 0-5": {}, "imagenet 0-6": {}}
    for name, f in frames.items():
        low, high = torch.from_numpy(np.asarray(cached("reproduce07", f"imagenet-{_slug(name)}",
                                                       lambda: both(f["images"]), weights, key_of(f["images"]),
                                                       key_of(features))))
        stores["imagenet 0-5"][name], stores["imagenet 0-6"][name] = low, high
    return stores


def random_store(seed: int, frames: dict, device: torch.device) -> dict[str, torch.Tensor]:
    """Blocks 0-6 of the random backbone drawn with ``seed`` (statistics from the training frames) on every set;
    cached on disk, the backbone built only when a set is missing."""
    made: list[nn.Module] = []

    def blocks() -> nn.Module:
        if not made:
            made.append(random_backbone(seed, frames["train"]["images"], device))
        return made[0]

    train_key = key_of(frames["train"]["images"])
    return {name: torch.from_numpy(np.asarray(cached(
        "reproduce07", f"random-{seed}-{_slug(name)}", lambda: features(f["images"], blocks(), device).numpy(),
        seed, train_key, key_of(f["images"]), key_of(random_backbone), key_of(features))))
        for name, f in frames.items()}


def score(result: dict, frames: dict, scene: sim.Scene, reaches: int) -> dict:
    """A run's mean error (cm) on each evaluation set, the share of each set's frames within 2 cm, and the share of
    open-loop reaches to its predictions on the first ``reaches`` test scenes that end within 2 cm."""
    errors = {name: np.linalg.norm(np.asarray(result[name]) - frames[name]["xy_cm"], axis=1) for name in EVAL}
    test = frames["test"]
    distances = [reach(scene, test["xy_cm"][i] / 100, test["q0"][i], np.asarray(result["test"][i]) / 100)[0]
                 for i in range(reaches)]
    return {"test_cm": float(errors["test"].mean()), "new_colours_cm": float(errors["new colours"].mean()),
            "dim_light_cm": float(errors["dim light"].mean()), "success": float(np.mean(np.array(distances) < TOLERANCE)),
            "within_2cm": float(np.mean(errors["test"] < 100 * TOLERANCE)),
            "new_colours_within_2cm": float(np.mean(errors["new colours"] < 100 * TOLERANCE)),
            "dim_light_within_2cm": float(np.mean(errors["dim light"] < 100 * TOLERANCE))}


def _code_key() -> list[str]:
    """What a run's result depends on in this module's code (a changed function measures its runs again)."""
    functions = [train_xy, predict_cm, build, run, _inputs, scratch_cnn, random_shift, colour_jitter,
                 _colour_matrices, random_backbone, features, imagenet_stores, random_store]
    return [key_of(f) for f in functions] + [inspect.getsource(c) for c in (SpatialSoftmax, PooledLinear)] + [LUMA]


def _setting(approach: str) -> list:
    """An approach's settings as a cache key sees them (the augmentation by name; its code is in ``_code_key``)."""
    steps, rates, source, augment = APPROACHES[approach]
    return [steps, rates, source, augment.__name__ if augment else None]


def _minutes_left(done: dict[str, list[float]], todo: list[str]) -> float:
    """Minutes for the runs still to do, from the mean time of each approach's runs measured so far."""
    measured = [s for times in done.values() for s in times]
    if not measured:
        return float("nan")
    overall = float(np.mean(measured))
    return sum(np.mean(done[a]) if done.get(a) else overall for a in todo) / 60


def _stores(grid: list[tuple[str, int, int]], frames: dict, device: torch.device) -> tuple[dict, str]:
    """The cached frozen features every run of the grid reads, and the ImageNet weights' key ("none": unused)."""
    print("frozen features of every frame (computed once, then cached)...", flush=True)
    start = time.perf_counter()
    sources = {APPROACHES[a].source for a, _, _ in grid}
    stores: dict[str, dict[str, torch.Tensor]] = {}
    imagenet = "none"
    if sources & {"imagenet 0-5", "imagenet 0-6"}:
        stores.update(imagenet_stores(frames, device))
        imagenet = key_of(load_mobilenet_v2().features)
    if RANDOM in sources:
        for seed in sorted({s for a, _, s in grid if APPROACHES[a].source == RANDOM}):
            stores[store_name(RANDOM, seed)] = random_store(seed, frames, device)
    print(f"  {time.perf_counter() - start:.0f} s", flush=True)
    return stores, imagenet


def _measure_grid(grid: list[tuple[str, int, int]], name: str, measure: Callable[[str, int, int], dict],
                  score_of: Callable[[dict], dict], key: list, line: Callable[[dict], str]) -> list[dict]:
    """Every run of the grid, measured (or read back from ``data/reproduce07/``, keyed by ``key``) and scored, with
    the pace printed; the rows sorted by approach, budget and seed."""
    rows, done = [], {}
    for i, (approach, n, seed) in enumerate(grid):
        start, fresh = time.perf_counter(), []

        def once() -> dict:
            fresh.append(True)
            return measure(approach, n, seed)

        result = cached("reproduce07", f"{name}{_slug(approach)}-{n}-{seed}", once, approach, _setting(approach), n,
                        seed, *key)
        row = {"approach": approach, "labels": n, "seed": seed, "seconds": result["seconds"], **score_of(result)}
        rows.append(row)
        if fresh:  # not read back: its time tells the pace
            done.setdefault(approach, []).append(time.perf_counter() - start)
        left = _minutes_left(done, [a for a, _, _ in grid[i + 1:]])
        pace = f"about {left:.0f} min left" if left == left else "read back"  # NaN: nothing trained yet
        print(f"{i + 1:>3}/{len(grid)} {approach:<38} {n:>4} labels, seed {seed}: {line(row)} "
              f"({row['seconds']:.1f} s); {pace}", flush=True)
    order = list(APPROACHES)
    return sorted(rows, key=lambda r: (order.index(r["approach"]), r["labels"], r["seed"]))


def _report(path: Path, started: float, device: torch.device, frames: dict, plan: dict, rows: list[dict]) -> dict:
    """Write a reproduced table with its date, machine, device, versions, wall time and plan; return it."""
    chance = np.linalg.norm(frames["test"]["xy_cm"] - frames["train"]["xy_cm"].mean(0), axis=1).mean()
    report = {"date": date.today().isoformat(), "machine": machine(), "device": env.describe_device(device),
              "versions": {**env.versions(), "mujoco": sim.mujoco_module().__version__},
              "wall_seconds": time.perf_counter() - started,
              "plan": {"frames": {name: len(f["images"]) for name, f in frames.items()}, **plan},
              "mean_answer_test_cm": float(chance), "rows": rows}
    write_report(path, report)
    return report


def reproduce(path: Path | None = None, tiny: bool = False) -> dict:
    """Measure every run of the grid (reusing runs already measured with the same code and settings), score it and
    write the table to ``path`` (default: the committed table, or data/reproduce/07-tiny.json when ``tiny``).

    ``tiny``: 2 approaches, 1 budget, 1 seed, 20 steps, 20 reaches on 64 training frames: checks it runs."""
    path = Path(path) if path is not None else data_dir() / "reproduce" / "07-tiny.json" if tiny else OUT
    check_output_file(path, "the reproduced table")  # found after the runs, an unwritable table would lose them
    started = time.perf_counter()
    device = env.get_device()
    grid = TINY_GRID if tiny else full_grid()
    steps, reaches = (TINY_STEPS, TINY_REACHES) if tiny else (None, 100)
    frames = make_frames(*TINY_FRAMES) if tiny else make_frames()
    stores, imagenet = _stores(grid, frames, device)
    frames_key = [key_of(frames[name][part]) for name in frames for part in ("images", "xy_cm")]
    scene = sim.Scene(size=SIZE)
    rows = _measure_grid(
        grid, "", lambda a, n, seed: run(a, n, seed, frames, stores, device, steps),
        lambda result: score(result, frames, scene, reaches), [steps, frames_key, imagenet, device.type, *_code_key()],
        lambda r: (f"test {r['test_cm']:5.2f} cm, new colours {r['new_colours_cm']:5.2f}, dim light "
                   f"{r['dim_light_cm']:5.2f}, reaches {r['success']:4.0%}"))
    plan = {"tiny": tiny, "reaches": reaches, "tolerance_m": TOLERANCE,
            "approaches": {a: _setting(a) for a in dict.fromkeys(a for a, _, _ in grid)}, "steps": steps}
    return _report(path, started, device, frames, plan, rows)


LOOP_OUT = Path(__file__).parent / "reproduced" / "07_closed_loop.json"
LOOPS = {"open": (None, False), "closed": (0.2, False), "open, moved": (None, True), "closed, moved": (0.2, True)}
MOVE_AT, LOOP_SCENES, TEST_SEED = 0.25, 40, 1  # the cube moves at 0.25 s; the first 40 test scenes (frame_set seed 1)
LOOP_APPROACHES = ["scratch", "scratch, random shifts", "scratch, colour and light jitter", "frozen, spatial softmax",
                   "fine-tuned block 6"]
TINY_LOOP_GRID, TINY_LOOP_SCENES = [("scratch", 10, 0), ("fine-tuned block 6", 10, 0)], 3


def moved_targets(scene: sim.Scene, targets: np.ndarray, seed: int = 7) -> np.ndarray:
    """Where each scene's cube is moved to (m): a new draw 10 cm or more from where it was.

    Introduced in ``07_robot_reaching.ipynb``."""
    rng, moved = np.random.default_rng(seed), []
    for target in targets:
        new = scene.sample_target(rng)
        while np.linalg.norm(new - target) < 0.10:
            new = scene.sample_target(rng)
        moved.append(new)
    return np.array(moved)


def loops(scene: sim.Scene, estimate: Callable[[np.ndarray], np.ndarray], test: dict, moved_to: np.ndarray,
          scenes: int) -> dict[str, list]:
    """Final distances (m) of the four loops in the first ``scenes`` test scenes (the cube still or moved at
    MOVE_AT s), and for every look of the closed loop (the cube still) how close the arm was to the cube and how far
    the estimate was from it (both in cm). Introduced in ``07_robot_reaching.ipynb``."""
    targets, starts = test["xy_cm"] / 100, test["q0"]
    out: dict[str, list] = {name: [] for name in [*LOOPS, "looks"]}
    for i, _ in enumerate(sim.scenes(scene, scenes, seed=TEST_SEED)):  # the test frame's scene again
        if not np.array_equal(scene.frame(), test["images"][i]):
            raise ValueError(f"test scene {i} does not render as its frame: were the frames made with another seed?")
        for name, (every, move) in LOOPS.items():
            distance, looks, _ = servo(scene, estimate, targets[i], starts[i], every,
                                       moved=(MOVE_AT, moved_to[i]) if move else None)
            out[name].append(distance)
            if name == "closed":
                out["looks"] += [[100 * scene.arm_distance(targets[i], q), 100 * float(np.linalg.norm(xy - targets[i]))]
                                 for _, xy, q in looks]
    return out


def frame_inputs(source: str, backbone: nn.Module, device: torch.device) -> Callable[[np.ndarray], torch.Tensor]:
    """uint8 frames -> an approach's inputs on the device: the pixels, or ImageNet blocks 0-5 or 0-6 run on them."""
    blocks = {"pixels": nn.Identity(), "imagenet 0-5": backbone[:6], "imagenet 0-6": backbone[:7]}[source]
    return lambda images: blocks(to_input(images, SIZE).to(device))


def loop_score(result: dict) -> dict:
    """A run's success (within 2 cm) in each loop, and the share of its closed-loop looks read within 2 cm with the
    arm within 5 cm of the cube and 10 cm or more from it."""
    looks = np.array(result["looks"])
    within = looks[:, 1] < 100 * TOLERANCE
    return {**{_slug(name): float(np.mean(np.array(result[name]) < TOLERANCE)) for name in LOOPS},
            "near_within_2cm": float(within[looks[:, 0] < 5].mean()) if (looks[:, 0] < 5).any() else float("nan"),
            "far_within_2cm": float(within[looks[:, 0] >= 10].mean()) if (looks[:, 0] >= 10).any() else float("nan")}


def loop_grid() -> list[tuple[str, int, int]]:
    """Every (approach, labels, seed) of the closed-loop table: 5 seeds up to 50 labels, 3 above."""
    return [(approach, n, seed) for n in (25, 50, 100, 400, 1600) for seed in range(5 if n <= 50 else 3)
            for approach in LOOP_APPROACHES]


def reproduce_loops(path: Path | None = None, tiny: bool = False) -> dict:
    """Train each run of the closed-loop grid, drive the arm with it in the four loops, and write the table to
    ``path`` (default: the committed table, or data/reproduce/07-loop-tiny.json when ``tiny``).

    ``tiny``: 2 approaches, 1 budget, 1 seed, 20 steps, 3 scenes on 64 training frames: checks it runs."""
    path = Path(path) if path is not None else data_dir() / "reproduce" / "07-loop-tiny.json" if tiny else LOOP_OUT
    check_output_file(path, "the reproduced table")
    started = time.perf_counter()
    device = env.get_device()
    grid = TINY_LOOP_GRID if tiny else loop_grid()
    steps, scenes = (TINY_STEPS, TINY_LOOP_SCENES) if tiny else (None, LOOP_SCENES)
    frames = make_frames(*TINY_FRAMES) if tiny else make_frames()
    stores, imagenet = _stores(grid, frames, device)
    backbone = load_mobilenet_v2().features.eval().to(device)
    scene = sim.Scene(size=SIZE)
    moved_to = moved_targets(scene, frames["test"]["xy_cm"][:scenes] / 100)
    mean, std = standardise(frames)

    def measure(approach: str, n: int, seed: int) -> dict:
        model, seconds = trained(approach, n, seed, frames, stores, device, steps)
        inputs = frame_inputs(APPROACHES[approach].source, backbone, device)
        return {"seconds": seconds, **loops(scene, estimator(model, inputs, mean, std), frames["test"], moved_to,
                                            scenes)}

    frames_key = [key_of(frames[name][part]) for name in frames for part in ("images", "xy_cm", "q0")]
    code = [key_of(f) for f in (trained, servo, estimator, loops, moved_targets, frame_inputs, sim.scenes)]
    rows = _measure_grid(grid, "loops-", measure, loop_score,
                         [steps, scenes, frames_key, imagenet, device.type, *_code_key(), *code],
                         lambda r: f"open {r['open']:4.0%}, closed {r['closed']:4.0%}, moved: open "
                                   f"{r['open-moved']:4.0%}, closed {r['closed-moved']:4.0%}")
    plan = {"tiny": tiny, "scenes": scenes, "tolerance_m": TOLERANCE, "move_at_s": MOVE_AT,
            "loops": {name: every for name, (every, _) in LOOPS.items()},
            "approaches": {a: _setting(a) for a in dict.fromkeys(a for a, _, _ in grid)}, "steps": steps}
    return _report(path, started, device, frames, plan, rows)


METRICS = ["test_cm", "new_colours_cm", "dim_light_cm", "success", "within_2cm", "new_colours_within_2cm",
           "dim_light_within_2cm", "seconds"]


def summary(rows: list[dict]) -> "pandas.DataFrame":
    """Mean and spread (std, ddof=1) over seeds of every metric, per approach and label budget."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    grouped = frame.groupby(["approach", "labels"], sort=False)
    table = grouped[METRICS].agg(["mean", "std"])
    table.columns = [metric if stat == "mean" else f"{metric}_std" for metric, stat in table.columns]
    return table.assign(runs=grouped["seed"].count())


def load(path: Path = OUT) -> dict:
    """The committed full-grid report."""
    return json.loads(path.read_text())
