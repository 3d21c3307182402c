"""Perception runs: (a) scratch CNN, (b1) frozen MobileNetV2 + spatial softmax, (b2) frozen + GAP linear,
(c) top block(s) fine-tuned + spatial softmax. seeds x label budgets. Saves test/shift predictions (cm)."""
import sys, time, copy, os, argparse, json, resource; sys.path.insert(0, "/work/main")
import numpy as np, torch
from torch import nn
import torch.nn.functional as F
torch.set_num_threads(int(os.environ.get("THREADS", 1)))
from course_utils.models import load_mobilenet_v2, freeze_batchnorm
from course_utils.vision import to_input

p = argparse.ArgumentParser()
p.add_argument("--approaches", default="a,b1,b2,c"); p.add_argument("--budgets", default="25,100,400,1600")
p.add_argument("--seeds", default="0,1,2")
p.add_argument("--steps", default="a=400,b1=600,b2=600,c=400")   # fixed optimizer steps per run, any budget
p.add_argument("--batch", type=int, default=32); p.add_argument("--out", default="preds.npz")
p.add_argument("--scratch", default="strided"); p.add_argument("--K", type=int, default=16)
p.add_argument("--cut", type=int, default=7)      # frozen features = mobilenet.features[:cut] (stride 8, 32 ch, 12x12 at 96 px)
p.add_argument("--ft", type=int, default=1)       # (c): how many top blocks of features[:cut] are fine-tuned
p.add_argument("--lr_top", type=float, default=1e-3)
p.add_argument("--lr_a", type=float, default=3e-3); p.add_argument("--clip", type=float, default=0.0)
args = p.parse_args()
STEPS = {k: int(v) for k, v in (kv.split("=") for kv in args.steps.split(","))}
T0 = time.time()
D = dict(np.load("frames.npz"))
SPLITS = ["train", "val", "test", "shift_colour", "shift_light"]
Y = {s: torch.tensor(D[s + "_y"]) for s in SPLITS}
MU, SD = Y["train"].mean(0), Y["train"].std(0)


class SpatialSoftmax(nn.Module):
    """Keypoint maps (1x1 convs) -> softmax over positions -> expected (x, y) per map -> small MLP to table (x, y)."""
    def __init__(self, c, k=16, hidden=64):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(c, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, k, 1))
        self.log_t = nn.Parameter(torch.zeros(()))
        self.fc = nn.Sequential(nn.Linear(2 * k, 64), nn.ReLU(), nn.Linear(64, 2))
    def forward(self, h):
        m = self.conv(h); n, k, H, W = m.shape
        a = F.softmax(m.flatten(2) / self.log_t.exp(), -1).view(n, k, H, W)
        ys = torch.linspace(-1, 1, H); xs = torch.linspace(-1, 1, W)
        kx = (a.sum(2) * xs).sum(-1); ky = (a.sum(3) * ys).sum(-1)
        return self.fc(torch.cat([kx, ky], 1))

class GapLinear(nn.Module):
    """Global average pool (throws away where) + linear."""
    def __init__(self, c):
        super().__init__(); self.fc = nn.Linear(c, 2)
    def forward(self, h):
        return self.fc(h.mean((2, 3)))

def scratch_cnn(kind, k):
    def block(ci, co, stride=1, pool=False):
        layers = [nn.Conv2d(ci, co, 3, stride=stride, padding=1), nn.BatchNorm2d(co), nn.ReLU()]
        return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))
    if kind == "plain":      # course-style blocks, 96 -> 12 (stride 8)
        body = [block(3, 16, pool=True), block(16, 32, pool=True), block(32, 32, pool=True)]
    elif kind == "plain8":   # same layout, narrower (8, 16, 32): ~2.5x fewer FLOPs than plain
        body = [block(3, 8, pool=True), block(8, 16, pool=True), block(16, 32, pool=True)]
    else:                    # strided convs, 96 -> 12 (stride 8), ~4x cheaper
        body = [block(3, 16, 2), block(16, 32, 2), block(32, 32, 1), block(32, 32, 2)]
    return nn.Sequential(Normalise(), *body, SpatialSoftmax(32, k))

