"""Builds notebooks/07_robot_reaching.ipynb (WIP builder, not part of the course)."""
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course_utils.lessons import generated_cells

SLUG = "07_robot_reaching"
cells = []


def md(text, tags=None):
    cell = new_markdown_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = tags
    cells.append(cell)


def code(text, tags=None, blank=None):
    cell = new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = tags
    if blank is not None:
        cell.metadata["blank"] = blank.strip("\n")
    cells.append(cell)


gen = generated_cells(SLUG)
md("""
# A robot arm that learns to see from a few labelled frames
> The capstone: a simulated arm must find a cube with its camera and reach it. How many labelled frames does it
> need, with and without ImageNet's features?
""")
md(gen["nav"], ["nav"])
md("""
Robot data is expensive. In a real work cell, every labelled frame is a person measuring where the object lies;
every failed reach is time on a machine. So robotics teams start from networks pretrained on photos instead of
from zero (Levine et al. 2016 initialised their visuomotor policies from ImageNet; R3M and MVP in 2022 pretrained
on images and frames of video for the same reason). This lesson makes that an experiment you can run on a laptop, in a real physics
engine, MuJoCo: an arm with two joints on a table, a cube placed at random, a fixed camera. The controller needs
the cube's position, and it must read it from the image. In simulation the true position is known, so we can
measure exactly how many labelled frames each way of reading it needs, and whether the arm then gets there.

**You will learn**
- to load a MuJoCo scene, render its camera without a display, and command an arm's joints under physics;
- inverse kinematics for a two-link arm, in four lines of geometry;
- why a classification head (global average pooling) cannot say *where* something is, and a head that can:
  a spatial softmax that turns feature maps into expected keypoints;
- to compare a CNN from scratch, frozen ImageNet features and the last kept block fine-tuned, by error in
  centimetres and by reaching success, against the number of labelled frames, over 3 seeds;
- what happens to each when the lighting or the object's colour changes.

It assumes lessons 01 (data-efficiency curves), 03 (freezing, a new head) and 04 (fine-tuning the top blocks with
frozen BatchNorm). On a 2-core laptop CPU it takes about 4-5 minutes cold (under 1 minute warm: every training
run is cached); a GPU trains the networks, and MuJoCo renders through EGL either way (on the GPU where there is
one, in software on the CPU where not).
""")
code(gen["setup"], ["setup"])

md("""
## 1. The simulator
MuJoCo reads a scene from an MJCF file: bodies, their joints and shapes, lights, cameras and actuators. Here is
the whole scene of this lesson. The arm's two links are 18 and 16 cm long and turn about vertical hinges (`j1` at
the base, `j2` at the elbow); each joint has a *position actuator* (`a1`, `a2`) that pulls it towards a commanded
angle like a stiff spring with damping. The cube is a *mocap* body: we place it where we like. The camera `cam`
looks at the table from the front and above.
""")
code("""
import time
import numpy as np
import torch
import matplotlib.pyplot as plt
from torch import nn
from torch.nn import functional as F
from course_utils import sim
from course_utils.data import cached, key_of
from course_utils.viz import plot_spread, show_images

print(sim.SCENE.read_text())
""")
md("""
Rendering a frame takes three steps: compute where every body is from the joint angles (`mj_forward`), copy the
scene into the renderer from a camera (`update_scene`), and draw it (`render`). On a machine without a display,
MuJoCo draws offscreen through EGL; without a GPU, Mesa's software rasteriser does the drawing on the CPU.
Shadows and reflections cost most of that work (about 85 ms per frame with them, 4 without, on the 2-core
reference machine), and finding a cube does not need them, so we turn them off. `sim.render` is these lines; the
first frame also pays for setting the renderer up, so the cell times the second.
""")
code("""
mujoco = sim.mujoco_module()  # MuJoCo, set to render offscreen through EGL on Linux
model, data = sim.load_scene()
renderer = sim.make_renderer(model, size=96)
data.qpos[:] = [0.6, -1.2]  # the two joint angles, in radians
data.mocap_pos[0] = [0.05, 0.2, 0.015]  # the cube's centre, in metres
mujoco.mj_forward(model, data)
renderer.update_scene(data, camera="cam")
for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_SKYBOX):
    renderer.scene.flags[flag] = False
frame = renderer.render()
start = time.perf_counter()
again = sim.render(renderer, data)
print(f"a {frame.shape} {frame.dtype} frame; the second took {1000 * (time.perf_counter() - start):.1f} ms")
assert np.array_equal(frame, again)
fig, ax = plt.subplots(figsize=(2.4, 2.4))
ax.imshow(frame)
ax.set_title("The camera's view, 96 x 96", fontsize=9)
ax.axis("off")
plt.show()
""")
md("""
**What a real cell varies, we randomise.** If every frame had the same red cube on the same table under the same
light, one bright pixel would give the answer. A factory's camera sees the lighting change through the day, parts
of several colours, a scuffed table, a camera bumped by a few millimetres. So each frame draws (in
`sim.Scene.randomise`): the cube's hue (red to cyan), the table's tint and checker size, the arm's grey, the light's
position, direction and brightness, and a camera offset of up to 1 cm. The arm itself stands at a random pose in
every frame, at least 5 cm from the cube on the table and as the camera sees it, so the network must tell the
cube from the arm.

We render 1,600 frames to train on (the labels are the cube's (x, y) in cm), 200 test frames, and two sets of 200
frames of conditions training never shows: **new colours** (blue to magenta cubes) and **dim light** (a dim,
strongly tinted light). `sim.frame_set` caches each set under `data/sim/`, keyed by its settings, the scene file
and the simulator's code.
""")
code("""
start = time.perf_counter()
frames = {"train": sim.frame_set(1600, seed=0), "test": sim.frame_set(200, seed=1),
          "new colours": sim.frame_set(200, seed=2, shift="colour"),
          "dim light": sim.frame_set(200, seed=3, shift="light")}
print(f"{sum(len(f['images']) for f in frames.values()):,} frames in {time.perf_counter() - start:.1f} s")
examples = [(name, i) for name, count in [("train", 8), ("new colours", 4), ("dim light", 4)] for i in range(count)]
show_images(np.stack([frames[name]["images"][i] for name, i in examples]),
            [f"{name}\\n({frames[name]['xy_cm'][i][0]:.0f}, {frames[name]['xy_cm'][i][1]:.0f}) cm"
             for name, i in examples], ncols=8, size=1.4)
""")

