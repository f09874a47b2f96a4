"""A table's training split read from disk as it is used, not held in memory: `StreamedTable`.

aetrack/data/tables.py reads the training file once, in chunks, checking every cell; the feature
values go, as float64 rows, into a cache file in the temporary directory (removed when the last
stream of it is gone, or at exit). `rows(indices)` reads just those rows back with explicit
`os.pread` calls (sorted, runs of neighbours read together, then put back in the asked order) and
standardises them, so memory grows with the batch, not with the table: a memory map would count
every page it touched towards the process's memory.

float64, not float32, so the standardised rows, the digest and the statistics are exactly those
of the same table read into memory. Like `StreamedImages` it stands where an array would: `len()`
and `.shape` cost nothing, slicing or a mask gives a smaller stream, `np.asarray` reads all of it.
numpy only.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from dataclasses import dataclass, field, replace

import numpy as np

from aetrack.data.spec import SampleSpec
from aetrack.data.streams import Streamed

CHUNK_ROWS = 16384  # rows read (or written) at a time outside training: statistics, digests


class RowCache:
    """A float64 row-major file of `width` columns; the file goes when this object does."""

    def __init__(self, width: int):
        fd, self.path = tempfile.mkstemp(prefix="aetrack-table-", suffix=".f64")
        self.width = width
        self.count = 0
        self._file = os.fdopen(fd, "wb")
        weakref.finalize(self, _remove, self.path)  # also runs at interpreter exit

    def append(self, values: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(values, np.float64).tobytes())
        self.count += len(values)

    def close(self) -> None:
        self._file.close()

    def read(self, rows: np.ndarray) -> np.ndarray:
        """float64 (k, width) of cache rows `rows` (any order, repeats allowed)."""
        rows = np.asarray(rows, np.int64)
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        picked = np.empty((len(rows), self.width), np.float64)
        # Runs of consecutive rows are one read each: a chunk in file order is a single read.
        starts = np.flatnonzero(np.diff(ordered, prepend=-2) != 1)
        ends = np.append(starts[1:], len(rows))
        row_bytes = self.width * 8
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for start, end in zip(starts.tolist(), ends.tolist()):
                data = os.pread(fd, (end - start) * row_bytes, int(ordered[start]) * row_bytes)
                picked[start:end] = np.frombuffer(data, np.float64).reshape(end - start, self.width)
        finally:
            os.close(fd)
        out = np.empty_like(picked)
        out[order] = picked
        return out


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


@dataclass(frozen=True)
class StreamedTable(Streamed):
    """Some rows of a `RowCache`, read on demand: stored values, or standardised float32 rows."""

    cache: RowCache
    index: np.ndarray  # (n,) int64: the cache rows of this split, in its order
    spec: SampleSpec
    scale_mean: np.ndarray | None = None  # float64 (D,): set once the training split's scaling is known
    scale_std: np.ndarray | None = None
    failures: list[str] = field(default_factory=list, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32 if self.scale_mean is not None else np.float64)

    def __getitem__(self, index):
        """A slice, index array or boolean mask: the stream of those rows; an integer: that row."""
        if isinstance(index, (int, np.integer)):
            return self.rows(np.array([index]))[0]
        return replace(self, index=self.index[index])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        rows = self.rows(np.arange(len(self.index)))
        return rows if dtype is None else rows.astype(dtype)

    def stored(self, indices=None) -> np.ndarray:
        """float64 (k, D) stored values of the rows at `indices` (all when None)."""
        indices = np.arange(len(self.index)) if indices is None else np.asarray(indices)
        return self.cache.read(self.index[indices])

    def rows(self, indices) -> np.ndarray:
        """The rows at `indices` in the model's space: standardised float32 once `scaled`."""
        values = self.stored(indices)
        if self.scale_mean is None:
            return values
        return ((values - self.scale_mean) / self.scale_std).astype(np.float32)  # as sources scales arrays

    def chunks(self, size: int = CHUNK_ROWS):
        """The stored values in order, `size` rows at a time."""
        for start in range(0, len(self.index), size):
            yield self.cache.read(self.index[start:start + size])

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """float64 (mean, std) per feature, in two passes (the mean first: no cancellation)."""
        n = len(self.index)
        mean = sum(chunk.sum(axis=0) for chunk in self.chunks()) / n
        var = sum(((chunk - mean) ** 2).sum(axis=0) for chunk in self.chunks()) / n
        return mean, np.sqrt(var)

    def scaled(self, mean: np.ndarray, std: np.ndarray, spec: SampleSpec) -> "StreamedTable":
        return replace(self, scale_mean=np.asarray(mean, np.float64), scale_std=np.asarray(std, np.float64), spec=spec)

    def update_digest(self, digest) -> None:
        """Feed the stored values' bytes, in order: the digest of the same array in memory."""
        for chunk in self.chunks():
            digest.update(chunk.tobytes())
