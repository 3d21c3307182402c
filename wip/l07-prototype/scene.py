"""Scene, randomisation, rendering, IK and closed-loop control for the reaching lesson prototype."""
import os, colorsys, time
os.environ.setdefault("MUJOCO_GL", "egl")
import mujoco
import numpy as np

XML = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reach.xml")
L1, L2 = 0.18, 0.16
R_MIN, R_MAX = 0.10, 0.30          # target annulus (m), arm reach 0.02..0.34
ANG_MIN, ANG_MAX = np.deg2rad(15), np.deg2rad(165)
FLAGS_OFF = (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_SKYBOX)


class Scene:
    def __init__(self, size=96):
        self.m = mujoco.MjModel.from_xml_path(XML)
        self.d = mujoco.MjData(self.m)
        self.size = size
        self.r = mujoco.Renderer(self.m, size, size)
        m = self.m
        self.cam = m.camera("cam").id
        self.cam_pos0 = m.cam_pos[self.cam].copy()
        self.light = m.light("key").id
        self.mat_obj, self.mat_table, self.mat_arm = (m.material(n).id for n in ("object", "table", "arm"))
        self.mocap = m.body("target").mocapid[0]
        self.tip = m.site("tip").id

    # ---------- randomisation ----------
    def randomise(self, rng, shift=None):
        """Per-frame appearance. shift: None (training range), 'colour' (object hues never seen), 'light' (dim, coloured)."""
        m = self.m
        # object colour: training hues red..cyan [0, 0.5); shift: blue..magenta [0.58, 0.92]
        h = rng.uniform(0.58, 0.92) if shift == "colour" else rng.uniform(0.0, 0.5)
        m.mat_rgba[self.mat_obj, :3] = colorsys.hsv_to_rgb(h, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))
        # table: low-saturation brown/grey, random checker scale
        m.mat_rgba[self.mat_table, :3] = colorsys.hsv_to_rgb(rng.uniform(0.05, 0.15), rng.uniform(0.0, 0.5), rng.uniform(0.35, 0.8))
        m.mat_texrepeat[self.mat_table] = rng.uniform(3, 10)
        m.mat_rgba[self.mat_arm, :3] = rng.uniform(0.25, 0.55) + rng.uniform(-0.05, 0.05, 3)
        # light: position and intensity (whitish in training)
        m.light_pos[self.light] = [rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.5), rng.uniform(0.8, 1.4)]
        m.light_dir[self.light] = -m.light_pos[self.light] / np.linalg.norm(m.light_pos[self.light])
        if shift == "light":
            tint = np.array(colorsys.hsv_to_rgb(rng.uniform(0, 1), 0.8, 1.0))
            m.light_diffuse[self.light] = rng.uniform(0.2, 0.4) * tint
            m.vis.headlight.diffuse[:] = 0.05
            m.vis.headlight.ambient[:] = 0.05
        else:
            m.light_diffuse[self.light] = rng.uniform(0.45, 1.0) * (1 + rng.uniform(-0.1, 0.1, 3))
            m.vis.headlight.diffuse[:] = rng.uniform(0.15, 0.35)
            m.vis.headlight.ambient[:] = rng.uniform(0.1, 0.2)
        m.cam_pos[self.cam] = self.cam_pos0 + rng.uniform(-0.01, 0.01, 3)   # +-1 cm camera jitter

    def sample_target(self, rng):
        r = np.sqrt(rng.uniform(R_MIN**2, R_MAX**2))        # uniform over the annulus area
        a = rng.uniform(ANG_MIN, ANG_MAX)
        return np.array([r * np.cos(a), r * np.sin(a)])

    def sample_arm(self, rng, target):
        """Random arm pose (a distractor) that does not cover the object, also not along the camera ray."""
        cam = self.cam_pos0
        for _ in range(200):
            q = np.array([rng.uniform(-0.3, np.pi + 0.3), rng.uniform(-2.6, 2.6)])
            e = np.array([L1 * np.cos(q[0]), L1 * np.sin(q[0])])
            t = fk(q)
            pts = [np.zeros(2), e, t]
            # where the arm (z=0.07) projects onto the object's height along rays from the camera
            s = (cam[2] - 0.015) / (cam[2] - 0.07)
            proj = [cam[:2] + (p - cam[:2]) * s for p in pts]
            if min(seg_dist(target, a, b) for P in (pts, proj) for a, b in zip(P[:-1], P[1:])) > 0.05:
                return q
        return q

    def set_state(self, target, q):
        self.d.mocap_pos[self.mocap] = [target[0], target[1], 0.015]
        self.d.qpos[:] = q
        self.d.qvel[:] = 0
        self.d.ctrl[:] = q
        mujoco.mj_forward(self.m, self.d)

    def render(self):
        self.r.update_scene(self.d, self.cam)
        for f in FLAGS_OFF:
            self.r.scene.flags[f] = False
        return self.r.render()

    def make_set(self, n, seed, shift=None):
        rng = np.random.default_rng(seed)
        imgs = np.empty((n, self.size, self.size, 3), np.uint8)
        xy = np.empty((n, 2), np.float32)
        q0 = np.empty((n, 2), np.float32)
        for i in range(n):
            self.randomise(rng, shift)
            t = self.sample_target(rng)
            q = self.sample_arm(rng, t)
            self.set_state(t, q)
            imgs[i] = self.render()
            xy[i], q0[i] = t * 100, q
        return imgs, xy, q0

    # ---------- control ----------
    def reach(self, target, q0, goal_xy, seconds=1.5, frames=None):
        # frames: optional list of times (s) at which to render
        """Start at q0 with the object at target (m); command IK(goal_xy) (m); return final tip-object distance (m)."""
        self.set_state(target, q0)
        qt = ik(goal_xy)
        qt = q0 + np.angle(np.exp(1j * (qt - q0)))     # same angles, nearest turn: no full-circle detours
        self.d.ctrl[:] = qt
        n = int(seconds / self.m.opt.timestep)
        shots = []
        steps = set() if frames is None else {int(round(t / self.m.opt.timestep)) for t in frames}
        for k in range(n + 1):
            if k in steps:
                shots.append(self.render())
            if k < n:
                mujoco.mj_step(self.m, self.d)
        tip = self.d.site_xpos[self.tip][:2]
        return float(np.linalg.norm(tip - target)), shots


def fk(q):
    return np.array([L1 * np.cos(q[0]) + L2 * np.cos(q[0] + q[1]), L1 * np.sin(q[0]) + L2 * np.sin(q[0] + q[1])])


def ik(xy):
    """Closed-form 2-link IK, elbow sign fixed (q2 <= 0); targets outside the reach are clipped to it."""
    x, y = xy
    r2 = np.clip(x * x + y * y, (L1 - L2) ** 2 + 1e-9, (L1 + L2) ** 2 - 1e-9)
    c2 = (r2 - L1**2 - L2**2) / (2 * L1 * L2)
    q2 = -np.arccos(np.clip(c2, -1, 1))
    q1 = np.arctan2(y, x) - np.arctan2(L2 * np.sin(q2), L1 + L2 * np.cos(q2))
    return np.array([q1, q2])


def seg_dist(p, a, b):
    ab = b - a
    t = np.clip(np.dot(p - a, ab) / (np.dot(ab, ab) + 1e-12), 0, 1)
    return np.linalg.norm(p - (a + t * ab))
