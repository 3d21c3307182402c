"""The robot lesson's simulator plumbing: loading a MuJoCo scene, rendering without a display, cached frame sets.

Introduced in ``07_robot_reaching.ipynb``. The scene (``course_utils/scenes/reach.xml``) is a planar two-link
arm on a table, a cube it must reach, and a fixed camera. Frames render offscreen through EGL (Mesa's software
rasteriser on a machine without a GPU); shadows, reflections and the skybox are off, which makes a 96 px frame
about ten times cheaper (about 4 ms instead of 85 ms on 2 cores).
"""

from __future__ import annotations

import colorsys
import ctypes
import hashlib
import importlib.util
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from course_utils.data import cache_key, cached_array
from course_utils.errors import SimError

SCENE = Path(__file__).parent / "scenes" / "reach.xml"
L1, L2 = 0.18, 0.16  # link lengths (m), as in the scene file
R_MIN, R_MAX = 0.10, 0.30  # where the cube is placed: an annulus in front of the arm (m) ...
ANGLE_MIN, ANGLE_MAX = np.deg2rad(15), np.deg2rad(165)  # ... between these angles
GL_FIX = ("Fix: on Debian/Ubuntu `sudo apt-get install libegl1 libgl1-mesa-dri` (`make gl` does it); "
          "on a Mac or Windows unset MUJOCO_GL.")
# What MUJOCO_GL may name on each system, and how to get a backend it names that is missing.
GL_BACKENDS = {"linux": "egl (the default), glfw or osmesa", "darwin": "glfw or cgl", "win32": "glfw or wgl"}
GL_INSTALL = {"osmesa": ("OSMesa", "install it (`sudo apt-get install libosmesa6`)"),
              "glfw": ("GLFW", "give it a display (a desktop session, or `xvfb-run`)"),
              "glx": ("GLX", "give it a display (a desktop session, or `xvfb-run`)")}
# What MuJoCo's OpenGL bindings raise when a backend cannot load or start; anything else keeps its own error.
GL_ERRORS = (ImportError, OSError, RuntimeError, AttributeError, ctypes.ArgumentError)
# The named parts of the scene that the lesson's code uses, and the model's count of each kind.
SCENE_NAMES = {"camera": ("ncam", ["cam"]), "light": ("nlight", ["key"]),
               "material": ("nmat", ["object", "table", "arm"]), "body": ("nbody", ["target"])}


def _one_line(exc: BaseException) -> str:
    """An exception's whole message on one line (MuJoCo puts the line number of an XML error on the second)."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__


def _from_opengl(exc: BaseException) -> bool:
    """True when an error came from MuJoCo's OpenGL bindings, not (say) a broken numpy under MuJoCo."""
    text = str(exc).lower()
    if any(word in text for word in ("mujoco_gl", "opengl", "egl", "osmesa", "glfw", "libgl", "display")):
        return True
    files = [Path(frame.filename) for frame in traceback.extract_tb(exc.__traceback__)]
    return any({"OpenGL", "egl", "osmesa", "glfw", "cgl"} & set(f.parts) or f.name == "gl_context.py" for f in files)


def _gl_error(message: str) -> SimError:
    """The one line for an OpenGL that could not start, with the fix for its cause (MUJOCO_GL's value, a backend)."""
    chosen = os.environ.get("MUJOCO_GL", "")
    if "invalid value" in message.lower() and "mujoco_gl" in message.lower():
        valid = next((v for k, v in GL_BACKENDS.items() if sys.platform.startswith(k)), "glfw")
        return SimError(f"MUJOCO_GL={chosen} is invalid: the valid values are {valid}. Fix: unset MUJOCO_GL "
                        "or set it to one of those.")
    platform = os.environ.get("PYOPENGL_PLATFORM", "")
    if platform and chosen.lower() in ("", "egl", "osmesa") and platform.lower() != (chosen.lower() or "egl"):
        return SimError(f"PYOPENGL_PLATFORM={platform} contradicts MUJOCO_GL={chosen or 'unset'} ({message}). Fix: "
                        "unset PYOPENGL_PLATFORM (MuJoCo sets it to match MUJOCO_GL).")
    if chosen.lower() in ("", "egl"):  # the course's default on Linux: EGL's libraries are missing
        return SimError(f"No OpenGL to render with (MUJOCO_GL={chosen or 'unset'}: {message}). " + GL_FIX)
    if chosen.lower() not in GL_INSTALL:  # a value MuJoCo accepts, such as "disable", that renders nothing
        return SimError(f"MUJOCO_GL={chosen} leaves MuJoCo no OpenGL to render with ({message}). Fix: unset "
                        "MUJOCO_GL (EGL is the course's default).")
    name, install = GL_INSTALL[chosen.lower()]
    return SimError(f"MUJOCO_GL={chosen} asks for {name}, which could not start ({message}). Fix: unset MUJOCO_GL "
                    f"(EGL is the course's default) or {install}.")


