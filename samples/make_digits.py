"""Build `digits.npz`, kdcli's bundled sample, from scikit-learn's copy of UCI digits.

Run once by a maintainer, from the repository root:

    pip install scikit-learn && python samples/make_digits.py

kdcli itself never needs scikit-learn. The split is the one kdcli applies to
any `x, y` file with the default `--val-split 0.2` (stratified by class, fixed
seed), so running the script again writes the same arrays.
"""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from kdcli.data import SPLIT_SEED, stratified_split


def main():
    digits = load_digits()
    x = digits.images.astype(np.uint8)  # (1797, 8, 8), grey levels 0..16
    y = digits.target.astype(np.uint8)
    train, test = stratified_split(y, 0.2, SPLIT_SEED)
    out = Path(__file__).with_name("digits.npz")
    np.savez_compressed(out, x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test])
    print(f"{out}: {len(train)} train, {len(test)} test")


if __name__ == "__main__":
    main()
