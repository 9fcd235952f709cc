"""The restricted unpickler: plain containers and numpy arrays of the admitted dtypes load; every other global,
dtype or trick is refused before it can run anything."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

from uqbench.safe_pickle import Refused, RestrictedUnpickler, load_arrays


def _load(data: bytes, dtypes: tuple[str, ...] = ("u1",)):
    return load_arrays(io.BytesIO(data), dtypes=dtypes)


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4])
def test_uint8_arrays_and_plain_containers_load(protocol):
    value = {"data": np.arange(12, dtype=np.uint8).reshape(3, 4), "labels": [1, 2, 3], b"name": b"x", "t": (1.5, None)}
    got = _load(pickle.dumps(value, protocol=protocol))
    np.testing.assert_array_equal(got["data"], value["data"])
    assert got["data"].dtype == np.uint8 and {k: v for k, v in got.items() if k != "data"} == {
        "labels": [1, 2, 3], b"name": b"x", "t": (1.5, None)}


class _Touch:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return exec, (f"open({str(self.path)!r}, 'w').close()",)


@pytest.mark.parametrize("protocol,asked", [(2, "__builtin__.exec"), (4, "builtins.exec")])
def test_any_other_global_is_refused_unrun(tmp_path, protocol, asked):
    marker = tmp_path / "pwned"
    with pytest.raises(Refused, match=rf"^it asks for {asked}$"):
        _load(pickle.dumps({"data": _Touch(marker)}, protocol=protocol))
    assert not marker.exists()


@pytest.mark.parametrize("array,dtype", [(np.array([1, "x"], dtype=object), "'O8'"), (np.zeros(2), "'f8'"),
                                         (np.zeros(2, dtype=[("a", "u1")]), "'V1'")])
def test_arrays_of_other_dtypes_are_refused(array, dtype):
    with pytest.raises(Refused, match=rf"^it asks for an array of dtype {dtype}$"):
        _load(pickle.dumps({"data": array}, protocol=2))


def test_a_dtype_state_that_adds_metadata_is_refused():
    array = np.zeros(2, dtype=np.dtype("u1", metadata={"x": 1}))
    with pytest.raises(Refused, match="^it holds an array of dtype uint8$"):
        _load(pickle.dumps(array, protocol=2))


def test_numpy_ndarray_is_only_a_token_and_codecs_only_latin1():
    called = b"\x80\x02cnumpy\nndarray\nK\x02\x85X\x01\x00\x00\x00O\x86R."  # numpy.ndarray((2,), 'O')
    with pytest.raises(Refused, match="^it calls numpy.ndarray directly$"):
        _load(called)
    rot13 = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(Refused, match="^it asks for _codecs.encode of str with encoding 'rot13'$"):
        _load(rot13)


def test_persistent_ids_are_refused():
    with pytest.raises(Refused, match="persistent object"):
        RestrictedUnpickler(io.BytesIO(b"\x80\x02X\x01\x00\x00\x00aQ."), {}).load()
