"""Render the frame sets once and cache them (frames.npz)."""
import time, sys
import numpy as np
from scene import Scene
SETS = {"train": (1600, 100, None), "val": (200, 101, None), "test": (300, 102, None),
        "shift_colour": (200, 103, "colour"), "shift_light": (200, 104, "light")}

def build(size=96, path="frames.npz"):
    t = time.time(); s = Scene(size); out = {}
    for name, (n, seed, shift) in SETS.items():
        out[name + "_x"], out[name + "_y"], out[name + "_q"] = s.make_set(n, seed, shift)
    dt = time.time() - t
    print(f"rendered {sum(v[0] for v in SETS.values())} frames at {size}px in {dt:.1f}s")
    np.savez(path, **out)
    return out

if __name__ == "__main__":
    build(int(sys.argv[1]) if len(sys.argv) > 1 else 96)