md("""
## 2. Moving the arm
The controller's job, once it knows where the cube is: find the joint angles that put the gripper (the white ball
at the end of the arm) over the cube, command them, and let physics move the arm.

**Inverse kinematics.** For two links of lengths $L_1$ and $L_2$ and a goal at distance $r$ from the base, the
law of cosines gives the elbow angle, $\\cos q_2 = (r^2 - L_1^2 - L_2^2) / (2 L_1 L_2)$; the shoulder then points
the arm at the goal, less the angle the bent elbow adds. Two elbows reach every point inside the reach (bent
left or right); we always take the same one. Forward kinematics checks the answer.
""")
code("""
L1, L2 = 0.18, 0.16  # link lengths (m), as in the scene file


def forward_kinematics(q):
    \"\"\"Where the gripper is (x, y in m) for joint angles q (rad).\"\"\"
    return np.array([L1 * np.cos(q[0]) + L2 * np.cos(q[0] + q[1]), L1 * np.sin(q[0]) + L2 * np.sin(q[0] + q[1])])


def inverse_kinematics(xy):
    \"\"\"Joint angles that put the gripper at xy (m): the elbow by the law of cosines, bent clockwise, then the shoulder.\"\"\"
    x, y = xy
    r2 = np.clip(x * x + y * y, (L1 - L2) ** 2 + 1e-9, (L1 + L2) ** 2 - 1e-9)  # a goal out of reach is clipped to it
    q2 = -np.arccos(np.clip((r2 - L1**2 - L2**2) / (2 * L1 * L2), -1, 1))
    q1 = np.arctan2(y, x) - np.arctan2(L2 * np.sin(q2), L1 + L2 * np.cos(q2))
    return np.array([q1, q2])


goal = np.array([0.20, 0.10])
q = inverse_kinematics(goal)
print(f"joint angles {np.degrees(q).round(1)} degrees put the gripper at {forward_kinematics(q).round(4)} m")
assert np.allclose(forward_kinematics(q), goal) and np.allclose(q, sim.inverse_kinematics(goal))
""")
md("""
**Commanding the joints.** Writing the angles to `data.ctrl` sets the position actuators' targets; each
`mj_step` advances the physics by 2 ms, with the actuators pulling the joints, damping and inertia slowing them.
We simulate one second and measure the distance, in the table's plane, between the gripper and the cube. A reach
**succeeds** when that distance is under 2 cm (the cube is 3 cm wide). First with the *true* position, on the
first 100 test scenes, each starting from its own random arm pose: a perfect camera would give these numbers.
""")
code("""
scene = sim.Scene(size=96)  # the scene with its renderer and its randomisation
N_SCENES, TOLERANCE = 100, 0.02  # reaches per approach and label budget; success within 2 cm


def reach(scene, target, q0, goal, seconds=1.0, film_at=()):
    \"\"\"Start at rest at q0 with the cube at target; command the joints to reach goal; return the final
    gripper-cube distance in the table's plane (m) and frames at the times in film_at (s).\"\"\"
    scene.place(target, q0)
    q = inverse_kinematics(goal)
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


targets, starts = frames["test"]["xy_cm"] / 100, frames["test"]["q0"]
start = time.perf_counter()
oracle = np.array([reach(scene, targets[i], starts[i], targets[i])[0] for i in range(N_SCENES)])
print(f"true positions: {np.mean(oracle < TOLERANCE):.0%} of {N_SCENES} reaches within 2 cm, worst "
      f"{100 * oracle.max():.2f} cm ({1000 * (time.perf_counter() - start) / N_SCENES:.1f} ms per reach)")
assert (oracle < TOLERANCE).all()
""")
md("""
The controller is not the hard part: given the true position, every reach ends within a fraction of a millimetre.
Whatever misses below comes from reading the position off the image.

## 3. Reading the cube's position: three ways to transfer, or not
We predict (x, y) in cm from a 96 × 96 frame in three ways, all with the same kind of head (a spatial softmax,
below), plus a control with a classification head:

- **scratch**: a small CNN trained from random weights (three conv-BatchNorm-ReLU blocks of 8, 16 and 32
  channels, the first with stride 2 and the others followed by max-pooling, down to a 12 × 12 grid);
- **frozen**: ImageNet MobileNetV2's blocks 0-6, frozen (also a 12 × 12 grid, 32 channels), computed once for
  every frame, with a new head trained on them;
- **fine-tuned**: the same, but block 6 trains too (its BatchNorm frozen, as in lesson 04), from blocks 0-5's
  cached output.

**Why not lesson 03's head?** A classification head averages each feature map over the whole image (global
average pooling) and feeds the averages to a linear layer. An average says *how much* of a feature there is, not
*where*: a cube on the left and the same cube on the right give the same averages. So we also train that head on
the frozen features, as a control, and expect it to fail.

**The spatial softmax** (Levine et al. 2016) keeps the where. It turns the feature maps into $K$ keypoint maps
(two 1 × 1 convolutions), makes each a probability distribution over the 12 × 12 positions (a softmax with a
learned temperature), and takes each map's *expected* position, $(\\sum_{ij} p_{ij} x_j, \\sum_{ij} p_{ij} y_i)$:
$K$ points in the image. A small MLP maps those $2K$ coordinates to the cube's position on the table.
""")
code("""
class SpatialSoftmax(nn.Module):
    \"\"\"Feature maps -> K keypoint maps -> a softmax over positions -> each map's expected (x, y) -> the cube's (x, y).\"\"\"

    def __init__(self, channels, keypoints=16, hidden=64):
        super().__init__()
        self.maps = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, keypoints, 1))
        self.log_temperature = nn.Parameter(torch.zeros(()))
        self.readout = nn.Sequential(nn.Linear(2 * keypoints, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, features):
        maps = self.maps(features)
        n, k, height, width = maps.shape
        p = F.softmax(maps.flatten(2) / self.log_temperature.exp(), dim=-1).view(n, k, height, width)
        xs = torch.linspace(-1, 1, width, device=features.device)
        ys = torch.linspace(-1, 1, height, device=features.device)
        keypoints = torch.cat([(p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)], dim=1)  # (n, 2k): x's, then y's
        return self.readout(keypoints)


class PooledLinear(nn.Module):
    \"\"\"A classification-style head: the average of each feature map (where is lost), then a linear layer.\"\"\"

    def __init__(self, channels):
        super().__init__()
        self.linear = nn.Linear(channels, 2)

    def forward(self, features):
        return self.linear(features.mean(dim=(2, 3)))


def scratch_cnn():
    \"\"\"Three conv-BatchNorm-ReLU blocks (8, 16, 32 channels), the first with stride 2, the others max-pooled:
    96 px down to 12 x 12, then the same head.\"\"\"
    def block(c_in, c_out, stride=1, pool=True):
        layers = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
        return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))
    return nn.Sequential(block(3, 8, stride=2, pool=False), block(8, 16), block(16, 32), SpatialSoftmax(32))
""")
md("""
The frozen features are computed once for all 2,200 frames: blocks 0-5, and block 6 on top of them. The scratch
CNN reads the pixels themselves, converted batch by batch (ImageNet's normalisation, as for the others).
""")
code("""
from course_utils.models import freeze_batchnorm, load_mobilenet_v2
from course_utils.vision import to_input

backbone = load_mobilenet_v2().features.eval().to(device)


@torch.no_grad()
def features(images, blocks, batch=200):
    \"\"\"The output of ``blocks`` for uint8 frames, computed in batches on the device, kept on the CPU.\"\"\"
    return torch.cat([blocks(to_input(images[i:i + batch], 96).to(device)).cpu() for i in range(0, len(images), batch)])


start = time.perf_counter()
blocks_0_5 = {name: features(f["images"], backbone[:6]) for name, f in frames.items()}
with torch.no_grad():  # block 6 on top of the cached blocks 0-5
    blocks_0_6 = {name: torch.cat([backbone[6](h[i:i + 200].to(device)).cpu() for i in range(0, len(h), 200)])
                  for name, h in blocks_0_5.items()}
print(f"frozen features of {sum(len(f['images']) for f in frames.values()):,} frames in "
      f"{time.perf_counter() - start:.1f} s: blocks 0-5 {tuple(blocks_0_5['train'].shape[1:])}, "
      f"blocks 0-6 {tuple(blocks_0_6['train'].shape[1:])}")
""")
md("""
**One loop for every approach.** Each run draws its labelled frames from the 1,600 (a fixed random order per seed:
the first 25, 100, 400 or 1,600), and trains for a fixed number of steps whatever the budget: AdamW with a
one-cycle schedule, batches of 32, the smooth L1 loss on standardised centimetres, gradients clipped at 1. The
steps and learning rates were chosen on a separate validation set of 200 frames while building the lesson:
fewer steps left the frozen features' head short of what it can do, and the fine-tuned block overfitted at
higher rates. Seeds 0, 1 and 2 draw the labelled frames, the batches and the new weights.
""")
code("""
BUDGETS, SEEDS, BATCH = [25, 100, 400, 1600], [0, 1, 2], 32
APPROACHES = {  # steps, and the learning rate of (the trained block,) the head
    "scratch": (300, [1e-3]),
    "frozen, pooled head": (400, [3e-2]),
    "frozen, spatial softmax": (400, [3e-3]),
    "fine-tuned block 6": (300, [1e-3, 3e-3]),
}
EVAL = ["test", "new colours", "dim light"]
y_train = torch.tensor(frames["train"]["xy_cm"])
MEAN, STD = y_train.mean(0), y_train.std(0)


def pixels(name):
    return lambda idx: to_input(frames[name]["images"][idx.numpy()], 96).to(device)


def cached_features(store, name):
    return lambda idx: store[name][idx].to(device)


def build(approach):
    \"\"\"The model of an approach, its parameter groups (learning rates) and where its inputs come from.\"\"\"
    steps, rates = APPROACHES[approach]
    if approach == "scratch":
        model, source = scratch_cnn(), pixels
    elif approach == "frozen, pooled head":
        model, source = PooledLinear(32), lambda name: cached_features(blocks_0_6, name)
    elif approach == "frozen, spatial softmax":
        model, source = SpatialSoftmax(32), lambda name: cached_features(blocks_0_6, name)
    else:
        block = freeze_batchnorm(load_mobilenet_v2().features[6])  # ImageNet's block 6, its statistics kept
        model, source = nn.Sequential(block, SpatialSoftmax(32)), lambda name: cached_features(blocks_0_5, name)
    parts = [model[0], model[1]] if len(rates) == 2 else [model]
    groups = [{"params": list(part.parameters()), "lr": lr} for part, lr in zip(parts, rates)]
    return model.to(device), groups, steps, source


def train_xy(model, groups, steps, inputs, labelled, seed):
    \"\"\"AdamW, one-cycle schedule, batches of 32 from the labelled frames, smooth L1 on standardised cm.\"\"\"
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in groups], total_steps=steps,
                                                   pct_start=0.15)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        batch = labelled[torch.randint(len(labelled), (min(BATCH, len(labelled)),), generator=generator)]
        target = ((y_train[batch] - MEAN) / STD).to(device)
        loss = F.smooth_l1_loss(model(inputs(batch)), target, beta=0.1)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    return model


@torch.no_grad()
def predict_cm(model, inputs, n, batch=200):
    \"\"\"Predicted (x, y) in cm for the first n frames of a set.\"\"\"
    model.eval()
    out = torch.cat([model(inputs(torch.arange(i, min(i + batch, n)))).cpu() for i in range(0, n, batch)])
    return (out * STD + MEAN).numpy()


def run(approach, n, seed):
    \"\"\"Train one approach on n labelled frames with one seed; its predictions on every evaluation set and its time.\"\"\"
    torch.manual_seed(seed)  # the new weights
    labelled = torch.tensor(np.random.default_rng(seed).permutation(len(y_train))[:n])
    model, groups, steps, source = build(approach)
    start = time.perf_counter()
    train_xy(model, groups, steps, source("train"), labelled, seed)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, **{name: predict_cm(model, source(name), len(frames[name]["images"])).tolist()
                                   for name in EVAL}}
""")
md("""
Every run's predictions are cached (`data/lesson07/`), keyed by its settings, the frames and the code of the
loop and the models: a re-run of the lesson reads them back. The 48 runs take about four minutes on 2 CPU cores,
most of it the scratch CNN, which reads full frames; the other approaches read cached 12 × 12 features.
""")
code("""
frames_key = [key_of(frames[name]["images"]) for name in ["train", *EVAL]]
code_key = [train_xy, predict_cm, build, run, scratch_cnn, SpatialSoftmax.forward, SpatialSoftmax.__init__,
            PooledLinear.forward, APPROACHES, BATCH]
start = time.perf_counter()
runs = {(approach, n, seed): cached("lesson07", f"{approach.replace(' ', '-').replace(',', '')}-{n}-{seed}",
                                    lambda: run(approach, n, seed), approach, n, seed, frames_key, *code_key)
        for approach in APPROACHES for n in BUDGETS for seed in SEEDS}
print(f"{len(runs)} runs in {time.perf_counter() - start:.0f} s")
""")
code("""
import pandas as pd

truth = {name: frames[name]["xy_cm"] for name in EVAL}
error = pd.DataFrame([{"approach": a, "labels": n, "seed": s, "train s": r["seconds"],
                       **{name: np.linalg.norm(np.array(r[name]) - truth[name], axis=1).mean() for name in EVAL}}
                      for (a, n, s), r in runs.items()])
mean = error.groupby(["approach", "labels"], sort=False)[EVAL].mean()
spread = error.groupby(["approach", "labels"], sort=False)[EVAL].std()
chance = np.linalg.norm(truth["test"] - frames["train"]["xy_cm"].mean(0), axis=1).mean()
table = (mean["test"].map("{:.2f}".format) + " ± " + spread["test"].map("{:.2f}".format)).unstack("labels")
print(f"Test error (cm, mean ± std over 3 seeds); always answering the training frames' mean: {chance:.1f} cm")
print(error.groupby("approach", sort=False)["train s"].mean().map("{:.1f} s per run".format).to_string())
table
""")
code("""
fig, ax = plt.subplots(figsize=(6, 3.4))
for approach in APPROACHES:
    runs_cm = error[error.approach == approach].pivot(index="labels", columns="seed", values="test").loc[BUDGETS]
    plot_spread(ax, BUDGETS, runs_cm.to_numpy(), approach)
ax.axhline(chance, color="grey", linestyle=":", label="the training mean, always")
ax.axhline(100 * TOLERANCE, color="black", linewidth=0.8, label="the 2 cm tolerance")
ax.set(xscale="log", yscale="log", xlabel="labelled frames", ylabel="test error (cm)", xticks=BUDGETS,
       xticklabels=BUDGETS, title="Reading the cube's position: error against labelled frames")
ax.legend(fontsize=7)
plt.show()
""")
md("""
**What the curve says.**

- **The pooled head fails at every budget**: its error is at or above that of always answering the average
  position (the line on the plot). The frozen features carry where the cube is (the spatial softmax reads it from the very same
  features), but averaging each map over the image throws it away. A head must fit the question: "what is
  it?" can ignore where; "where is it?" cannot.
- **With 25 labelled frames**, every approach is several centimetres off: too few to reach reliably.
- **The scratch CNN catches up fast** in this scene: from 100 labelled frames on, its mean error is at or below
  the frozen features'. The scene is simple (a coloured cube on a checkered table), and frames with the same
  randomisations as the test frames teach a small CNN what it needs.
- **Fine-tuning block 6** beats the frozen features from 100 frames on and is on a par with the scratch CNN there
  (their means differ by less than the larger of their spreads over seeds).

The asserts below check these on every seed, or on the mean over seeds where the comment says so.
""")
code("""
test_mean = mean["test"].unstack("labels")
by_seed = error.pivot_table(index=["approach", "labels"], columns="seed", values="test")
# The pooled head never gets near the others: over 10 cm at every budget and seed, and on the mean over seeds
# 3 times the spatial softmax's error.
assert (by_seed.loc["frozen, pooled head"] > 10).all().all()
assert (test_mean.loc["frozen, pooled head"] > 3 * test_mean.loc["frozen, spatial softmax"]).all()
# From 400 labelled frames on, scratch and fine-tuned read the position to about a centimetre (under 1.5 on every seed).
for approach in ["scratch", "fine-tuned block 6"]:
    assert (by_seed.loc[approach].loc[[400, 1600]] < 1.5).all().all()
# At 25 frames nobody is within the 2 cm tolerance, on the mean over seeds.
assert (test_mean[25] > 2).all()
""")

