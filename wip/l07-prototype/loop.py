"""Closed loop: predicted (x, y) -> closed-form IK -> position actuators under MuJoCo physics -> final tip-object
distance. Success = within TOL. Uses the test scenes (object, start pose of the arm as in the perception frame)."""
import time, json, argparse, resource
import numpy as np
from scene import Scene

p = argparse.ArgumentParser()
p.add_argument("--preds", default="preds.npz"); p.add_argument("--scenes", type=int, default=300)
p.add_argument("--seconds", type=float, default=1.0); p.add_argument("--tol", type=float, default=2.0)
p.add_argument("--splits", default="test,shift_colour,shift_light")
args = p.parse_args()
T0 = time.time()
D = dict(np.load("frames.npz")); P = dict(np.load(args.preds))
s = Scene(96)
out = {}
def run(split, xy_goal_cm):
    ys, qs = D[split + "_y"][:args.scenes], D[split + "_q"][:args.scenes]
    d = np.array([s.reach(y / 100, q, g / 100, seconds=args.seconds)[0] for y, q, g in zip(ys, qs, xy_goal_cm)]) * 100
    return d
t = time.time()
for split in args.splits.split(","):
    d = run(split, D[split + "_y"][:args.scenes])
    out[f"oracle_{split}"] = {"success": float((d < args.tol).mean()), "mean_cm": float(d.mean()), "max_cm": float(d.max())}
    print(f"true position -> control, {split}: success {(d < args.tol).mean():.3f}, final dist mean {d.mean():.3f} max {d.max():.3f} cm")
print(f"oracle {time.time() - t:.1f}s for {len(args.splits.split(','))*args.scenes} reaches")
t = time.time(); n_reach = 0
rows = {}
for key in sorted(P):
    approach, n, seed, split = key.split("_", 3)
    if split not in args.splits.split(","): continue
    d = run(split, P[key][:args.scenes]); n_reach += len(d)
    pe = np.linalg.norm(P[key][:args.scenes] - D[split + "_y"][:args.scenes], axis=1)
    rows.setdefault((approach, int(n), split), []).append(((d < args.tol).mean(), (pe < args.tol).mean(), d.mean()))
dt = time.time() - t
print(f"{n_reach} closed-loop reaches in {dt:.1f}s ({dt / max(n_reach, 1) * 1000:.2f} ms each, {args.seconds}s sim)")
for split in args.splits.split(","):
    print(f"\n== {split}: success rate (final tip-object < {args.tol} cm), mean ± std over seeds [fraction of predictions < {args.tol} cm]")
    approaches = sorted({k[0] for k in rows})
    budgets = sorted({k[1] for k in rows})
    print("approach " + " ".join(f"{b:>19d}" for b in budgets))
    for a in approaches:
        cells = []
        for b in budgets:
            r = np.array(rows.get((a, b, split), [(np.nan,) * 3]))
            cells.append(f"{r[:, 0].mean():.2f}±{r[:, 0].std():.2f} [{r[:, 1].mean():.2f}]")
        print(f"{a:8s} " + " ".join(f"{c:>19s}" for c in cells))
out["rows"] = {f"{a}_{b}_{sp}": v for (a, b, sp), v in rows.items()}
json.dump(out, open("loop.json", "w"), indent=1)
print("peak RSS MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, f"total {time.time() - T0:.1f}s")