def mujoco_module():
    """Import MuJoCo, rendering through EGL on Linux unless MUJOCO_GL says otherwise."""
    if sys.platform.startswith("linux") and not os.environ.get("MUJOCO_GL"):
        os.environ["MUJOCO_GL"] = "egl"  # offscreen, no display needed (Colab and Binder too); empty counts as unset
    if importlib.util.find_spec("triton") is not None:
        # Triton (torch's compiler, which torchvision imports) and Mesa's software OpenGL each carry their own LLVM:
        # importing Triton after an OpenGL context exists crashed the process. Imported first, both work.
        import triton  # noqa: F401
    try:
        import mujoco
    except ModuleNotFoundError as exc:
        if exc.name == "mujoco":
            raise SimError("MuJoCo is not installed: `pip install mujoco` (or `make install`).") from None
        raise
    except GL_ERRORS as exc:  # MuJoCo loads its OpenGL backend (MUJOCO_GL) while it is imported
        if _from_opengl(exc):
            raise _gl_error(f"{type(exc).__name__}: {_one_line(exc)}") from None
        raise SimError(f"MuJoCo could not be imported (MUJOCO_GL={os.environ.get('MUJOCO_GL')}: "
                       f"{type(exc).__name__}: {_one_line(exc)}).") from None
    return mujoco


def load_scene(path: str | Path = SCENE):
    """The MuJoCo model and data of a scene file; a missing or broken file stops with one line."""
    path = Path(path)
    if not path.is_file():
        raise SimError(f"No scene file at {path}: check the path (the course's scene is {SCENE}).")
    mujoco = mujoco_module()
    try:
        model = mujoco.MjModel.from_xml_path(str(path))
    except ValueError as exc:
        raise SimError(f"{path.name} is not a valid MuJoCo scene: {_one_line(exc)}") from None
    return model, mujoco.MjData(model)


def check_scene(model, path: str | Path = SCENE) -> None:
    """Stop with one line unless the scene has the camera, light, materials and cube the lesson's code names."""
    for kind, (count, names) in SCENE_NAMES.items():
        have = [getattr(model, kind)(i).name for i in range(getattr(model, count))]
        for name in names:
            if name not in have:
                raise SimError(f"{Path(path).name} has no {kind} named {name!r} (its {kind}s: "
                               f"{', '.join(repr(n) for n in have if n) or 'none named'}); the lesson needs it. Fix: "
                               f"add it, as {SCENE.name} in course_utils/scenes does.")


def make_renderer(model, size: int = 96):
    """An offscreen renderer of ``size`` x ``size`` frames; where no OpenGL can start, one line says what to install."""
    mujoco = mujoco_module()
    with warnings.catch_warnings(record=True) as caught:  # GLFW says why it failed in warnings, not in its error
        warnings.simplefilter("always")
        try:
            renderer = mujoco.Renderer(model, size, size)
        except ValueError as exc:  # a frame larger than the scene's framebuffer: MuJoCo's message says what to change
            raise SimError(f"Cannot render {size} x {size} px frames: {_one_line(exc)}") from None
        except (mujoco.FatalError, *GL_ERRORS) as exc:  # EGL, GLFW and OSMesa each fail their own way
            raise _gl_error("; ".join([*(str(w.message) for w in caught[:1]), _one_line(exc)])) from None
    for w in caught:  # a renderer that started: its warnings go on as usual
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return renderer


