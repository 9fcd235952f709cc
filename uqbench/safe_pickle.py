"""Restricted unpickling of data files that come from elsewhere (CIFAR's python batches).

`pickle.load` runs whatever callables a pickle names, so a crafted file executes code before its contents can be
checked. `RestrictedUnpickler` admits only the globals it is given, by their `module.name` as written in the
pickle, and refuses every other one (`Refused`) before importing anything. `load_arrays` admits what a pickle of
plain containers and numpy arrays needs, and only arrays of the dtypes named.

What numpy's pickles name (protocols 2 to 4, read with `pickletools.dis`): an array is rebuilt by
`numpy.core.multiarray._reconstruct` (numpy 1.x, e.g. the CIFAR batches) or `numpy._core.multiarray._reconstruct`
(numpy 2), given `numpy.ndarray`, then filled by its state, whose dtype is made by `numpy.dtype`. Python 3 writes
bytes in protocol 2 as `_codecs.encode(text, 'latin1')`, which is admitted for exactly that conversion.
"""

from __future__ import annotations

import pickle
from typing import IO, Any, Iterable, Mapping

import numpy as np

_RECONSTRUCT = np.empty(0).__reduce__()[0]  # the function numpy itself pickles arrays with


class Refused(pickle.UnpicklingError):
    """A pickle that asks for a global (or a dtype) the reader does not admit."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the admitted globals.

    Args:
        file: binary file positioned at the pickle.
        admitted: 'module.name' as written in the pickle -> the object to use for it.
        encoding: how Python 2 `str` objects are decoded ('latin1' keeps numpy's raw array bytes intact).
    """

    def __init__(self, file: IO[bytes], admitted: Mapping[str, Any], encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self.admitted = dict(admitted)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.admitted[f"{module}.{name}"]
        except KeyError:
            raise Refused(f"it asks for {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise Refused("it asks for a persistent object")


class _ArrayClass:
    """Stands for `numpy.ndarray` in a pickle: usable only as `_reconstruct`'s first argument."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise Refused("it calls numpy.ndarray directly")


def numpy_globals(dtypes: Iterable[str]) -> dict[str, Any]:
    """The globals a pickle of numpy arrays of `dtypes` (numpy dtype strings, e.g. 'u1') asks for."""
    allowed = {np.dtype(d) for d in dtypes}
    array_class = _ArrayClass()

    def reconstruct(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
        if cls is not array_class:
            raise Refused("it rebuilds an array of another class than numpy.ndarray")
        return _RECONSTRUCT(np.ndarray, shape, typecode)

    def dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
        if not isinstance(spec, str) or spec not in {d.str[1:] for d in allowed} | {d.str for d in allowed}:
            raise Refused(f"it asks for an array of dtype {spec!r}")
        return np.dtype(spec, bool(align), True)  # a fresh instance: the pickle's state never reaches numpy's own

    return {
        "numpy.core.multiarray._reconstruct": reconstruct,
        "numpy._core.multiarray._reconstruct": reconstruct,
        "numpy.ndarray": array_class,
        "numpy.dtype": dtype,
        "_codecs.encode": _latin1_bytes,
    }


def _latin1_bytes(text: Any, encoding: str = "utf-8") -> bytes:
    """`_codecs.encode` as Python 3's protocol-2 pickles use it: str -> bytes through latin1, nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise Refused(f"it asks for _codecs.encode of {type(text).__name__} with encoding {encoding!r}")
    return text.encode("latin1")


def load_arrays(file: IO[bytes], dtypes: Iterable[str] = ("u1",), encoding: str = "latin1") -> Any:
    """Unpickle plain containers, numbers, strings and numpy arrays of `dtypes`; anything else is refused.

    Raises:
        Refused: the pickle asks for another global, or holds an array of another dtype (object arrays included).
        pickle.UnpicklingError, EOFError, TypeError, ValueError, ...: not a well-formed pickle.
    """
    dtypes = tuple(dtypes)
    obj = RestrictedUnpickler(file, numpy_globals(dtypes), encoding).load()
    _check_arrays(obj, {np.dtype(d) for d in dtypes})
    return obj


def _plain(dtype: np.dtype) -> bool:
    """A dtype without fields, subarrays, objects or metadata (a pickled dtype's state can add any of them)."""
    return dtype.fields is None and dtype.subdtype is None and not dtype.hasobject and dtype.metadata is None


def _check_arrays(obj: Any, allowed: set[np.dtype]) -> None:
    """Refuse any array in `obj` (walked through dicts, lists and tuples) whose dtype is not one of `allowed`."""
    stack, seen = [obj], set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            if not _plain(item.dtype) or item.dtype.str not in {d.str for d in allowed}:
                raise Refused(f"it holds an array of dtype {item.dtype}")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
