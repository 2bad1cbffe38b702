"""Sharded training with PyTorch FSDP2 (`trainer.sharding=fsdp`; docs/scaling.md).

`shard_model(model)` applies torch's `fully_shard` to every decoder layer and to a root module that holds
the model (`ShardedRoot`): each process then keeps 1/N of every weight, gradient and optimizer state, and
gathers a layer's full weights only while that layer runs. Gradients are reduce-scattered as SUMS (FSDP's
default is the mean), because the objective's token-mean is already over the global mini-batch
(sdar/training/distributed.py): the summed gradient is then exactly the one-process gradient.

Two rules follow from sharding, and the code that runs the model keeps them:

- Every forward through sharded weights is collective: all processes must run the same number of them.
  The policy update's passes go through the root (`token_logprobs` routes a sharded model there) and pad
  the shorter processes with empty passes (`sdar.training.update`).
- Passes whose number differs between processes (sampling with the trainer's own model, scoring log-probs
  of each process's rows, process 0's evaluation) run inside `full_weights(model)`: the whole model is
  gathered once, on every process, forwards are then local, and the shards are restored on exit. That
  costs one full copy of the weights per process for the duration.

The root module exists because our forward (`token_logprobs`) calls the decoder stack and the LM head
separately, never `model.forward`: FSDP's hooks on the root see that call, so the embedding, final norm and
LM head (one group, which keeps tied embeddings together) are gathered for it and their gradients reduced.

accelerate launches the processes (`accelerate launch`) and initialises the process group; sharding is
applied with torch's `fully_shard` itself rather than through `Accelerator.prepare`, whose FSDP plugin
refuses CPU processes: one code path then runs under test here (gloo) and on GPUs (NCCL).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator

import torch

# model -> its ShardedRoot. Weak: a model that is dropped takes its entry with it.
_ROOTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class ShardedRoot(torch.nn.Module):
    """The FSDP root around a model: `root(function, *args)` runs `function(model, *args)` under the root's
    hooks (see the module docstring)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, function: Callable, *args, **kwargs):
        return function(self.model, *args, **kwargs)


def _nothing(model) -> None:
    return None


def decoder_layer_classes(model) -> tuple[type, ...]:
    """The classes transformers marks as unsplittable (`_no_split_modules`: the decoder layers)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or ())
    classes = {type(module) for module in model.modules() if type(module).__name__ in names}
    if not classes:
        raise ValueError(
            f"trainer.sharding=fsdp: {type(base).__name__} names no decoder layer class (_no_split_modules); "
            "FSDP needs one unit per layer. Use trainer.sharding=none for this model"
        )
    return tuple(classes)


def shard_model(model: torch.nn.Module, *, cpu_offload: bool = False) -> ShardedRoot:
    """Shard `model` in place over the default process group (one unit per decoder layer plus the root);
    its parameters become DTensors holding this process's shard. Every process must call this, in the same
    order for every model it shards. Returns the root (also found by `sharded_root(model)`)."""
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    options = {"offload_policy": CPUOffloadPolicy() if cpu_offload else OffloadPolicy()}
    layers = decoder_layer_classes(model)
    for module in list(model.modules()):
        if isinstance(module, layers):
            fully_shard(module, **options)
    root = ShardedRoot(model)
    fully_shard(root, **options)
    for unit in fsdp_units(root):
        unit.set_gradient_divide_factor(1.0)  # sums, not means (module docstring)
        unit.set_force_sum_reduction_for_comms(True)  # a plain SUM: gloo has no pre-multiplied sum
    _ROOTS[model] = root
    # The first forward through any unit makes that unit FSDP's root for good: make it this one. The root
    # keeps its weights gathered after a forward; shard them again, so that the optimizer the caller builds
    # next holds the sharded parameters.
    root(_nothing)
    for unit in fsdp_units(root):
        unit.reshard()
    return root


def sharded_root(model) -> ShardedRoot | None:
    """The root `shard_model` made for `model`, or None when it is not sharded."""
    try:
        return _ROOTS.get(model)
    except TypeError:  # not weak-referenceable: not a module we sharded
        return None


def is_sharded(model) -> bool:
    return sharded_root(model) is not None


def fsdp_units(module: torch.nn.Module) -> list:
    from torch.distributed.fsdp import FSDPModule

    return [unit for unit in module.modules() if isinstance(unit, FSDPModule)]


def _reshards_after_forward(unit) -> bool:
    # FSDP2 has no public getter; a group frees its gathered weights after forward iff it has this mesh.
    group = unit._get_fsdp_state()._fsdp_param_group
    return group is not None and group.post_forward_mesh_info is not None


@contextlib.contextmanager
def full_weights(model) -> Iterator[None]:
    """Inside the block `model` holds its full weights on every process and forwards communicate nothing
    (module docstring); a no-op for a model that is not sharded. Collective on entry: every process must
    enter it, at the same point."""
    root = sharded_root(model)
    if root is None:
        yield
        return
    units = fsdp_units(root)
    reshard = [_reshards_after_forward(unit) for unit in units]
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    try:
        yield
    finally:
        for unit, again in zip(units, reshard, strict=True):
            unit.reshard()
            unit.set_reshard_after_forward(again, recurse=False)


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor's whole value (collective: every process must ask for it); any other tensor as it is."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


@torch.no_grad()
def copy_full_(target: torch.Tensor, value: torch.Tensor) -> None:
    """target ← value, where `value` is the whole tensor and `target` may be a DTensor holding a shard of it
    (every process passes the same whole value; nothing is communicated)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(target, DTensor):
        local = value.to(device=target.device, dtype=target.dtype)
        value = distribute_tensor(local, target.device_mesh, target.placements, src_data_rank=None)
    target.copy_(value)
