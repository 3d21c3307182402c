"""Lesson 07's loop in the package (``course_utils.robot``): equal to the lesson's, its augmentations and controls,
and ``reproduce 07`` on a tiny budget."""

import json
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import robot, sim
from course_utils.models import IMAGENET_MEAN, IMAGENET_STD, load_mobilenet_v2
from course_utils.vision import to_input
from tests.test_taught_in_notebooks import notebook_cell_definitions, notebook_function

NOTEBOOK = "07_robot_reaching.ipynb"
MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def lesson_models() -> dict:
    """The lesson's SpatialSoftmax, PooledLinear and scratch_cnn (their forward passes read the global F)."""
    taught = notebook_function(NOTEBOOK, "scratch_cnn")
    taught["F"] = F
    return taught


def same_weights(a: nn.Module, b: nn.Module, atol: float = 0.0) -> bool:
    return all(torch.allclose(x.float(), y.float(), atol=atol, rtol=0)
               for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize("name, make, shape", [("SpatialSoftmax", lambda m: m(32), (3, 32, 12, 12)),
                                               ("PooledLinear", lambda m: m(32), (3, 32, 12, 12)),
                                               ("scratch_cnn", lambda m: m(), (3, 3, 96, 96))])
def test_lesson07_models_match_the_package(name, make, shape):
    torch.manual_seed(0)
    taught = make(lesson_models()[name])
    torch.manual_seed(0)
    packaged = make(getattr(robot, name))
    assert same_weights(taught, packaged)
    x = torch.randn(shape)
    with torch.no_grad():
        assert torch.equal(taught.eval()(x), packaged.eval()(x))


def lesson_loop(y_train: torch.Tensor) -> dict:
    """Lesson 07's training cell (its functions and settings), its globals given as the lesson has them."""
    namespace = {"torch": torch, "nn": nn, "np": np, "F": F, "time": time, "y_train": y_train,
                 "device": torch.device("cpu")}
    return notebook_cell_definitions(NOTEBOOK, "def train_xy(", {"APPROACHES", "EVAL", "models"}, namespace)


def test_lesson07_training_loop_and_predictions_match_the_package():
    rng = torch.Generator().manual_seed(0)
    y_train = torch.rand(48, 2, generator=rng) * 40 - 10
    taught = lesson_loop(y_train)
    assert taught["BATCH"] == 32 and list(taught["EVAL"]) == list(robot.EVAL)
    for approach, (steps, rates) in taught["APPROACHES"].items():  # the lesson's four, at its settings
        assert (robot.APPROACHES[approach].steps, robot.APPROACHES[approach].rates) == (steps, rates)
    targets = (y_train - taught["MEAN"]) / taught["STD"]
    maps = torch.randn(48, 32, 6, 6, generator=rng)
    pixels = torch.randn(48, 3, 24, 24, generator=rng)
    labelled = torch.arange(0, 48, 1)[:40]  # more than a batch: batches of 32

    def two_groups() -> tuple[nn.Module, list[dict]]:  # as fine-tuned block 6: a block, then the head
        model = nn.Sequential(nn.Conv2d(32, 32, 1), robot.SpatialSoftmax(32))
        return model, [{"params": list(model[0].parameters()), "lr": 1e-3},
                       {"params": list(model[1].parameters()), "lr": 3e-3}]

    def scratch() -> tuple[nn.Module, list[dict]]:  # BatchNorm in training mode
        model = robot.scratch_cnn()
        return model, [{"params": list(model.parameters()), "lr": 1e-3}]

    for make, inputs in ((two_groups, lambda idx: maps[idx]), (scratch, lambda idx: pixels[idx])):
        torch.manual_seed(1)
        mine, groups = make()
        taught["train_xy"](mine, groups, 6, inputs, labelled, seed=3)
        torch.manual_seed(1)
        packaged, groups = make()
        robot.train_xy(packaged, groups, 6, inputs, labelled, targets, seed=3)
        assert same_weights(mine, packaged, atol=1e-6)
        torch.manual_seed(1)
        untrained, _ = make()
        assert not same_weights(untrained, packaged, atol=1e-4)  # it did train
        predicted = robot.predict_cm(packaged, inputs, 45, taught["MEAN"], taught["STD"], batch=20)
        assert predicted.shape == (45, 2)
        assert np.allclose(taught["predict_cm"](mine, inputs, 45, batch=20), predicted, atol=1e-5)


def test_lesson07_reach_matches_the_package():
    taught = notebook_function(NOTEBOOK, "reach")
    taught.update(mujoco=sim.mujoco_module(), inverse_kinematics=sim.inverse_kinematics)
    assert taught["TOLERANCE"] == robot.TOLERANCE
    scene = sim.Scene(size=32)
    for target, q0, goal in [((0.12, 0.2), (0.0, 0.0), (0.125, 0.19)), ((-0.15, 0.1), (2.5, -1.0), (-0.15, 0.1))]:
        target, q0, goal = np.array(target), np.array(q0), np.array(goal)
        distance, film = taught["reach"](scene, target, q0, goal, seconds=0.5, film_at=(0.0, 0.5))
        mine, my_film = robot.reach(scene, target, q0, goal, seconds=0.5, film_at=(0.0, 0.5))
        assert distance == mine and len(my_film) == 2 and all(np.array_equal(a, b) for a, b in zip(film, my_film))
    assert robot.reach(scene, target, q0, target)[0] < robot.TOLERANCE  # the true position is reached


def batch_of_one_image(n: int = 8, size: int = 32) -> torch.Tensor:
    """n copies of one random valid image, ImageNet-normalised."""
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    return ((image - MEAN) / STD).expand(n, -1, -1, -1).contiguous()


def drawn_twice(augment, x: torch.Tensor) -> torch.Tensor:
    """``augment(x)`` under torch's seed 0, checked to come out the same, and the same shape, when drawn again."""
    torch.manual_seed(0)
    out = augment(x)
    torch.manual_seed(0)
    assert torch.equal(augment(x), out) and out.shape == x.shape
    return out


def test_random_shift_moves_each_image_by_at_most_4_px_and_is_reproducible():
    x = batch_of_one_image()
    shifted = drawn_twice(robot.random_shift, x)
    assert torch.equal(robot.random_shift(x, generator=torch.Generator().manual_seed(5)),
                       robot.random_shift(x, generator=torch.Generator().manual_seed(5)))
    moves = set()
    for image in shifted:  # the inner part matches the original moved by one (dy, dx) within 4 px
        found = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
                 if torch.equal(image[:, 4:-4, 4:-4], x[0, :, 4 + dy:28 + dy, 4 + dx:28 + dx])]
        assert len(found) == 1
        moves.add(found[0])
    assert len(moves) > 1  # one draw per image, not per batch


