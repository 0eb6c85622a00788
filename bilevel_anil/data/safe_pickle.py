"""Reading the natural-image sets' published pickle files without running code from them.

mini-ImageNet, tiered-ImageNet and FC100 are distributed as Python pickles, which learn2learn
reads with ``pickle.load``: a crafted file could run any code on load. While learn2learn reads
them, ``restricted_pickle`` replaces the ``pickle`` module its dataset modules use with one
whose unpickler admits only what these formats hold (numpy arrays and scalars, dicts, lists,
strings, bytes, numbers); anything else (``os.system``, any other class or function) stops the
load with ``pickle.UnpicklingError`` before it is called.

Example:
    >>> import io, pickle, numpy as np
    >>> data = pickle.dumps({"image_data": np.zeros((2, 3), np.uint8), "class_dict": {"n01": [0, 1]}})
    >>> RestrictedUnpickler(io.BytesIO(data)).load()["class_dict"]
    {'n01': [0, 1]}
"""
from __future__ import annotations

import contextlib
import pickle
import types
from typing import Iterator

ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # how protocols 2-3 store bytes (a str and its encoding): builds bytes only
}


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler (the pure-Python one, which learn2learn's FC100 loader subclasses by name)
    that resolves only the globals in ``ALLOWED``."""

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED or (module.startswith("numpy.dtypes") and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}: the file asks to run code or build objects "
                                     "other than numpy arrays, dicts, lists and strings")


def _load(file, **kwargs):
    return RestrictedUnpickler(file, **kwargs).load()


SAFE_PICKLE = types.SimpleNamespace(load=_load, Unpickler=RestrictedUnpickler, _Unpickler=RestrictedUnpickler,
                                    UnpicklingError=pickle.UnpicklingError)


@contextlib.contextmanager
def restricted_pickle(*modules: types.ModuleType) -> Iterator[None]:
    """While active, ``module.pickle`` of each module is ``SAFE_PICKLE``."""
    saved = [(m, m.pickle) for m in modules if hasattr(m, "pickle")]
    for m, _ in saved:
        m.pickle = SAFE_PICKLE
    try:
        yield
    finally:
        for m, original in saved:
            m.pickle = original