class Normalise(nn.Module):
    """uint8 (N, 3, H, W) -> ImageNet-normalised float, per batch (saves caching 4x larger float frames)."""
    def forward(self, x):
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1); std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return ((x.float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last)

def chunks(f, x, n=100):
    return torch.cat([f(x[i:i + n]) for i in range(0, len(x), n)])

# ---- inputs / cached features ----
X, HLOW, HTOP = {}, {}, {}
t = time.time()
if "a" in args.approaches:
    for s in SPLITS:
        X[s] = torch.as_tensor(D[s + "_x"]).permute(0, 3, 1, 2)   # uint8 kept; normalised inside the model
t_in = time.time() - t
t = time.time()
if any(a in args.approaches for a in ("b1", "b2", "c")):
    net = load_mobilenet_v2().eval()
    lo = args.cut - args.ft
    with torch.no_grad():
        for s in SPLITS:
            HLOW[s] = chunks(lambda a: net.features[:lo](to_input(a, 96)), D[s + "_x"])
            HTOP[s] = chunks(net.features[lo:args.cut], HLOW[s])
t_cache = time.time() - t
C = HTOP["train"].shape[1] if HTOP else 32
print(f"scratch inputs {t_in:.1f}s; MobileNetV2 cache features[:{args.cut - args.ft}] and [:{args.cut}] "
      f"{tuple(HTOP['train'].shape[1:]) if HTOP else ''} for 2500 frames: {t_cache:.1f}s", flush=True)

def make(approach, seed):
    torch.manual_seed(seed)
    if approach == "a":
        return scratch_cnn(args.scratch, args.K).to(memory_format=torch.channels_last), X, args.lr_a
    if approach == "b1":
        return SpatialSoftmax(C, args.K), HTOP, 3e-3
    if approach == "b2":
        return GapLinear(C), HTOP, 3e-2
    if approach == "c":
        top = freeze_batchnorm(copy.deepcopy(net.features[args.cut - args.ft:args.cut]))
        for q in top.parameters(): q.requires_grad = True
        return nn.Sequential(top, SpatialSoftmax(C, args.K)), HLOW, 3e-3

def predict(model, inp):
    model.eval()
    with torch.no_grad():
        return chunks(model, inp) * SD + MU

results, preds = [], {}
timing = {"cache_s": t_in + t_cache}
for approach in args.approaches.split(","):
    t_ap = time.time()
    for n in [int(b) for b in args.budgets.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            t = time.time()
            idx = torch.tensor(np.random.default_rng(seed).permutation(1600)[:n])
            model, inp, lr = make(approach, seed)
            if approach == "c":
                groups = [{"params": list(model[0].parameters()), "lr": args.lr_top},
                          {"params": list(model[1].parameters()), "lr": lr}]
            else:
                groups = [{"params": list(model.parameters()), "lr": lr}]
            opt = torch.optim.AdamW(groups, weight_decay=1e-4)
            steps = STEPS[approach]
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g_["lr"] for g_ in groups], total_steps=steps, pct_start=0.15)
            g = torch.Generator().manual_seed(seed)
            model.train()
            for step in range(steps):
                b = idx[torch.randint(n, (min(args.batch, n),), generator=g)]
                loss = F.smooth_l1_loss(model(inp["train"][b]), (Y["train"][b] - MU) / SD, beta=0.1)
                opt.zero_grad(); loss.backward()
                if args.clip: torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
                opt.step(); sched.step()
            row = {"approach": approach, "n": n, "seed": seed, "train_s": time.time() - t}
            for s in SPLITS:
                sel = idx if s == "train" else slice(None)
                pr = predict(model, inp[s][sel])
                d = (pr - Y[s][sel]).norm(dim=1)
                row[s] = d.mean().item()
                if s == "test": row["test_lt2"] = (d < 2).float().mean().item()
                if s not in ("train", "val"):
                    preds[f"{approach}_{n}_{seed}_{s}"] = pr.numpy()
            row["total_s"] = time.time() - t
            results.append(row)
            print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    timing[approach + "_s"] = time.time() - t_ap

np.savez(args.out, **preds)
json.dump({"results": results, "timing": timing, "args": vars(args)}, open(args.out.replace(".npz", ".json"), "w"), indent=1)
print("timing", {k: round(v, 1) for k, v in timing.items()})
print("peak RSS MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "(torch + course_utils imports alone: ~810 MB)")
print(f"total {time.time() - T0:.1f}s")