md("""
## 4. Closing the loop
Now the whole robot: frame → predicted position → inverse kinematics → joint targets → physics. For each approach
and budget, and each of the 3 seeds, the arm reaches for the cube in the first 100 test scenes, starting from the
pose in which the frame was taken.
""")
code("""
start = time.perf_counter()
success = pd.DataFrame([{"approach": a, "labels": n, "seed": s,
                         "success": np.mean([reach(scene, targets[i], starts[i], np.array(r["test"][i]) / 100)[0]
                                             < TOLERANCE for i in range(N_SCENES)])}
                        for (a, n, s), r in runs.items()])
print(f"{len(runs) * N_SCENES:,} reaches in {time.perf_counter() - start:.0f} s")
rate = success.groupby(["approach", "labels"], sort=False)["success"]
(rate.mean().map("{:.1%}".format) + " ± " + rate.std().map("{:.1%}".format)).unstack("labels")
""")
md("""
Compare this table with the error table above: a reach succeeds when the prediction is within about 2 cm, since
the controller itself is exact (section 2). The check below confirms it: for every model, the share of reaches that
succeeded and the share of predictions within 2 cm of the cube differ by at most 3 points.

Here is one reach, the fine-tuned model trained on 100 labelled frames (seed 0) on the first test scene, as a film
strip. The line above it says where the gripper ended (within 2 cm is a success). The strip's colours and light are
drawn afresh, not those of the test frame the network read.
""")
code("""
close = np.array([[np.linalg.norm(np.array(r["test"][i]) - truth["test"][i]) < 100 * TOLERANCE for i in range(N_SCENES)]
                  for r in runs.values()])
assert abs(close.mean(axis=1) - success["success"].to_numpy()).max() <= 0.03
TIMES = [0.0, 0.06, 0.12, 0.2, 0.4, 1.0]
predicted = np.array(runs[("fine-tuned block 6", 100, 0)]["test"][0]) / 100
scene.randomise(np.random.default_rng(0))
distance, film = reach(scene, targets[0], starts[0], predicted, film_at=TIMES)
print(f"cube at {100 * targets[0].round(3)} cm, predicted {100 * predicted.round(3)} cm: the gripper ends "
      f"{100 * distance:.1f} cm from it")
show_images(np.stack(film), [f"t = {t:.2f} s" for t in TIMES], ncols=6, size=1.6)
""")