def test_colour_jitter_changes_each_image_its_own_way_within_valid_pixels():
    x = batch_of_one_image()
    jittered = drawn_twice(robot.colour_jitter, x)
    pixels = jittered * STD + MEAN
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    assert all(not torch.allclose(jittered[0], image, atol=1e-2) for image in jittered[1:])  # one draw per image
    assert (pixels.mean(dim=(2, 3)).std(0) > 0.05).all()  # strong: every channel's level varies between images
    neutral = robot.colour_jitter(x, brightness=(1, 1), contrast=(1, 1), saturation=(1, 1), hue=0, tint=(1, 1))
    assert torch.allclose(neutral, x, atol=1e-5)


def test_random_shift_and_colour_jitter_keep_training_inputs_fast():
    x = batch_of_one_image(32, 96)
    for augment in (robot.random_shift, robot.colour_jitter):
        augment(x)
        start = time.perf_counter()
        augment(x)
        assert time.perf_counter() - start < 0.5  # ~2 and ~5-10 ms on one free core; a busy machine is slower


def tiny_frames(train: int = 16, evaluate: int = 6) -> dict:
    """Random frames standing in for the simulator's: uint8 images, positions (cm) and starting joints."""
    rng = np.random.default_rng(0)
    return {name: {"images": rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8),
                   "xy_cm": rng.uniform(-20, 20, (n, 2)).astype(np.float32), "q0": np.zeros((n, 2), np.float32)}
            for name, n in [("train", train), *((name, evaluate) for name in robot.EVAL)]}