def render(renderer, data, camera: str = "cam"):
    """One RGB frame (H, W, 3) uint8 from ``camera``, without shadows, reflections or skybox (the course's scene
    has none; a scene that has them is drawn without)."""
    mujoco = mujoco_module()
    try:
        renderer.update_scene(data, camera)
    except ValueError as exc:  # a camera the scene does not have
        raise SimError(f"Cannot render from camera {camera!r}: {_one_line(exc)} Fix: name a camera of the scene.") from None
    for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_SKYBOX):
        renderer.scene.flags[flag] = False
    return renderer.render()


def forward_kinematics(q: np.ndarray) -> np.ndarray:
    """Where the gripper is (x, y in m) for joint angles ``q`` (rad)."""
    return np.array([L1 * np.cos(q[0]) + L2 * np.cos(q[0] + q[1]), L1 * np.sin(q[0]) + L2 * np.sin(q[0] + q[1])])


def inverse_kinematics(xy: np.ndarray) -> np.ndarray:
    """Joint angles (rad) that put the gripper at ``xy`` (m), elbow bent clockwise (q2 <= 0); clipped to the reach.

    Introduced in ``07_robot_reaching.ipynb``."""
    x, y = xy
    r2 = np.clip(x * x + y * y, (L1 - L2) ** 2 + 1e-9, (L1 + L2) ** 2 - 1e-9)
    q2 = -np.arccos(np.clip((r2 - L1**2 - L2**2) / (2 * L1 * L2), -1, 1))  # the law of cosines
    q1 = np.arctan2(y, x) - np.arctan2(L2 * np.sin(q2), L1 + L2 * np.cos(q2))
    return np.array([q1, q2])


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Distance from point ``p`` to the segment ``ab``."""
    ab = b - a
    t = np.clip(np.dot(p - a, ab) / (np.dot(ab, ab) + 1e-12), 0, 1)
    return float(np.linalg.norm(p - (a + t * ab)))


class Scene:
    """The reach scene with a renderer: randomised looks, a cube and an arm pose per frame."""

    def __init__(self, size: int = 96, path: str | Path = SCENE):
        self.model, self.data = load_scene(path)
        check_scene(self.model, path)
        self.renderer = make_renderer(self.model, size)
        m = self.model
        self.camera, self.light = m.camera("cam").id, m.light("key").id
        self.camera_pos = m.cam_pos[self.camera].copy()
        self.materials = {name: m.material(name).id for name in ("object", "table", "arm")}
        self.mocap = m.body("target").mocapid[0]

    def randomise(self, rng: np.random.Generator, shift: str | None = None) -> None:
        """New looks for one frame: object hue, table tint and checker size, arm grey, light, camera jitter.
        ``shift="colour"`` draws object hues training never sees; ``shift="light"`` a dim, tinted light."""
        m, mat = self.model, self.materials
        hue = rng.uniform(0.58, 0.92) if shift == "colour" else rng.uniform(0.0, 0.5)  # training: red to cyan
        m.mat_rgba[mat["object"], :3] = colorsys.hsv_to_rgb(hue, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))
        m.mat_rgba[mat["table"], :3] = colorsys.hsv_to_rgb(rng.uniform(0.05, 0.15), rng.uniform(0.0, 0.5),
                                                           rng.uniform(0.35, 0.8))
        m.mat_texrepeat[mat["table"]] = rng.uniform(3, 10)
        m.mat_rgba[mat["arm"], :3] = rng.uniform(0.25, 0.55) + rng.uniform(-0.05, 0.05, 3)
        m.light_pos[self.light] = [rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.5), rng.uniform(0.8, 1.4)]
        m.light_dir[self.light] = -m.light_pos[self.light] / np.linalg.norm(m.light_pos[self.light])
        if shift == "light":
            tint = np.array(colorsys.hsv_to_rgb(rng.uniform(0, 1), 0.8, 1.0))
            m.light_diffuse[self.light] = rng.uniform(0.2, 0.4) * tint
            m.vis.headlight.diffuse[:] = m.vis.headlight.ambient[:] = 0.05
        else:
            m.light_diffuse[self.light] = rng.uniform(0.45, 1.0) * (1 + rng.uniform(-0.1, 0.1, 3))
            m.vis.headlight.diffuse[:] = rng.uniform(0.15, 0.35)
            m.vis.headlight.ambient[:] = rng.uniform(0.1, 0.2)
        m.cam_pos[self.camera] = self.camera_pos + rng.uniform(-0.01, 0.01, 3)  # the camera is bumped by up to 1 cm

    def sample_target(self, rng: np.random.Generator) -> np.ndarray:
        """A cube position (m), uniform over the annulus's area."""
        r, angle = np.sqrt(rng.uniform(R_MIN**2, R_MAX**2)), rng.uniform(ANGLE_MIN, ANGLE_MAX)
        return np.array([r * np.cos(angle), r * np.sin(angle)])

    def sample_arm(self, rng: np.random.Generator, target: np.ndarray) -> np.ndarray:
        """A random arm pose (a distractor in the image) at least 5 cm from the cube, seen from the camera too."""
        for _ in range(200):
            q = np.array([rng.uniform(-0.3, np.pi + 0.3), rng.uniform(-2.6, 2.6)])
            if self.arm_distance(target, q) > 0.05:
                break
        return q

    def arm_distance(self, point: np.ndarray, q: np.ndarray) -> float:
        """How close the arm at joints ``q`` comes to ``point`` on the table (m), in the plane and as the camera sees
        it (the links, 7 cm up, projected to the cube's height)."""
        cam = self.camera_pos
        scale = (cam[2] - 0.015) / (cam[2] - 0.07)
        points = [np.zeros(2), np.array([L1 * np.cos(q[0]), L1 * np.sin(q[0])]), forward_kinematics(q)]
        seen = [cam[:2] + (p - cam[:2]) * scale for p in points]
        return min(_segment_distance(point, a, b) for pts in (points, seen) for a, b in zip(pts[:-1], pts[1:]))

    def place(self, target: np.ndarray, q: np.ndarray) -> None:
        """Put the cube at ``target`` (m) and the arm at rest at ``q``, holding it there."""
        mujoco = mujoco_module()
        self.data.mocap_pos[self.mocap] = [target[0], target[1], 0.015]
        self.data.qpos[:], self.data.qvel[:], self.data.ctrl[:] = q, 0, q
        mujoco.mj_forward(self.model, self.data)

    def frame(self) -> np.ndarray:
        """The camera's view now."""
        return render(self.renderer, self.data)