md("""
## 5. When the cell changes
A network trained from scratch learns whatever separates the cube in its training frames. If every cube it saw was
red to cyan, "the cube" may mean "the reddish-to-cyan blob". The pretrained features were learned on a million
photos of every colour and light. Here are the errors on the two sets of conditions training never showed:
blue-to-magenta cubes, and a dim, strongly tinted light.
""")
code("""
shift = pd.concat({name: (mean[name].map("{:.2f}".format) + " ± " + spread[name].map("{:.2f}".format)).unstack("labels")
                   for name in EVAL}, names=["frames"])
shift
""")
code("""
ratio = (mean[["new colours", "dim light"]].div(mean["test"], axis=0)).unstack("labels")
print("error under new conditions / error on the test frames, mean over seeds")
print(ratio.round(1).to_string())
# New colours: from 100 labels on, scratch is more than 3 times worse than on its test frames (the table: about
# 9 to 14 times); the frozen and fine-tuned features stay within 1.5 times theirs.
assert (ratio["new colours"].loc["scratch", [100, 400, 1600]] > 3).all()
assert (ratio["new colours"].loc[["frozen, spatial softmax", "fine-tuned block 6"]] < 1.5).all().all()
# Dim light hurts both spatial-softmax approaches on pretrained features (over 1.5 times their test error from
# 100 labels on) and scratch the most (a larger ratio than either, at every budget from 100 on) ...
dim_ratio = ratio["dim light"].loc[:, [100, 400, 1600]]
assert (dim_ratio.loc[["frozen, spatial softmax", "fine-tuned block 6"]] > 1.5).all().all()
assert (dim_ratio.loc["scratch"] > dim_ratio.loc[["frozen, spatial softmax", "fine-tuned block 6"]].max()).all()
# ... and in centimetres, scratch's error is over 2.5 times the fine-tuned model's on every seed from 100 labels on.
dim = error.pivot_table(index=["approach", "labels"], columns="seed", values="dim light")
assert (dim.loc["scratch"].loc[[100, 400, 1600]] > 2.5 * dim.loc["fine-tuned block 6"].loc[[100, 400, 1600]]).all().all()
""")
md("""
**This is where the pretrained features pay in this scene.** On frames like its training frames, the scratch CNN
was as good as the others from 100 labels on. Under a cube colour it never saw, or a light it never saw, its error
grows about ten-fold or more from 100 labels on (the ratio table), to 10 to 16 cm, around the 14.4 cm of always
answering the average position. The ImageNet features, frozen or with one block fine-tuned, do not notice the new colours (ratios
0.9 to 1.1) and degrade two to three times under the dim light: much less, but to 2 cm or more, so many reaches
would miss there too. A real cell changes in ways no one randomised for; features learned from a wide, varied source
carry that variety with them. Domain randomisation (Tobin et al. 2017) is the other half of the answer: randomise
what may change, and the network learns to ignore it, within the range randomised: this lesson's hues went from red
to cyan, and the scratch CNN failed on blue to magenta.

## Summary
- **The simulator**: a scene file, `mj_forward` and a renderer give a frame; writing joint targets to `data.ctrl`
  and stepping the physics moves the arm; four lines of geometry give the joint angles for a point.
- **A head must keep *where***: global average pooling on frozen ImageNet features did no better than always
  answering the average position; a spatial softmax on the same features read it to about a centimetre.
- **In the training conditions, labels beat pretraining here**: from 100 labelled frames on, the scratch CNN was at
  least as accurate as the frozen features and on a par with the fine-tuned block; with 25, nothing reached
  reliably.
- **Reaching success follows the perception error**: the controller is exact, so a reach succeeds when the
  prediction is within the tolerance.
- **Under new colours the pretrained features held; under a dim light they degraded two to three times, the
  scratch CNN ten-fold or more**: in this scene the case for pretraining is robustness more than label efficiency.

## Exercises
""")
code("""
from course_utils.exercises import ____, lesson07

q1, q2, q3 = lesson07(mean["test"].unstack("labels"))
""")
md("""
**q1.** The cube lies at (x, y) = (10 cm, 25 cm). Compute the joint angles (in radians, an array of two) that put
the gripper there, with the formulas of section 2 written yourself (not `inverse_kinematics`). Either elbow is
fine.
""")
code("""
x, y = 0.10, 0.25
c2 = (x**2 + y**2 - L1**2 - L2**2) / (2 * L1 * L2)
q2_angle = -np.arccos(c2)
answer = np.array([np.arctan2(y, x) - np.arctan2(L2 * np.sin(q2_angle), L1 + L2 * np.cos(q2_angle)), q2_angle])
q1.check(answer)
""", ["solution"], "answer = ____  # np.array([shoulder, elbow]) in radians\nq1.check(answer)")
md("""
**q2.** Read the error table of section 3: from which label budget (25, 100, 400 or 1,600) on is the scratch CNN's
mean test error at or below that of the frozen features with the spatial softmax?
""")
code("""
test_error = mean["test"].unstack("labels")
caught_up = [n for n in BUDGETS if all(test_error.loc["scratch", m] <= test_error.loc["frozen, spatial softmax", m]
                                       for m in BUDGETS if m >= n)]
answer = caught_up[0]
q2.check(answer)
""", ["solution"], "answer = ____  # a budget from the table\nq2.check(answer)")
md("""
**q3.** A customer's cell will see parts in colours you cannot list in advance. Which approach of this lesson would
you ship, how many frames would you label, and what would you measure before trusting it?
""")
code("""
answer = ("The fine-tuned block on a few hundred labelled frames: it was as accurate as scratch and kept its accuracy "
          "under new colours; before shipping, label frames of the new colours and lights and measure on them.")
q3.check(answer)
""", ["solution"], "answer = ____  # a few sentences, in quotes\nq3.check(answer)")
md("""
## Questionnaire
Answer in your own words, then discuss them with someone; there is no checker, and the answers are in the instructor's copy.

1. Why does global average pooling lose the cube's position, and why is that no problem for classifying an image?
2. The spatial softmax takes the *expected* position of each keypoint map. What does its learned temperature
   change, and what would a very low temperature turn it into?
3. The controller succeeded on every reach with the true position. So where does every failure in section 4 come
   from, and what would change if the arm had joint friction or a slower controller?
4. The scratch CNN matched the pretrained features on the test frames but not under new colours. Name two things
   you could change in *training* to make it robust, without pretraining.
5. Why are the frozen features computed once and cached, while the scratch CNN reads the pixels at every step?
6. In a real cell, which of this lesson's numbers would you trust, and which would you measure again?
""", ["questionnaire"])
md("""
**Answers** (instructor's copy only: the student copy leaves this cell out)

1. The average of a feature map over all positions is the same wherever the feature fires: moving the cube moves
   the peak in the map, not its average. A classifier asks whether a feature is present, not where, so the
   average is exactly what it needs (and it makes the classifier indifferent to where the object is).
2. The temperature scales the maps before the softmax: a high temperature spreads each distribution over many
   positions (the expected position drifts towards the centre), a low one concentrates it on the strongest
   position; near zero the expected position becomes the arg-max, a hard choice that gives no gradient between
   positions.
3. From perception: section 2 showed the controller alone ends within a fraction of a millimetre, and section 4
   found the success rate within 3 points of the share of predictions within 2 cm, for every model. With friction or a slower
   controller, the arm would also miss with a perfect prediction: the success rate would then measure the two
   together, and you would measure the controller alone again, as section 2 does.
4. Randomise the colours and lights more widely in the training frames (domain randomisation), or augment the
   pixels (colour jitter, brightness, grey-scale); both teach the network that the cube's colour and the light
   carry no information about its position.
5. The frozen blocks never change, so their output for a frame is the same at every step: computing it once saves
   all but one of the forward passes. The scratch CNN's layers change at every step, so its features must be
   recomputed; only the pixel arrays can be kept.
6. The orders of magnitude and the ranking under changed conditions transfer as hypotheses; the centimetres and
   the budgets do not: a real camera has noise, blur, occlusions and lens distortion, and a real arm has friction
   and play. Label a few hundred real frames, measure the error and the success rate on held-out ones, including
   the conditions you fear.
""", ["instructor"])
md("""
## Further reading
- S. Levine, C. Finn, T. Darrell, P. Abbeel, "End-to-End Training of Deep Visuomotor Policies", JMLR 2016,
  [arXiv:1504.00702](https://arxiv.org/abs/1504.00702): the spatial softmax, and convolutions initialised from
  ImageNet.
- S. Nair et al., "R3M: A Universal Visual Representation for Robot Manipulation", CoRL 2022,
  [arXiv:2203.12601](https://arxiv.org/abs/2203.12601); T. Xiao et al., "Masked Visual Pre-training for Motor
  Control" (MVP), 2022, [arXiv:2203.06173](https://arxiv.org/abs/2203.06173).
- J. Tobin et al., "Domain Randomization for Transferring Deep Neural Networks from Simulation to the Real World",
  IROS 2017, [arXiv:1703.06907](https://arxiv.org/abs/1703.06907).
- E. Todorov, T. Erez, Y. Tassa, "MuJoCo: A physics engine for model-based control", IROS 2012; the
  [MuJoCo documentation](https://mujoco.readthedocs.io/) (MJCF, actuators, rendering).
""")
md(gen["nav"], ["nav"])

nb = new_notebook(cells=cells, metadata={"kernelspec": {"display_name": "Python 3", "language": "python",
                                                         "name": "python3"},
                                         "language_info": {"name": "python"}})
nbformat.write(nb, f"notebooks/{SLUG}.ipynb")
print("wrote", len(cells), "cells")
