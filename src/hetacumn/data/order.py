"""Training data order for stacks larger than memory: a chunked shuffle and the reader that serves it.

:func:`epoch_order` cuts the (sorted) training indices into chunks of ``chunk_images`` consecutive
particles, shuffles the chunks, then shuffles the particles within windows of ``buffer_chunks``
chunks. A batch therefore comes from at most ``buffer_chunks`` contiguous stretches of the stacks, and
:class:`ChunkCache` reads each stretch once per epoch in one sequential read instead of one random
read per image. :func:`read_in_file_order` reads any request sorted by (stack file, position).

Example usage::

    order = epoch_order(indices, seed=0, epoch=3, chunk_images=1024, buffer_chunks=16)
    source = ChunkCache(particles.images, chunk_images=1024, max_chunks=32)
    images = source.read(order[:64])          # (64, D, D) float32, in the order asked
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from hetacumn.io.sources import ImageSource

__all__ = ["ChunkCache", "epoch_order", "read_in_file_order"]


def epoch_order(indices: np.ndarray, seed: int, epoch: int, chunk_images: int, buffer_chunks: int) -> np.ndarray:
    """The order in which ``indices`` are visited in ``epoch``: a seeded permutation of them.

    Parameters
    ----------
    indices : (N,) int array
        The training particle indices, sorted (so consecutive entries are neighbours in the stacks).
    seed, epoch : int
        The permutation depends on ``seed + epoch`` only.
    chunk_images : int
        Consecutive entries per chunk; 0 gives a full random permutation,
        ``indices[np.random.default_rng(seed + epoch).permutation(N)]``.
    buffer_chunks : int
        Chunks whose entries are shuffled together (the shuffle buffer, in chunks).

    Returns
    -------
    (N,) int array
        Every entry of ``indices`` once. The ``N // chunk_images`` full chunks come in random order
        and the last, partial chunk comes last; windows of ``chunk_images * buffer_chunks`` entries
        are shuffled within. So when ``batch_size`` divides ``chunk_images * buffer_chunks``, every
        batch ``order[k * batch_size:(k + 1) * batch_size]`` lies in ``<= buffer_chunks`` chunks.
    """
    indices = np.asarray(indices)
    n = len(indices)
    rng = np.random.default_rng(seed + epoch)
    if chunk_images == 0:
        return indices[rng.permutation(n)]
    if chunk_images < 0 or buffer_chunks < 1:
        raise ValueError(f"need chunk_images >= 0 and buffer_chunks >= 1, got {chunk_images} and {buffer_chunks}")
    n_full = n // chunk_images
    starts = rng.permutation(n_full) * chunk_images
    in_chunks = (starts[:, None] + np.arange(chunk_images)).reshape(-1)
    positions = np.concatenate([in_chunks, np.arange(n_full * chunk_images, n)])
    window = np.arange(n) // (chunk_images * buffer_chunks)
    # Sorting by window + a uniform key in [0, 1) shuffles within each window and keeps windows in place.
    return indices[positions[np.argsort(window + rng.random(n), kind="stable")]]


def read_in_file_order(source: ImageSource, indices: np.ndarray) -> np.ndarray:
    """Images of ``indices`` read sorted by (stack file, position), returned in the order asked.

    Returns ``(n, D, D)`` float32, equal to ``source.read(indices)``; sorting turns a memory-mapped
    read into one forward pass over each file, which the kernel's read-ahead serves.
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    order = np.lexsort((source.image_index[indices], source.file_index[indices]))
    images = source.read(indices[order])
    if np.array_equal(order, np.arange(len(order))):  # already in file order (e.g. a chunk): no copy
        return images
    out = np.empty_like(images)
    out[order] = images
    return out


class ChunkCache:
    """Particle images read a chunk at a time, the ``max_chunks`` most recently used kept in memory.

    Chunk ``k`` holds particles ``[k * chunk_images, (k + 1) * chunk_images)``. A request touching at
    most ``max_chunks`` chunks is served from whole chunks, each loaded by one sequential read; a
    wider request (e.g. a random sample for statistics) is read directly, sorted, and caches nothing.
    The stacks are unmapped after each read, so the process holds the cache and no more:
    ``max_chunks * chunk_images * D * D * 4`` bytes. Use it with batches of :func:`epoch_order` with
    the same ``chunk_images`` and ``max_chunks >= 2 * buffer_chunks`` (a batch straddling two windows
    then still fits): every chunk is then read once per epoch.

    Parameters
    ----------
    source : ImageSource
        The particle images.
    chunk_images : int
        Particles per chunk (> 0).
    max_chunks : int
        Chunks kept in memory (> 0).

    Attributes
    ----------
    chunks_loaded : int
        Chunk reads so far (each re-read after eviction counts again).
    """

    def __init__(self, source: ImageSource, chunk_images: int, max_chunks: int):
        if chunk_images < 1 or max_chunks < 1:
            raise ValueError(f"need chunk_images >= 1 and max_chunks >= 1, got {chunk_images} and {max_chunks}")
        self.source = source
        self.chunk_images = chunk_images
        self.max_chunks = max_chunks
        self.chunks_loaded = 0
        self._chunks: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.source)

    @property
    def box_size(self) -> int:
        return self.source.box_size

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Images of the particles at ``indices``, ``(n, D, D)`` float32, in the order asked."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        chunk_ids, inverse = np.unique(indices // self.chunk_images, return_inverse=True)
        if len(chunk_ids) > self.max_chunks:
            return self._read_source(indices)
        out = np.empty((len(indices), self.box_size, self.box_size), dtype=np.float32)
        inverse = inverse.reshape(-1)
        for k, chunk in enumerate(chunk_ids.tolist()):
            rows = np.flatnonzero(inverse == k)
            out[rows] = self._chunk(chunk)[indices[rows] - chunk * self.chunk_images]
        return out

    def _chunk(self, chunk: int) -> np.ndarray:
        """The images of chunk ``chunk``, read now unless held; evicts the least recently used."""
        if chunk in self._chunks:
            self._chunks.move_to_end(chunk)
            return self._chunks[chunk]
        start = chunk * self.chunk_images
        images = self._read_source(np.arange(start, min(start + self.chunk_images, len(self.source))))
        self.chunks_loaded += 1
        self._chunks[chunk] = images
        if len(self._chunks) > self.max_chunks:
            self._chunks.popitem(last=False)
        return images

    def _read_source(self, indices: np.ndarray) -> np.ndarray:
        """Read from the stacks, then unmap them: pages the maps hold would count in the process's RSS
        (page-cache folios can be megabytes, so even a sparse sample maps much of a stack)."""
        images = read_in_file_order(self.source, indices)
        self.source.close()
        return images

    def __getstate__(self) -> dict:
        # Worker processes start with an empty cache rather than a copy of this one.
        state = self.__dict__.copy()
        state["_chunks"] = OrderedDict()
        return state
