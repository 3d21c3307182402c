"""Film strip: 6 frames of one closed-loop reach (true position, or a model's prediction if given)."""
import numpy as np, matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
from scene import Scene
s = Scene(128); rng = np.random.default_rng(7)
s.randomise(rng); t = s.sample_target(rng); q = s.sample_arm(rng, t)
times = [0, 0.06, 0.12, 0.2, 0.4, 1.0]
d, shots = s.reach(t, q, t, seconds=1.0, frames=times)
fig, ax = plt.subplots(1, 6, figsize=(12, 2.3))
for i, (a, im) in enumerate(zip(ax, shots)):
    a.imshow(im); a.axis("off"); a.set_title(f"t = {times[i]:.2f} s", fontsize=9)
fig.suptitle(f"reach to ({t[0]*100:.1f}, {t[1]*100:.1f}) cm; final tip-object distance {d*100:.2f} cm", fontsize=10)
plt.tight_layout(); plt.savefig("film_strip.png", dpi=80)
print("saved film_strip.png", d)
