"""Runs inside vLLM's worker processes (`worker_extension_cls`): loads the trainer's weights from a file.

vLLM calls these methods by name through `LLM.collective_rpc`. Weights travel as a safetensors file (in
shared memory where there is one) rather than as RPC arguments: vLLM's RPC serialiser sends plain data, and
a memory-mapped file costs one copy. `reload_weights` is vLLM's in-place reload: it takes checkpoint-format
tensors and redoes the layer processing (fused QKV, CPU weight packing) that a plain `load_weights` after
start-up would skip.
"""

from __future__ import annotations


class WeightLoader:
    """Mixed into vLLM's worker class; `self` is the worker."""

    def sdar_load_weights(self, path: str) -> int:
        """Load every tensor of the safetensors file at `path`; returns how many were read."""
        from safetensors.torch import load_file

        weights = load_file(path)
        self.model_runner.reload_weights(weights_iterator=iter(weights.items()))
        return len(weights)
