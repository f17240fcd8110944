"""Multi-process training: torchrun environment, DDP, cross-rank gathers and BatchNorm.

Launch with ``torchrun --nproc_per_node N -m comode train pretrain ...``; torchrun sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``.  Without them everything here degrades to a
single process (rank 0 of 1) and no process group is created.

Equivalence contract (tested in ``tests/train/test_distributed.py``): W ranks with B / W
clips each compute the same loss and the same gradient as one process with B clips, up to
float summation order, because

* the contrastive keys of all ranks are gathered (:func:`gather_with_gradients`), so every
  query sees the same candidates as in one process, and each key receives the gradient of
  every rank's queries;
* BatchNorm statistics are global (:func:`use_global_batchnorm`);
* each rank's loss is the mean over its own queries, and DDP averages the gradients, which
  is the mean over all queries because every rank has the same local batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "DistributedContext",
    "init_distributed",
    "cleanup_distributed",
    "is_distributed",
    "is_main",
    "rank",
    "world_size",
    "barrier",
    "local_batch_size",
    "wrap_model",
    "unwrap_model",
    "gather_with_gradients",
    "mean_over_ranks",
    "GlobalBatchNorm",
    "use_global_batchnorm",
]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: its rank among ``world_size`` and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistributedContext:
    """Read the torchrun environment, pick the device, and join the process group.

    Device: ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU.  Backend: NCCL on
    CUDA, Gloo on CPU.  A process group is only created when WORLD_SIZE > 1.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun's variables; absent = one process
    global_rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1 and not is_distributed():
        backend = "nccl" if device.type == "cuda" else "gloo"
        init_kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, rank=global_rank, world_size=world, **init_kwargs)
    return DistributedContext(rank=global_rank, world_size=world, local_rank=local_rank, device=device)


def cleanup_distributed() -> None:
    """Leave the process group (no-op when there is none)."""
    if is_distributed():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the rank that writes checkpoints, metrics and the progress bar."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def local_batch_size(global_batch: int, *, ranks: int) -> int:
    """Per-rank batch = global batch / world size; refuses a batch that does not divide."""
    if global_batch % ranks:
        raise ValueError(
            f"data.batch_size={global_batch} is the GLOBAL batch and must be divisible by the "
            f"{ranks} ranks (each rank gets batch_size / world_size clips)"
        )
    return global_batch // ranks


def wrap_model(model: nn.Module, context: DistributedContext) -> nn.Module:
    """DistributedDataParallel when several ranks train, else the model itself."""
    if context.world_size == 1:
        return model
    device_ids = [context.local_rank] if context.device.type == "cuda" else None
    # Every parameter gets a gradient (CoMoDe builds only the enabled branches), so the
    # slower find_unused_parameters search is not needed.
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside a DDP wrapper (what checkpoints store)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


# --------------------------------------------------------------------------------------
# Cross-rank tensors
# --------------------------------------------------------------------------------------


class _AllGatherWithGradients(torch.autograd.Function):
    """(B, ...) on each rank -> (W * B, ...), rank-major; backward sums gradients over ranks.

    Every rank's loss depends on every rank's keys, so the gradient of a key is the sum of
    the gradients the W ranks computed for it: all-reduce the full gradient, keep this
    rank's slice.  (An all-reduce instead of a reduce-scatter because Gloo has no
    reduce-scatter; the tensors are small: B x D embeddings.)
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.start, ctx.rows = dist.get_rank() * x.shape[0], x.shape[0]
        slices = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(slices, x.contiguous())
        return torch.cat(slices, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.start : ctx.start + ctx.rows]


def gather_from_all_ranks(x: Tensor) -> Tensor:
    """All-gather ``x`` (B, ...) from every rank -> (world_size * B, ...), rank-major.

    The local slice is the input tensor itself, so gradients flow into it; the slices of
    other ranks are detached copies (their own ranks back-propagate through them).  This is
    the usual choice for in-batch negatives under DDP (SimCLR / MoCo v3 style).  Identity
    when torch.distributed is not initialised (or the world has one rank).
    """
    if world_size() == 1:
        return x
    slices = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(slices, x.detach().contiguous())
    slices[dist.get_rank()] = x
    return torch.cat(slices, dim=0)


def gather_with_gradients(x: Tensor) -> Tensor:
    """All-gather (B, ...) -> (W * B, ...) with gradients flowing back to the owning rank.

    Same contract as :func:`gather_from_all_ranks` (rank-major, local
    slice at rows ``rank * B``), but other ranks' rows are not constants.  Identity on a
    single process.
    """
    if world_size() == 1:
        return x
    return _AllGatherWithGradients.apply(x)


def mean_over_ranks(values: Tensor) -> Tensor:
    """Element-wise mean of a tensor over all ranks (for logging; NaN stays NaN)."""
    if world_size() == 1:
        return values
    values = values.detach().clone()
    dist.all_reduce(values)
    return values / world_size()


# --------------------------------------------------------------------------------------
# BatchNorm over the global batch
# --------------------------------------------------------------------------------------


def _all_reduce_sum_with_gradients(x: Tensor) -> Tensor:
    """Differentiable sum over ranks (the backward is again a sum over ranks)."""
    return differentiable_all_reduce(x)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm (any of 1d/2d/3d) whose training statistics cover the samples of all ranks.

    Used on the CPU (Gloo), where ``nn.SyncBatchNorm`` refuses to run; on CUDA we use
    ``nn.SyncBatchNorm`` and its fused kernels.  Two passes (mean, then the centred second
    moment), each one differentiable all-reduce of C + 1 numbers, so the result matches a
    single process's ``F.batch_norm`` over the concatenated batch up to summation order.
    Outside training, or on a single process, it is a plain BatchNorm.  Parameter and
    buffer names are BatchNorm's, so state dicts are interchangeable.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (B, C, ...), got {input.dim()}D")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        reduce_dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input.float()
        local_count = torch.tensor([input.numel() // input.shape[1]], dtype=x.dtype, device=x.device)
        sums = _all_reduce_sum_with_gradients(torch.cat([x.sum(reduce_dims), local_count]))
        count = sums[-1]
        mean = sums[:-1] / count
        centred = x - mean.view(shape)
        variance = _all_reduce_sum_with_gradients((centred * centred).sum(reduce_dims)) / count
        self._update_running_stats(mean.detach(), variance.detach(), count=int(count.item()))
        out = centred * torch.rsqrt(variance + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, variance: Tensor, *, count: int) -> None:
        if not self.track_running_stats:
            return
        self.num_batches_tracked += 1
        # momentum=None means a cumulative average, as in nn.BatchNorm.
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = variance * count / max(count - 1, 1)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)


def use_global_batchnorm(model: nn.Module, *, device: torch.device) -> nn.Module:
    """Replace every BatchNorm of ``model`` by one with global-batch statistics.

    CUDA: ``nn.SyncBatchNorm``; elsewhere: :class:`GlobalBatchNorm`.  Call before DDP
    wrapping, after loading weights or not (the state dict layout is unchanged).
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _replace_batchnorm(model)


def _replace_batchnorm(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        replacement = GlobalBatchNorm(
            module.num_features,
            eps=module.eps,
            momentum=module.momentum,
            affine=module.affine,
            track_running_stats=module.track_running_stats,
        )  # on the CPU, like the module it replaces (CUDA models use nn.SyncBatchNorm)
        replacement.load_state_dict(module.state_dict())
        replacement.train(module.training)
        return replacement
    for name, child in module.named_children():
        module.add_module(name, _replace_batchnorm(child))
    return module