def test_random_backbone_has_estimated_statistics_no_imagenet_weights_and_is_frozen():
    frames = tiny_frames()["train"]["images"]
    before = torch.get_rng_state()
    blocks = robot.random_backbone(0, frames)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's random state is left alone
    norms = [m for m in blocks.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not blocks.training and not any(p.requires_grad for p in blocks.parameters())
    assert all(not torch.allclose(m.running_mean, torch.zeros_like(m.running_mean)) for m in norms)
    assert all(not torch.allclose(m.running_var, torch.ones_like(m.running_var)) for m in norms)
    imagenet = load_mobilenet_v2().features[:7]
    assert not torch.allclose(blocks[0][0].weight, imagenet[0][0].weight)
    assert same_weights(blocks, robot.random_backbone(0, frames))
    assert not same_weights(blocks, robot.random_backbone(1, frames), atol=1e-3)


def test_every_approach_trains_and_predicts_every_set():
    frames = tiny_frames()
    cpu = torch.device("cpu")
    stores = {**robot.imagenet_stores(frames, cpu), robot.store_name(robot.RANDOM, 0): robot.random_store(0, frames, cpu)}
    assert stores["imagenet 0-6"]["train"].shape == (16, 32, 12, 12)
    random_maps = stores["random 0-6, seed 0"]
    with torch.no_grad():  # the cached maps are the backbone's own
        assert torch.allclose(random_maps["test"], robot.random_backbone(0, frames["train"]["images"])(
            to_input(frames["test"]["images"], 96)), atol=1e-5)
    assert not torch.allclose(random_maps["train"], stores["imagenet 0-6"]["train"], atol=1e-2)
    for approach, setting in robot.APPROACHES.items():
        model, groups = robot.build(approach)
        assert len(groups) == len(setting.rates)
        result = robot.run(approach, 10, 0, frames, stores, cpu, steps=2)
        assert result["seconds"] > 0 and all(np.shape(result[name]) == (6, 2) for name in robot.EVAL)
        if setting.augment is not None:  # seeded, the augmentations' draws too: the same predictions
            assert robot.run(approach, 10, 0, frames, stores, cpu, steps=2)["test"] == result["test"]


def test_lesson07_features_and_runs_match_the_package():
    from course_utils.models import freeze_batchnorm

    frames, cpu = tiny_frames(12, 4), torch.device("cpu")
    taught_features = notebook_function(NOTEBOOK, "features")
    taught_features["device"] = cpu
    backbone = load_mobilenet_v2().features.eval()
    images = frames["test"]["images"]
    assert torch.equal(taught_features["features"](images, backbone[:3], batch=3),
                       robot.features(images, backbone[:3], cpu, batch=3))
    stores = robot.imagenet_stores(frames, cpu)
    y_train = torch.tensor(frames["train"]["xy_cm"])
    taught = lesson_loop(y_train)
    taught.update(lesson_models(), frames=frames, device=cpu, to_input=to_input, freeze_batchnorm=freeze_batchnorm,
                  load_mobilenet_v2=load_mobilenet_v2, blocks_0_5=stores["imagenet 0-5"],
                  blocks_0_6=stores["imagenet 0-6"])
    taught["APPROACHES"] = {a: (2, rates) for a, (_, rates) in taught["APPROACHES"].items()}  # 2 steps each
    for approach in taught["APPROACHES"]:
        mine, packaged = taught["run"](approach, 8, 1), robot.run(approach, 8, 1, frames, stores, cpu, steps=2)
        for name in robot.EVAL:
            assert np.allclose(mine[name], packaged[name], atol=1e-5), (approach, name)


def test_the_full_grid_and_the_summary():
    grid = robot.full_grid()
    assert len(grid) == len(set(grid)) == len(robot.APPROACHES) * (3 * 5 + 3 * 3)
    assert {a for a, _, _ in grid} == set(robot.APPROACHES)
    assert {n: sorted({s for _, b, s in grid if b == n}) for n in (10, 50, 100, 1600)} == {
        10: [0, 1, 2, 3, 4], 50: [0, 1, 2, 3, 4], 100: [0, 1, 2], 1600: [0, 1, 2]}
    rows = [{"approach": "scratch", "labels": 10, "seed": s, "seconds": 1.0, "test_cm": cm, "new_colours_cm": 2 * cm,
             "dim_light_cm": 3.0, "success": 0.5, "within_2cm": 0.25, "new_colours_within_2cm": 0.1,
             "dim_light_within_2cm": 0.0} for s, cm in enumerate([1.0, 2.0, 6.0])]
    table = robot.summary(rows)
    row = table.loc[("scratch", 10)]
    assert row["runs"] == 3 and row["test_cm"] == pytest.approx(3.0)
    assert row["test_cm_std"] == pytest.approx(np.std([1.0, 2.0, 6.0], ddof=1))
    assert row["new_colours_cm"] == pytest.approx(6.0) and row["dim_light_cm_std"] == 0


def test_reproduce_07_tiny_writes_the_table_and_reads_runs_back(tmp_path, capsys):
    out = tmp_path / "07.json"
    report = robot.reproduce(out, tiny=True)
    saved = json.loads(out.read_text())
    assert {"date", "machine", "device", "versions", "wall_seconds", "plan", "rows"} <= saved.keys()
    assert saved["versions"]["torch"] and saved["versions"]["mujoco"] and saved["wall_seconds"] > 0
    assert [(r["approach"], r["labels"], r["seed"]) for r in saved["rows"]] == robot.TINY_GRID
    for row in saved["rows"]:
        assert {"seconds", "test_cm", "new_colours_cm", "dim_light_cm", "success", "within_2cm",
                "new_colours_within_2cm", "dim_light_within_2cm"} <= row.keys()
        assert 0 <= row["success"] <= 1 and 0 <= row["within_2cm"] <= 1 and row["test_cm"] > 0
    assert "min left" in capsys.readouterr().out
    again = robot.reproduce(tmp_path / "again.json", tiny=True)  # every run read back: the same numbers
    assert [(r["test_cm"], r["seconds"], r["success"]) for r in again["rows"]] == [
        (r["test_cm"], r["seconds"], r["success"]) for r in report["rows"]]


def test_reproduce_07_takes_the_cli_flags_of_reproduce_04():
    from course_utils import cli
    from course_utils.errors import SettingError

    args = cli.build_parser().parse_args(["reproduce", "07", "--tiny"])
    assert args.lesson == "07" and args.tiny
    cli.check_reproduce_flags(args)
    with pytest.raises(SettingError, match="are for `reproduce paper`"):
        cli.check_reproduce_flags(cli.build_parser().parse_args(["reproduce", "07", "--commit"]))


def test_the_committed_table_covers_the_full_grid_at_todays_settings():
    """Lesson 07 reads the committed table: it must hold every run of the grid, each approach at its current settings."""
    report = robot.load()
    assert sorted((r["approach"], r["labels"], r["seed"]) for r in report["rows"]) == sorted(robot.full_grid())
    assert report["plan"]["approaches"] == {a: json.loads(json.dumps(robot._setting(a))) for a in robot.APPROACHES}
    assert report["plan"]["tiny"] is False and report["plan"]["reaches"] == 100


def test_lesson07_servo_and_estimator_match_the_package():
    taught = notebook_function(NOTEBOOK, "servo")
    taught.update(mujoco=sim.mujoco_module(), inverse_kinematics=sim.inverse_kinematics)
    scene = sim.Scene(size=32)
    target, q0 = np.array([0.12, 0.2]), np.array([0.0, 0.0])
    for every, moved in [(None, None), (0.1, None), (0.1, (0.15, np.array([-0.1, 0.25])))]:
        looks = iter(np.linspace([0.1, 0.21], [0.125, 0.19], 20))  # the estimates drift, look by look
        mine = taught["servo"](scene, lambda frame: next(looks), target, q0, every, 0.4, moved, (0.0, 0.4))
        looks = iter(np.linspace([0.1, 0.21], [0.125, 0.19], 20))
        packaged = robot.servo(scene, lambda frame: next(looks), target, q0, every, 0.4, moved, (0.0, 0.4))
        assert mine[0] == packaged[0] and len(mine[1]) == len(packaged[1]) == (1 if every is None else 4)
        assert all(np.array_equal(a, b) for a, b in zip(mine[2], packaged[2]))
    goal = np.array([0.125, 0.19])
    open_loop = robot.servo(scene, lambda frame: goal, target, q0, None)[0]
    assert open_loop == robot.reach(scene, target, q0, goal)[0]  # looking once is the open loop of ``reach``
    moved = (0.3, np.array([-0.1, 0.25]))
    assert robot.servo(scene, lambda frame: scene.data.mocap_pos[scene.mocap][:2].copy(), target, q0,
                       0.1, moved=moved)[0] < robot.TOLERANCE  # perfect looks follow a moved cube
    assert robot.servo(scene, lambda frame: target, target, q0, None, moved=moved)[0] > 0.1  # one look does not


def test_lesson07_estimator_matches_the_package_and_leaves_the_model_as_it_was():
    taught = notebook_function(NOTEBOOK, "estimator")
    torch.manual_seed(0)
    model = robot.scratch_cnn().train()
    mean, std = torch.tensor([1.0, 20.0]), torch.tensor([10.0, 8.0])
    taught.update(models={("scratch", 5, 0): model}, backbone=load_mobilenet_v2().features.eval(), to_input=to_input, device=torch.device("cpu"),
                  MEAN=mean, STD=std, nn=nn, torch=torch)
    frame = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    packaged = robot.estimator(model, lambda images: to_input(images, 96), mean, std)
    assert model.training and packaged(frame).shape == (2,)
    assert model.training  # the package's estimator puts the caller's model back in training mode
    assert np.allclose(taught["estimator"]("scratch", 5, 0)(frame), packaged(frame), atol=1e-6)


def test_lesson07_loops_match_the_package():
    taught = notebook_function(NOTEBOOK, "loops")
    assert (taught["LOOPS"], taught["MOVE_AT"], taught["N_LOOP"]) == (robot.LOOPS, robot.MOVE_AT, robot.LOOP_SCENES)
    test = sim.frame_set(3, seed=robot.TEST_SEED)
    scene = sim.Scene(size=robot.SIZE)
    targets = test["xy_cm"] / 100
    moved_to = robot.moved_targets(scene, targets)
    assert all(np.linalg.norm(moved_to - targets, axis=1) >= 0.10)

    def estimate(frame: np.ndarray) -> np.ndarray:  # an estimate that depends on the frame
        return np.array([0.05 + frame.mean() / 2000, 0.2])

    taught.update(estimator=lambda approach, n, seed: estimate, scene=scene, frames={"test": test}, targets=targets,
                  starts=test["q0"], moved_to=moved_to, servo=robot.servo, sim=sim, N_LOOP=3)
    mine = taught["loops"]("scratch", 25, 0)
    assert mine == robot.loops(scene, estimate, test, moved_to, 3)
    assert all(len(mine[name]) == 3 for name in robot.LOOPS) and len(mine["looks"]) == 3 * 5  # 5 looks in 1 s
    with pytest.raises(ValueError, match="does not render as its frame"):
        robot.loops(scene, estimate, sim.frame_set(3, seed=2), moved_to, 3)


def test_reproduce_07_loop_tiny_writes_the_table(tmp_path):
    out = tmp_path / "07-loop.json"
    robot.reproduce_loops(out, tiny=True)
    saved = json.loads(out.read_text())
    assert [(r["approach"], r["labels"], r["seed"]) for r in saved["rows"]] == robot.TINY_LOOP_GRID
    for row in saved["rows"]:
        assert {"open", "closed", "open-moved", "closed-moved", "near_within_2cm", "far_within_2cm"} <= row.keys()
        assert all(0 <= row[k] <= 1 for k in ("open", "closed", "open-moved", "closed-moved"))
    assert saved["plan"]["scenes"] == robot.TINY_LOOP_SCENES and saved["plan"]["move_at_s"] == robot.MOVE_AT
