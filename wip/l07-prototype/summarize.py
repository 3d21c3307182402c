"""Error-vs-labels tables (mean ± std over seeds, cm) from perc.py's json."""
import json, sys, numpy as np
R = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "preds.json"))
rows = R["results"]
for split in ("test", "shift_colour", "shift_light", "train_s"):
    print(f"\n== {split} ({'s per run' if split == 'train_s' else 'mean Euclidean error, cm'})")
    budgets = sorted({r["n"] for r in rows}); aps = sorted({r["approach"] for r in rows})
    print("approach " + " ".join(f"{b:>13d}" for b in budgets))
    for a in aps:
        cells = []
        for b in budgets:
            v = np.array([r[split] for r in rows if r["approach"] == a and r["n"] == b])
            cells.append(f"{v.mean():.2f}±{v.std():.2f}")
        print(f"{a:8s} " + " ".join(f"{c:>13s}" for c in cells))
print("\ntiming", {k: round(v, 1) for k, v in R["timing"].items()})