def scenes(scene: Scene, n: int, seed: int, shift: str | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Set ``scene`` up as each of ``frame_set(n, seed, shift)``'s frames in turn (looks, cube, arm at rest) and
    yield the cube's (x, y) (m) and the arm's joints: a frame's scene again, to act in it."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        scene.randomise(rng, shift)
        target = scene.sample_target(rng)
        q = scene.sample_arm(rng, target)
        scene.place(target, q)
        yield target, q


def frame_set(n: int, seed: int, shift: str | None = None, size: int = 96) -> dict[str, np.ndarray]:
    """``n`` randomised frames (uint8), the cube's (x, y) in cm and the arm's starting joints, cached under
    data/sim/ and keyed by the settings, the scene file and this module's code."""
    key = cache_key(hashlib.sha256(SCENE.read_bytes() + Path(__file__).read_bytes()).hexdigest(), n, seed, shift, size)
    made = {}

    def make() -> tuple[np.ndarray, np.ndarray]:
        if not made:
            scene = Scene(size)
            images, meta = np.zeros((n, size, size, 3), np.uint8), np.zeros((n, 4), np.float32)
            for i, (target, q) in enumerate(scenes(scene, n, seed, shift)):
                images[i], meta[i] = scene.frame(), [*(target * 100), *q]
            made["result"] = images, meta
        return made["result"]

    name = f"frames-{shift or 'plain'}"
    images = cached_array("sim", f"{name}-images", key, lambda: make()[0])
    meta = cached_array("sim", f"{name}-meta", key, lambda: make()[1])
    return {"images": images, "xy_cm": meta[:, :2], "q0": meta[:, 2:]}
