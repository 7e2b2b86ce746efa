"""The oracle of the SeqGAN paper's synthetic experiment as seqgan.py --oracle reads it: the SeqGAN authors'
save/target_params_py3.pkl (github.com/LantaoYu/SeqGAN, a pickled list of the 15 arrays of their target_lstm.py, in
its order: the embedding, then the input, forget, output and cell gates' W, U, b, then the output layer's W and b)
written as float32 arrays named emb, Wi, Ui, bi, Wf, Uf, bf, Wog, Uog, bog, Wc, Uc, bc, Wo, bo in an .npz file.
The pickle is read by an unpickler that builds numpy arrays and nothing else.

    curl -LO https://github.com/LantaoYu/SeqGAN/raw/master/save/target_params_py3.pkl
    python benchmarks/seqgan_oracle.py target_params_py3.pkl seqgan_oracle_params.npz
"""
import importlib
import pickle
import sys

import numpy as np

NAMES = ("emb", "Wi", "Ui", "bi", "Wf", "Uf", "bf", "Wog", "Uog", "bog", "Wc", "Uc", "bc", "Wo", "bo")


class ArraysOnly(pickle.Unpickler):
    """Builds numpy arrays (and their dtypes) only: a pickle that asks for anything else is refused."""

    def find_class(self, module, name):
        allowed = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                   ("numpy", "ndarray"), ("numpy", "dtype")}
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a list of arrays")
        module = module.replace("numpy.core", "numpy._core") if hasattr(np, "_core") else module
        return getattr(importlib.import_module(module), name)


def convert(pkl: str, npz: str) -> dict:
    with open(pkl, "rb") as f:
        params = ArraysOnly(f, encoding="latin1").load()
    if not isinstance(params, list) or len(params) != len(NAMES):
        sys.exit(f"{pkl}: not the list of {len(NAMES)} arrays of target_lstm.py")
    arrays = {name: np.asarray(a, dtype=np.float32) for name, a in zip(NAMES, params)}
    np.savez(npz, **arrays)
    return arrays


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    for name, a in convert(sys.argv[1], sys.argv[2]).items():
        print(name, a.shape)
