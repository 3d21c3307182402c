"""A GPU played on the CPU: tensors sent to "cuda" are marked, and what a real GPU would refuse raises DeviceSlip.

The course's device tests elsewhere keep every tensor on the CPU, so a forgotten ``.to(device)`` or ``.cpu()`` passes
them. Under ``FakeGpu()``, ``x.to("cuda")``, ``model.to("cuda")`` and factories given ``device="cuda"`` return CPU
tensors marked as being on the GPU (their ``.device`` says cuda), operations on them stay marked, and three slips
fail as they would on a GPU: ``.numpy()`` on a marked tensor, an operation mixing a marked tensor with an unmarked
one that is not a 0-dim scalar (indexing by CPU indices is allowed, as CUDA allows it), and nothing else.
"""

from __future__ import annotations

import weakref

import torch
from torch.overrides import TorchFunctionMode

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


class DeviceSlip(AssertionError):
    """What would have failed on a GPU."""


class OnGpu(torch.Tensor):
    """A CPU tensor that plays one on a GPU."""


_params: dict = {}  # id -> weakref of parameters "moved to the GPU" (their Python object cannot change class)


def marked(t) -> bool:
    """Whether ``t`` is on the GPU: played by this mode, or a real one."""
    if isinstance(t, OnGpu) or (isinstance(t, torch.nn.Parameter) and id(t) in _params and _params[id(t)]() is t):
        return True
    return torch.cuda.is_available() and t.device.type == "cuda"


def _mark(t):
    if not isinstance(t, torch.Tensor) or marked(t):
        return t
    if isinstance(t, torch.nn.Parameter):
        _params[id(t)] = weakref.ref(t)
        return t
    return t.as_subclass(OnGpu)


def _unmark(t):
    return t.as_subclass(torch.Tensor) if isinstance(t, OnGpu) else t


def _walk(obj, out):
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            _walk(o, out)
    elif isinstance(obj, dict):
        for o in obj.values():
            _walk(o, out)
    return out


def _map(obj, fn):
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if type(obj) in (list, tuple):
        return type(obj)(_map(o, fn) for o in obj)
    return obj


def _where(args, kwargs):
    """Where a .to() call sends its tensor: "cuda", "cpu" or None (a dtype change only)."""
    for a in list(args[1:]) + [kwargs.get("device")]:
        if isinstance(a, (str, torch.device)):
            return torch.device(a).type
        if isinstance(a, torch.Tensor):
            return "cuda" if marked(a) else "cpu"
    return None


# Legal with a GPU tensor and CPU tensors together: indexing by CPU indices, and reading sizes or values.
FREE = {torch.Tensor.__getitem__, torch.Tensor.__setitem__, torch.Tensor.item, torch.Tensor.tolist,
        torch.Tensor.size, torch.Tensor.dim, torch.Tensor.numel, torch.Tensor.__len__,
        torch._has_compatible_shallow_copy_type}


class FakeGpu(TorchFunctionMode):
    """Run a block as if ``.to("cuda")`` worked: moved tensors are marked, and what a GPU refuses raises DeviceSlip
    (``.numpy()`` on a GPU tensor, an operation mixing a GPU tensor with a CPU one that is not a scalar)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func == torch.Tensor.device.__get__:
            return CUDA if marked(args[0]) else func(*args)  # "meta" stays "meta"
        if func == torch.Tensor.is_cuda.__get__:
            return marked(args[0]) or func(*args)
        if func == torch.Tensor.grad.__get__:
            grad = func(*args)
            return _mark(grad) if grad is not None and marked(args[0]) else grad
        if func == torch.Tensor.data.__set__:  # Module.to() swaps a parameter's data: it goes where the data is
            if marked(args[1]):
                _mark(args[0])
            else:
                _params.pop(id(args[0]), None)
            return func(args[0], _unmark(args[1]))
        if func in (torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.cpu):
            where = {torch.Tensor.cuda: "cuda", torch.Tensor.cpu: "cpu"}.get(func) or _where(args, kwargs)
            if func is torch.Tensor.to:  # only "cuda" is rewritten: "meta" (used while loading weights) stays
                cuda = (lambda a: isinstance(a, (str, torch.device)) and torch.device(a).type == "cuda")
                clean = [CPU if cuda(a) else _unmark(a) if i and isinstance(a, torch.Tensor) else a
                         for i, a in enumerate(args)]
                if cuda(kwargs.get("device")):
                    kwargs["device"] = CPU
                out = func(*clean, **kwargs)
            else:
                out = args[0]
            if where == "cuda":  # a parameter's .to() gives its data, as on a real device: mark that
                return out if marked(out) else _mark(out.detach() if isinstance(out, torch.nn.Parameter) else out)
            if where == "cpu":
                return _unmark(out) if not isinstance(out, torch.nn.Parameter) else out.detach()
            return _mark(out) if marked(args[0]) else out
        if func is torch.Tensor.numpy and marked(args[0]):
            raise DeviceSlip(".numpy() on a tensor that is on the GPU: call .cpu() first")
        if "device" in kwargs and kwargs["device"] is not None and torch.device(kwargs["device"]).type == "cuda":
            kwargs["device"] = CPU  # a factory asked for a GPU tensor
            return _map(func(*args, **kwargs), _mark)
        tensors = _walk(args, []) + _walk(kwargs, [])
        on_gpu = any(marked(t) for t in tensors)
        if on_gpu and func not in FREE:
            plain = [t for t in tensors if not marked(t) and t.dim() > 0]
            if plain:
                name = getattr(func, "__name__", str(func))
                raise DeviceSlip(f"{name}: a GPU tensor met a CPU tensor of shape {tuple(plain[0].shape)}")
        out = func(*args, **kwargs)
        return _map(out, _mark) if on_gpu else out
