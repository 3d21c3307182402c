"""The lesson's first cell: seeds, device, versions and small figures."""

from __future__ import annotations

import ctypes
import os
import platform
import random
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import torch

from course_utils.lessons import LESSONS

PACKAGES = ("torch", "torchvision", "transformers", "datasets", "scikit-learn", "matplotlib", "numpy")

# The reference machine (2 CPU cores, no GPU): speed_test() took this many seconds there (0.43-0.57 s over
# runs on an idle machine). REFERENCE_MINUTES is the sum of the lesson map's 2-core CPU times (lessons.py,
# cold cache), so the preflight's estimate and the map lesson 00 prints cannot disagree.
REFERENCE_SPEED_S = 0.55  # a 2-core AMD EPYC without AVX-512 or AMX, 2026-11-25
REFERENCE_MINUTES = sum(lesson.cpu_minutes for lesson in LESSONS)


def get_device() -> torch.device:
    """The fastest device here: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a model's weights live: helpers send their inputs there and never move the model."""
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def bf16_is_fast(device: torch.device) -> bool:
    """True where the lessons compute in bfloat16: a GPU with bfloat16 units (compute capability 8.0 or newer: A100,
    RTX 30xx, L4, H100), and a CPU with Intel AMX units only when asked with ``COURSE_BF16=1``.

    Not on older GPUs such as Colab's T4 (7.5): ``torch.cuda.is_bf16_supported()`` answers True there by emulation,
    which is slow, and cuDNN has no bfloat16 convolutions below 8.0; they train in float32.

    On a 2-core Xeon with AMX, bfloat16 ran lesson 05 a quarter faster, but its kernel then peaked at 2,049 MB of
    private memory against about 1.5 GB in float32, past what Binder allows: float32 is the CPU default.
    ``COURSE_BF16=0`` turns it off everywhere.
    """
    setting = os.environ.get("COURSE_BF16", "")
    if setting == "0":
        return False
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        return setting == "1" and bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    return False


def describe_device(device: torch.device) -> str:
    """A short human description of ``device``."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({torch.get_num_threads()} threads)"


def versions() -> dict[str, str]:
    """Python's and the main packages' versions."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def release_freed_memory() -> None:
    """Give memory that Python and torch have freed back to the system (glibc's malloc_trim; Linux only).

    glibc keeps freed blocks for reuse, and with tensors of changing sizes (batches of different
    lengths) a kernel's memory grows far beyond what it holds. Called after big steps (a training run,
    an embedding pass), so the next one starts from what is really in use. A no-op elsewhere.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def trim_after_each_cell() -> None:
    """In a notebook, hand freed memory back after every cell (``release_freed_memory``), so one cell's
    leftovers never add to the next cell's peak: a kernel on Binder is killed at 2 GB. Idempotent."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:  # a script, not a notebook
        return
    if _release_after_cell not in shell.events.callbacks["post_run_cell"]:
        shell.events.register("post_run_cell", _release_after_cell)


def _release_after_cell(result: object = None) -> None:
    """IPython's post_run_cell hook: ``release_freed_memory`` after the cell."""
    release_freed_memory()


@contextmanager
def memory_peak(device: torch.device | None = None, interval: float = 0.02) -> Iterator[dict[str, float]]:
    """The peak memory a block adds, in MB, in ``out["mb"]`` afterwards: on a CUDA ``device`` the GPU's (what
    torch allocated there), elsewhere this process's resident memory, sampled (freed memory is handed back first, so
    an earlier step's leftovers do not hide the cost).

    Introduced in ``06b_how_little_to_train.ipynb``.
    """
    out = {"mb": 0.0}
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        try:
            yield out
        finally:
            torch.cuda.synchronize(device)
            out["mb"] = (torch.cuda.max_memory_allocated(device) - start) / 2**20
        return
    import psutil

    process = psutil.Process()
    release_freed_memory()
    start = process.memory_info().rss
    peak, done = [start], threading.Event()

    def sample() -> None:
        while not done.wait(interval):
            peak[0] = max(peak[0], process.memory_info().rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        done.set()
        thread.join()
        out["mb"] = (max(peak[0], process.memory_info().rss) - start) / 2**20


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, ask torch for deterministic algorithms, and keep float32 exact on GPUs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
    torch.use_deterministic_algorithms(True, warn_only=True)
    # A few CUDA backward kernels (adaptive pooling, bilinear upsampling) have no deterministic version: torch warns
    # once per kernel, which is noise in a lesson's output. The run is then reproducible up to those sums' order.
    warnings.filterwarnings("ignore", message=".*does not have a deterministic implementation.*")
    torch.backends.cudnn.benchmark = False
    # The TF32 policy: float32 means float32 on every device. Ampere and newer GPUs would otherwise compute
    # convolutions in TF32 (10-bit mantissa), and a GPU's numbers would differ from the CPU's by about 1e-3 rather
    # than float rounding. The lessons are small; bfloat16 autocast (``bf16_is_fast``) is the one named exception.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def small_figures() -> None:
    """Matplotlib defaults that keep committed notebooks small: modest size and resolution."""
    import matplotlib as mpl

    mpl.rcParams.update({"figure.figsize": (6.0, 3.2), "figure.dpi": 72, "savefig.dpi": 72,
                         "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
                         "axes.spines.right": False, "font.size": 9})


def setup(seed: int = 0, lesson: str | None = None, quiet: bool = False) -> torch.device:
    """Seed everything, set small figures, print versions, device and the lesson's time; return the device."""
    seed_everything(seed)
    small_figures()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # avoids a fork warning in notebooks
    # Per-file bars (loading weights, mapping a dataset) are noise in a lesson; training bars stay.
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    trim_after_each_cell()
    device = get_device()
    if not quiet:
        v = versions()
        print(f"Python {v['python']} · torch {v['torch']} · torchvision {v['torchvision']} · "
              f"transformers {v['transformers']}")
        print(f"device: {describe_device(device)} · seed {seed}")
        if lesson is not None and device.type == "cpu":
            print(slow_path_note(lesson))
    return device


def slow_path_note(slug: str) -> str:
    """What a learner on a CPU should expect from a lesson, before waiting for it."""
    minutes = next(lesson.cpu_minutes for lesson in LESSONS if lesson.slug == slug)
    if minutes < 2:
        return f"No GPU here; that is fine: this lesson takes about {minutes:g} min on a 2-core CPU."
    return (f"No GPU here: this lesson takes about {minutes:g} min on a 2-core CPU the first time "
            f"(a re-run reuses its cache under data/). On Colab, Runtime > Change runtime type > GPU adds one "
            f"(the course has not timed the lessons there).")


def speed_test(device: torch.device | None = None, repeats: int = 3) -> float:
    """Seconds for one MobileNetV2 forward pass on 32 images at 160 px (best of ``repeats``)."""
    from torchvision.models import mobilenet_v2

    device = device or get_device()
    model = mobilenet_v2().eval().to(device)
    x = torch.randn(32, 3, 160, 160, device=device)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
    return best


def estimate_minutes(seconds: float) -> float:
    """The course's expected computing minutes here (the cells' running time, not study time), scaled from the
    reference machine by speed_test()."""
    return REFERENCE_MINUTES * max(seconds / REFERENCE_SPEED_S, 0.1)
