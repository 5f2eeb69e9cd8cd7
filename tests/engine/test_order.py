"""Chunked shuffle order and the chunk cache: permutations, locality of batches, identical images."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from hetacumn.data.order import ChunkCache, epoch_order, read_in_file_order
from hetacumn.io.mrc import write_mrc
from hetacumn.io.sources import ImageSource


def _stretches(positions: np.ndarray, length: int) -> int:
    """The fewest stretches of ``length`` consecutive particles that hold all ``positions`` (greedy cover)."""
    count, end = 0, -1
    for p in np.sort(positions):
        if p >= end:
            count, end = count + 1, p + length
    return count


def test_chunked_order_is_a_deterministic_permutation_that_changes_each_epoch():
    subset = np.sort(np.random.default_rng(5).choice(50_000, size=10_007, replace=False))
    for indices in (np.arange(10_007), subset):
        order = epoch_order(indices, seed=3, epoch=1, chunk_images=256, buffer_chunks=4)
        assert np.array_equal(np.sort(order), indices)
        assert np.array_equal(order, epoch_order(indices, seed=3, epoch=1, chunk_images=256, buffer_chunks=4))
        other = epoch_order(indices, seed=3, epoch=2, chunk_images=256, buffer_chunks=4)
        assert np.mean(order != other) > 0.99


def test_zero_chunk_size_is_the_legacy_full_permutation():
    indices = np.sort(np.random.default_rng(0).choice(5000, size=1234, replace=False))
    for seed, epoch in [(0, 0), (7, 3)]:
        legacy = indices[np.random.default_rng(seed + epoch).permutation(len(indices))]
        assert np.array_equal(epoch_order(indices, seed, epoch, chunk_images=0, buffer_chunks=16), legacy)


def test_every_batch_lies_in_at_most_buffer_chunks_stretches():
    n, batch = 100_000 + 37, 64
    order = epoch_order(np.arange(n), seed=0, epoch=0, chunk_images=256, buffer_chunks=4)
    stretches = [_stretches(order[i:i + batch], 256) for i in range(0, n, batch)]
    assert max(stretches) <= 4
    assert np.mean(stretches) > 3.5  # the window really mixes its four chunks
    legacy = epoch_order(np.arange(n), seed=0, epoch=0, chunk_images=0, buffer_chunks=4)
    assert np.mean([_stretches(legacy[i:i + batch], 256) for i in range(0, 20 * batch, batch)]) > 50


def test_positions_are_spread_over_the_epoch():
    n = 100_000
    order = epoch_order(np.arange(n), seed=1, epoch=0, chunk_images=256, buffer_chunks=16)
    position = np.empty(n)
    position[order] = np.arange(n)
    assert abs(np.corrcoef(np.arange(n), position)[0, 1]) < 0.1
    # A uniformly random position is on average n / 3 away from where the particle sits in the file.
    assert abs(np.mean(np.abs(position - np.arange(n))) / n - 1 / 3) < 0.03
    # Over epochs, one particle lands all over the epoch: its positions fill all ten deciles.
    seen = [np.flatnonzero(epoch_order(np.arange(n), 1, e, 256, 16) == 12_345)[0] for e in range(60)]
    assert len(np.unique(np.array(seen) * 10 // n)) == 10


def test_bad_chunk_arguments_are_rejected():
    with pytest.raises(ValueError, match="buffer_chunks"):
        epoch_order(np.arange(10), 0, 0, chunk_images=4, buffer_chunks=0)
    with pytest.raises(ValueError, match="chunk_images"):
        ChunkCache(None, chunk_images=0, max_chunks=2)


class CountingSource(ImageSource):
    """An ImageSource that counts the images it reads."""

    images_read = 0

    def read(self, indices: np.ndarray) -> np.ndarray:
        self.images_read += np.size(indices)
        return super().read(indices)


@pytest.fixture
def source(tmp_path) -> CountingSource:
    """Three 8-px stacks (300, 500, 200 images); each pixel holds its particle's number."""
    paths, value = [], 0
    for k, count in enumerate((300, 500, 200)):
        stack = np.arange(value, value + count, dtype=np.float32)[:, None, None] * np.ones((1, 8, 8), np.float32)
        paths.append(write_mrc(tmp_path / f"s{k}.mrcs", stack, 1.0))
        value += count
    file_index = np.repeat(np.arange(3), (300, 500, 200))
    image_index = np.concatenate([np.arange(c) for c in (300, 500, 200)])
    checked = ImageSource.from_stacks(paths, file_index, image_index, origin=tmp_path / "particles.star")
    return CountingSource(checked.stacks, file_index, image_index)


def test_file_order_read_equals_plain_read(source):
    index = np.array([999, 3, 450, 3, 0, 299, 300, 801])
    assert np.array_equal(read_in_file_order(source, index)[:, 0, 0], index.astype(np.float32))


def test_chunk_cache_serves_an_epoch_reading_each_chunk_once(source):
    cache = ChunkCache(source, chunk_images=64, max_chunks=8)
    order = epoch_order(np.arange(1000), seed=2, epoch=0, chunk_images=64, buffer_chunks=4)
    for start in range(0, 1000, 32):
        batch = order[start:start + 32]
        assert np.array_equal(cache.read(batch)[:, 3, 5], batch.astype(np.float32))
    assert cache.chunks_loaded == 16  # ceil(1000 / 64)
    assert source.images_read == 1000


def test_chunk_cache_reads_wide_requests_directly(source):
    cache = ChunkCache(source, chunk_images=64, max_chunks=4)
    sample = np.random.default_rng(0).choice(1000, size=100, replace=False)
    assert np.array_equal(cache.read(sample)[:, 0, 0], sample.astype(np.float32))
    assert cache.chunks_loaded == 0 and source.images_read == 100
    assert not source._open  # the stacks are unmapped after each read: mapped pages would count in the RSS
    cache.read(np.array([5, 70]))
    restored = pickle.loads(pickle.dumps(cache))
    assert len(cache._chunks) == 2 and len(restored._chunks) == 0
    assert np.array_equal(restored.read(np.array([70]))[:, 0, 0], [70.0])


def test_out_of_core_batches_equal_in_memory_batches(tiny_particles):
    from hetacumn.data.images import ParticleImages

    in_memory = ParticleImages(tiny_particles)
    out_of_core = ParticleImages(tiny_particles, max_memory_gb=0.0, chunk_images=16, buffer_chunks=2)
    assert in_memory.in_memory and not out_of_core.in_memory
    order = epoch_order(np.arange(len(tiny_particles)), seed=0, epoch=0, chunk_images=16, buffer_chunks=2)
    for start in range(0, len(order), 32):
        index = order[start:start + 32]
        expected = in_memory.batch(index, torch.device("cpu")).images
        assert torch.equal(out_of_core.batch(index, torch.device("cpu")).images, expected)
