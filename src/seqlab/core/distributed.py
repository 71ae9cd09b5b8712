"""Data-parallel training under torchrun (DistributedDataParallel: NCCL on GPU, gloo on CPU).

    torchrun --nproc_per_node 4 src/train_char.py --data-dir ... --out-dir ... --batch-size 16

--batch-size is per rank; the global batch is batch_size x world_size. Each rank reads its own
slice of every global batch, so the run computes what one process with the global batch would.
Only rank 0 writes files. Outside torchrun everything here is a no-op.
"""
import io
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


def env_rank_world():
    """(rank, world_size) from the torchrun environment; (0, 1) for a plain `python` run."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"  # where collective tensors live (NCCL needs CUDA tensors)

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def active(self):
        return self.world > 1

    def barrier(self):
        if self.active:
            dist.barrier()

    def mean(self, tensor):
        """The mean of `tensor` over ranks (in place on a copy)."""
        if not self.active:
            return tensor
        t = tensor.detach().clone()
        dist.all_reduce(t)
        return t / self.world

    def any(self, flag):
        """True on every rank when `flag` is true on any rank (keeps ranks in step on a signal)."""
        if not self.active:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank (picklable, tensor-free objects)."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=torch.device(self.device))
        return box[0]

    def gather(self, obj):
        """A list of every rank's `obj`, in rank order (picklable objects)."""
        return all_gather(obj) if self.active else [obj]

    def close(self, clean=True):
        """Leave the process group. On a clean exit the ranks first meet at a barrier, so no rank
        tears down its gloo/NCCL connections while a peer still works (rank 0 draws plots at the
        end); after an error a barrier could wait for a rank that will never come, so none."""
        if self.active and dist.is_initialized():
            if clean:
                dist.barrier()
            dist.destroy_process_group()


def all_gather(obj):
    """A list of every rank's `obj` (picklable; tensors on the CPU), in rank order; [obj] outside a
    process group. Every rank must call it (a collective)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    # serialise with torch.save: all_gather_object cannot unpickle tensors across gloo
    buf = io.BytesIO()
    torch.save(obj, buf)
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, buf.getvalue())
    return [torch.load(io.BytesIO(b), weights_only=True) for b in out]


def init(device_type):
    """Join the process group when started by torchrun; returns a Dist (world 1 otherwise)."""
    rank, world = env_rank_world()
    if world == 1:
        return Dist()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Dist(rank, world, local_rank, f"cuda:{local_rank}" if device_type == "cuda" else "cpu")
