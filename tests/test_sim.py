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


def test_scenes_sets_up_each_frame_of_a_set_again():
    frames = sim.frame_set(5, seed=3, shift="light", size=48)
    scene = sim.Scene(size=48)
    for i, (target, q) in enumerate(sim.scenes(scene, 5, seed=3, shift="light")):
        assert np.array_equal(scene.frame(), frames["images"][i])  # the same looks, cube and arm: the same pixels
        assert np.allclose(100 * target, frames["xy_cm"][i], atol=1e-4) and np.allclose(q, frames["q0"][i], atol=1e-6)
        assert scene.arm_distance(target, q) > 0.05  # as every frame was drawn: the arm 5 cm or more from the cube
    tip = sim.forward_kinematics(q)
    assert scene.arm_distance(tip, q) < 1e-9  # the gripper lies on the arm


def test_a_bad_scene_path_says_so_in_one_line(tmp_path):
    with pytest.raises(sim.SimError, match="No scene file at .*reach.xlm: check the path"):
        sim.load_scene(tmp_path / "reach.xlm")
    (tmp_path / "broken.xml").write_text("<mujoco><worldbody><geom type='nonsense'/></worldbody></mujoco>")
    with pytest.raises(sim.SimError, match="broken.xml is not a valid MuJoCo scene"):
        sim.load_scene(tmp_path / "broken.xml")


def test_a_scene_that_does_not_parse_keeps_mujocos_line_number(tmp_path):
    (tmp_path / "typo.xml").write_text("<mujoco>\n  <worldbody>\n    <geom type='nonsense'/>\n  </worldbody>\n</mujoco>\n")
    (tmp_path / "unclosed.xml").write_text("<mujoco>\n  <worldbody>\n    <geom size='0.1'>\n  </worldbody>\n")
    for name, says in (("typo.xml", "line 3"), ("unclosed.xml", "Line number=3")):
        with pytest.raises(sim.SimError) as caught:
            sim.load_scene(tmp_path / name)
        assert says in str(caught.value) and "\n" not in str(caught.value)


def test_a_scene_without_the_lessons_camera_is_one_line_not_a_key_error(tmp_path):
    scene = tmp_path / "reach.xml"
    scene.write_text(sim.SCENE.read_text().replace('camera name="cam"', 'camera name="overhead"'))
    with pytest.raises(sim.SimError, match=r"reach.xml has no camera named 'cam' \(its cameras: 'overhead'\)"):
        sim.Scene(size=32, path=scene)
    model, data = sim.load_scene(sim.SCENE)
    with pytest.raises(sim.SimError, match="Cannot render from camera 'top'"):
        sim.render(sim.make_renderer(model, 32), data, camera="top")


def test_a_frame_larger_than_the_framebuffer_is_not_blamed_on_opengl():
    model, _ = sim.load_scene(sim.SCENE)
    with pytest.raises(sim.SimError, match="framebuffer width") as caught:
        sim.make_renderer(model, 5000)
    assert "libegl1" not in str(caught.value) and "\n" not in str(caught.value)


# MuJoCo reads MUJOCO_GL when it is imported: each case runs in a fresh process with its environment.
NO_EGL = """
from OpenGL.platform import ctypesloader  # as on a machine without libEGL: no OpenGL library loads
real = ctypesloader.loadLibrary
def missing(dll, name, *args, **kwargs):
    if "GL" in name:
        raise OSError(f"lib{name}.so: cannot open shared object file: No such file or directory")
    return real(dll, name, *args, **kwargs)
ctypesloader.loadLibrary = missing
"""


def sim_error_line(env: dict[str, str | None], before: str = "") -> str:
    """The one line a fresh process prints when ``sim.Scene()`` fails under ``env`` (None: unset)."""
    code = before + "from course_utils import sim\ntry:\n    sim.Scene(size=32)\nexcept sim.SimError as e:\n    print(e)\n"
    environ = {k: v for k, v in os.environ.items() if k not in env} | {k: v for k, v in env.items() if v is not None}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env=environ)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr and "Warning" not in done.stderr, done.stdout + done.stderr
    return lines[0]


def test_missing_egl_libraries_say_what_to_install():
    line = sim_error_line({"MUJOCO_GL": None, "PYOPENGL_PLATFORM": "egl"}, before=NO_EGL)
    assert "libegl1 libgl1-mesa-dri" in line and "MUJOCO_GL=egl" in line


def test_a_missing_backend_named_in_mujoco_gl_says_unset_it_or_install_it():
    # OSMesa is not installed here.
    line = sim_error_line({"MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"})
    assert line.startswith("MUJOCO_GL=osmesa asks for OSMesa, which could not start")
    assert "unset MUJOCO_GL (EGL is the course's default)" in line and "libosmesa6" in line and "libegl1" not in line


def test_glfw_without_a_display_says_so():
    line = sim_error_line({"MUJOCO_GL": "glfw", "DISPLAY": None, "WAYLAND_DISPLAY": None})
    assert "asks for GLFW" in line and "DISPLAY environment variable is missing" in line
    assert "unset MUJOCO_GL" in line and "give it a display" in line


def test_an_invalid_mujoco_gl_lists_the_valid_values():
    line = sim_error_line({"MUJOCO_GL": "opengl"})
    assert line == ("MUJOCO_GL=opengl is invalid: the valid values are egl (the default), glfw or osmesa. "
                    "Fix: unset MUJOCO_GL or set it to one of those.")


def test_a_pyopengl_platform_that_contradicts_mujoco_gl_says_to_unset_it():
    line = sim_error_line({"MUJOCO_GL": None, "PYOPENGL_PLATFORM": "osmesa"})
    assert "PYOPENGL_PLATFORM=osmesa contradicts MUJOCO_GL=egl" in line and "unset PYOPENGL_PLATFORM" in line


def test_an_empty_mujoco_gl_renders_with_egl_like_an_unset_one():
    code = "from course_utils import sim\nprint(sim.Scene(size=32).frame().shape)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "MUJOCO_GL": ""})
    assert done.stdout.strip() == "(32, 32, 3)", done.stderr[-2000:]


def test_torch_after_rendering_does_not_crash():
    # Triton and Mesa's OpenGL each bring an LLVM; in this order (render, then torchvision) the process once crashed.
    code = ("from course_utils import sim\nsim.Scene(size=32).frame()\nimport torch\n"
            "from course_utils.models import load_mobilenet_v2\nprint(load_mobilenet_v2().features[:2](torch.zeros(1, 3, 32, 32)).shape)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0 and "torch.Size([1, 16, 16, 16])" in done.stdout, done.stderr[-2000:]
