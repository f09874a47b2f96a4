"""A training split read from its files as it is used, not held in memory: `Streamed`, and its
image kind `StreamedImages` (a table's is aetrack/data/table_streams.py `StreamedTable`).

An image folder's training split is a list of files (and labels) whose headers were checked when
it was listed; `rows(indices)` decodes just those files (PIL: colour converted, resized, scaled
into [0, 1]) into flat float32 rows. `aetrack.batches.streamed_batches` calls it per batch from a
tf.data pipeline, so memory grows with the batch, not with the dataset.

It stands where `Dataset.x_train` holds an array: `len()` and `.shape` cost nothing, slicing or a
boolean mask gives a smaller stream, and `np.asarray(stream)` decodes every file (small data only:
tests, one-off looks; training never does). numpy only at import; PIL loads when decoding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from aetrack.data.spec import SampleSpec
from aetrack.errors import DataError

EXTENSIONS_TEXT = "png, jpg, jpeg, bmp or gif"
_CHUNK = 1 << 20  # bytes read at a time when hashing a file


class Streamed:
    """What a streamed split offers the batch pipeline and the runner: `len()`, `spec`, `rows(indices)`
    (float32 (k, spec.size) rows in the model's space), `stored(indices)` (the values an in-memory
    source holds), `failures` (the first read error's one line) and slicing into a smaller stream."""

    spec: SampleSpec
    failures: list[str]

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, int]:
        """As an array of the split would have it: (samples, spec.size)."""
        return (len(self), self.spec.size)

    @property
    def ndim(self) -> int:
        return 2

    def rows(self, indices) -> np.ndarray:
        raise NotImplementedError

    def stored(self, indices=None) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class StreamedImages(Streamed):
    """The image files of one split, decoded on demand into flat float32 rows of `spec`."""

    files: tuple[str, ...]
    spec: SampleSpec  # its shape gives the size every image is resized to and its channels
    where: str = ""  # starts a decoding error: `invalid dataset '<folder>'`
    # The first file that failed to decode while training (one line); the pipeline's own error
    # carries TensorFlow's wrapping, this keeps the message the run fails with.
    failures: list[str] = field(default_factory=list, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def __getitem__(self, index):
        """A slice, index array or boolean mask: the stream of those files; an integer: that row."""
        if isinstance(index, (int, np.integer)):
            return self.rows(np.array([index]))[0]
        picked = np.arange(len(self.files))[index]
        return StreamedImages(tuple(self.files[i] for i in picked), self.spec, self.where, self.failures)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        rows = self.rows(np.arange(len(self.files)))
        return rows if dtype is None else rows.astype(dtype)

    def pixels(self, indices=None) -> np.ndarray:
        """uint8 (k, H, W, C) of the files at `indices` (all when None), as an in-memory folder holds them."""
        indices = np.arange(len(self.files)) if indices is None else np.asarray(indices)
        height, width, channels = self.spec.shape
        out = np.empty((len(indices), height, width, channels), np.uint8)
        for row, i in enumerate(indices):
            out[row] = self._decode(self.files[int(i)])
        return out

    def stored(self, indices=None) -> np.ndarray:
        return self.pixels(indices)

    def rows(self, indices) -> np.ndarray:
        """float32 (k, spec.size) rows in [0, 1] of the files at `indices`; DataError naming a bad file."""
        pixels = self.pixels(indices)
        rows = pixels.reshape(len(pixels), -1).astype(np.float32)
        rows /= np.float32(255.0)  # in place: the values `flatten` gives, one float copy per batch
        return rows

    def sha256(self, labels: np.ndarray | None = None) -> str:
        """SHA-256 of the files' bytes (read in chunks), the size and colour they are decoded to, and
        the labels: the digest of the split as used, without decoding it."""
        digest = hashlib.sha256(f"{self.spec.shape_text()}\0".encode())
        for path in self.files:
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
            digest.update(b"\0")
        if labels is not None:
            digest.update(np.ascontiguousarray(labels).tobytes())
        return digest.hexdigest()

    def _decode(self, path: str) -> np.ndarray:
        from PIL import Image

        height, width, channels = self.spec.shape
        try:
            with Image.open(path) as image:
                image = image.convert("RGB" if channels == 3 else "L")
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                return np.asarray(image, np.uint8).reshape(height, width, channels)
        except (OSError, SyntaxError, ValueError) as exc:  # a truncated file passes the header check
            reason = " ".join(str(exc).split()) or type(exc).__name__
            message = f"{self.where or 'invalid dataset'}: cannot read image {path} ({reason}); expected " \
                      f"{EXTENSIONS_TEXT} images"
            if not self.failures:
                self.failures.append(message)
            raise DataError(message) from None
