"""MRC volumes and stacks: fixture stacks read as mrcfile reads them, round trips, bad files refused."""

from __future__ import annotations

import warnings

import mrcfile
import numpy as np
import pytest

from hetacumn.errors import InputError
from hetacumn.io.mrc import MRCStack, read_mrc, write_mrc


def _permissive(path):
    """The reference reader: mrcfile itself, permissive, its header warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with mrcfile.open(path, permissive=True) as mrc:
            return np.array(mrc.data, dtype=np.float32)


@pytest.mark.parametrize("name, shape", [("relion31.mrcs", (5, 256, 256)), ("toy_projections.mrcs", (1000, 30, 30))])
def test_stacks_without_map_id_are_read(interop_dir, name, shape):
    reference = _permissive(interop_dir / name)
    with MRCStack(interop_dir / name) as stack:
        assert stack.shape == shape and stack.box_size == shape[1] and len(stack) == shape[0]
        assert stack.pixel_size_angstrom == pytest.approx(1.0)
        picked = np.array([4, 0, 2, 2])
        np.testing.assert_array_equal(stack.read(picked), reference[picked])


def test_volume_read_matches_mrcfile(interop_dir):
    volume, voxel_size = read_mrc(interop_dir / "toymodel_small_nocenter.mrc")
    assert volume.shape == (30, 30, 30) and volume.dtype == np.float32
    assert voxel_size == pytest.approx(1.0)
    np.testing.assert_array_equal(volume, _permissive(interop_dir / "toymodel_small_nocenter.mrc"))


def test_write_read_keeps_data_and_voxel_size(tmp_path):
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(8, 8, 8)).astype(np.float32)
    path = write_mrc(tmp_path / "v.mrc", volume, 1.7)
    back, voxel_size = read_mrc(path)
    np.testing.assert_array_equal(back, volume)
    assert voxel_size == pytest.approx(1.7, abs=1e-6)
    with mrcfile.open(path) as mrc:  # strict mode: a standard file
        assert tuple(mrc.header.origin.item()) == (0.0, 0.0, 0.0)
    with pytest.raises(InputError, match="exists"):
        write_mrc(path, volume, 1.7)
    write_mrc(path, 2 * volume, 1.0, overwrite=True)
    assert read_mrc(path)[0][1, 2, 3] == pytest.approx(2 * volume[1, 2, 3])


def test_stack_written_as_mrcs_reads_back(tmp_path):
    images = np.arange(3 * 4 * 4, dtype=np.float32).reshape(3, 4, 4)
    write_mrc(tmp_path / "s.mrcs", images, 2.5)
    with MRCStack(tmp_path / "s.mrcs") as stack:
        assert stack.pixel_size_angstrom == pytest.approx(2.5)
        np.testing.assert_array_equal(stack.read(np.array([2, 1])), images[[2, 1]])


def test_nonstandard_axis_order_is_reordered_to_zyx(tmp_path):
    volume = np.random.default_rng(1).normal(size=(4, 6, 8)).astype(np.float32)  # [z, y, x]
    path = tmp_path / "xyz.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.ascontiguousarray(volume.transpose(2, 1, 0)))  # stored with sections along x
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 3, 2, 1
    np.testing.assert_array_equal(read_mrc(path)[0], volume)


def _bad_file(tmp_path, kind):
    path = tmp_path / f"{kind}.mrcs"
    if kind == "header":
        path.write_bytes(b"not an mrc file")
    elif kind == "garbage":
        path.write_bytes(b"x" * 4000)
    elif kind == "nonsquare":
        write_mrc(path, np.zeros((2, 4, 6), np.float32), 1.0)
    elif kind == "mode":
        with mrcfile.new(path) as mrc:
            mrc.set_data(np.zeros((2, 4, 4), np.complex64))
    return path


@pytest.mark.parametrize("kind, message", [
    ("header", "unreadable MRC header"),
    ("garbage", "unreadable MRC data"),
    ("nonsquare", r"non-square images \(4 x 6 px\)"),
    ("mode", "wrong MRC mode 4"),
])
def test_bad_stacks_raise_input_error_naming_the_file(tmp_path, kind, message):
    path = _bad_file(tmp_path, kind)
    with pytest.raises(InputError, match=message) as error:
        MRCStack(path)
    assert error.value.path == str(path)


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_nan_and_out_of_range_reads_are_refused(tmp_path):
    images = np.ones((3, 4, 4), np.float32)
    images[1, 2, 2] = np.nan
    path = write_mrc(tmp_path / "nan.mrcs", images, 1.0)
    with MRCStack(path) as stack:
        assert stack.read(np.array([0, 2])).sum() == pytest.approx(32.0)
        with pytest.raises(InputError, match="NaN or Inf") as error:
            stack.read(np.array([1]))
        assert "nan.mrcs" in str(error.value)
        with pytest.raises(InputError, match="beyond the stack of 3 images"):
            stack.read(np.array([3]))
    with pytest.raises(InputError, match="NaN or Inf"):
        read_mrc(path)
    with pytest.raises(InputError, match="file not found"):
        read_mrc(tmp_path / "absent.mrc")


def test_only_mrcfile_header_warnings_count_as_header_problems(tmp_path, monkeypatch, caplog):
    from hetacumn.io import mrc

    write_mrc(tmp_path / "a.mrc", np.ones((4, 4, 4), np.float32), 2.0)
    write_mrc(tmp_path / "b.mrc", np.ones((4, 4, 4), np.float32), 2.0)
    real_mmap = mrcfile.mmap

    def mmap_warning(category):
        def opened(*args, **kwargs):
            warnings.warn("Setting the dtype on a NumPy array has been deprecated", category)
            return real_mmap(*args, **kwargs)
        return opened

    monkeypatch.setattr(mrc.mrcfile, "mmap", mmap_warning(DeprecationWarning))  # a newer numpy inside mrcfile
    with caplog.at_level("WARNING"):
        assert read_mrc(tmp_path / "a.mrc")[1] == 2.0
    assert "not standard" not in caplog.text
    monkeypatch.setattr(mrc.mrcfile, "mmap", mmap_warning(RuntimeWarning))  # how mrcfile reports a header problem
    with caplog.at_level("WARNING"):
        assert read_mrc(tmp_path / "b.mrc")[1] == 2.0
    assert "b.mrc: MRC header is not standard, read anyway" in caplog.text

