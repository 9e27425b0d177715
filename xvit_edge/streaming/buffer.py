"""A ring buffer of the last T preprocessed frames, in memory allocated once."""

from __future__ import annotations

import torch


class FrameBuffer:
    """The last `capacity` frames, oldest first on the way out.

    Storage and the output clip are allocated once: `push` copies a frame into the next slot and `clip` copies
    the slots into time order, so a stream of any length runs in the same memory. The tensor `clip` returns is
    reused by the next call; clone it to keep it.
    """

    def __init__(self, capacity: int, frame_shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._data = torch.zeros((capacity, *frame_shape), dtype=dtype)
        self._clip = torch.zeros_like(self._data)
        self._next = 0  # the slot the next frame goes to: the oldest frame's slot once the buffer is full
        self._count = 0

    @property
    def capacity(self) -> int:
        return self._data.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffer (storage and output clip); constant for its lifetime."""
        return 2 * self._data.numel() * self._data.element_size()

    def __len__(self) -> int:
        return self._count

    @property
    def full(self) -> bool:
        return self._count == self.capacity

    def push(self, frame: torch.Tensor) -> None:
        """Copy one frame in, overwriting the oldest once full."""
        self._data[self._next].copy_(frame)
        self._next = (self._next + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def clip(self) -> torch.Tensor:
        """`(len, *frame_shape)`: the frames held, oldest first (a view of a reused tensor)."""
        n, cap = self._count, self.capacity
        start = (self._next - n) % cap
        first = min(n, cap - start)  # frames from `start` up to the end of storage, then the rest from slot 0
        out = self._clip[:n]
        out[:first].copy_(self._data[start:start + first])
        out[first:].copy_(self._data[:n - first])
        return out

    def reset(self) -> None:
        self._next = self._count = 0
