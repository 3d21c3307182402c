"""The robot lesson's simulator plumbing: scene loading, rendering, inverse kinematics, cached frame sets."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from course_utils import sim


@pytest.mark.parametrize("xy", [(0.3, 0.0), (0.0, 0.25), (-0.2, 0.1), (0.1, 0.3), (0.05, 0.05)])
def test_inverse_kinematics_reaches_known_points(xy):
    q = sim.inverse_kinematics(np.array(xy))
    assert np.allclose(sim.forward_kinematics(q), xy, atol=1e-9) and q[1] <= 0


def test_position_actuators_take_the_gripper_to_the_ik_target():
    scene = sim.Scene(size=32)
    target = np.array([0.12, 0.2])
    scene.place(target, np.array([0.0, 0.0]))
    scene.data.ctrl[:] = sim.inverse_kinematics(target)
    mujoco = sim.mujoco_module()
    for _ in range(int(1.0 / scene.model.opt.timestep)):
        mujoco.mj_step(scene.model, scene.data)
    tip = scene.data.site("tip").xpos[:2]
    assert np.linalg.norm(tip - target) < 0.002  # within 2 mm after one simulated second


def test_frames_have_the_expected_shape_differ_between_seeds_and_come_back_from_the_cache():
    a, b = sim.frame_set(4, seed=0, size=48), sim.frame_set(4, seed=1, size=48)
    assert a["images"].shape == (4, 48, 48, 3) and a["images"].dtype == np.uint8
    assert a["xy_cm"].shape == (4, 2) and np.all(np.hypot(*a["xy_cm"].T) <= sim.R_MAX * 100 + 1e-3)
    assert not np.array_equal(a["images"], b["images"]) and a["images"].std() > 10
    again = sim.frame_set(4, seed=0, size=48)
    assert np.array_equal(again["images"], a["images"]) and np.array_equal(again["xy_cm"], a["xy_cm"])


def test_a_bad_scene_path_says_so_in_one_line(tmp_path):
    with pytest.raises(sim.SimError, match="No scene file at .*reach.xlm: check the path"):
        sim.load_scene(tmp_path / "reach.xlm")
    (tmp_path / "broken.xml").write_text("<mujoco><worldbody><geom type='nonsense'/></worldbody></mujoco>")
    with pytest.raises(sim.SimError, match="broken.xml is not a valid MuJoCo scene"):
        sim.load_scene(tmp_path / "broken.xml")


def test_missing_opengl_gives_one_clear_line():
    # OSMesa is not installed here, so asking for it stands in for a machine without OpenGL.
    code = "from course_utils import sim\ntry:\n    sim.Scene()\nexcept sim.SimError as e:\n    print(e)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"})
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and "libegl1 libgl1-mesa-dri" in lines[0], done.stdout + done.stderr


def test_torch_after_rendering_does_not_crash():
    # Triton and Mesa's OpenGL each bring an LLVM; in this order (render, then torchvision) the process once crashed.
    code = ("from course_utils import sim\nsim.Scene(size=32).frame()\nimport torch\n"
            "from course_utils.models import load_mobilenet_v2\nprint(load_mobilenet_v2().features[:2](torch.zeros(1, 3, 32, 32)).shape)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0 and "torch.Size([1, 16, 16, 16])" in done.stdout, done.stderr[-2000:]
