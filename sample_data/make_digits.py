"""Regenerate sample_data/ from scikit-learn's handwritten digits (needs scikit-learn; labelscrub itself does not).

    pip install scikit-learn && python sample_data/make_digits.py

Output, all seeded and byte-for-byte reproducible:
- digits/train/<label>/<id>.png and digits/val/<label>/<id>.png: an image folder in the split layout.
  20% of the training images sit in a wrong class folder (flipped uniformly to another digit); val is clean.
- digits-parquet/train.parquet and val.parquet: the same images and given labels in the Hugging Face layout
  (image struct {bytes, path}, int labels, ClassLabel names in the schema metadata).
- digits_flipped.csv: every flipped training sample, with its ids in both forms and its given and true label.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from sklearn.datasets import load_digits

SEED = 2026
HELDOUT_SHARE = 0.2  # of all 1,797 digits, kept clean for measuring accuracy
FLIP_SHARE = 0.2  # of the training digits, moved to a uniformly random other class
HERE = Path(__file__).resolve().parent
CLASS_NAMES = [str(digit) for digit in range(10)]


def main() -> None:
    digits = load_digits()
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)  # 8x8, 17 grey levels -> 0..255
    true_labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(true_labels))
    n_heldout = round(HELDOUT_SHARE * len(order))
    heldout_ids, train_ids = np.sort(order[:n_heldout]), np.sort(order[n_heldout:])

    given = true_labels.copy()
    flipped = np.sort(rng.choice(train_ids, size=round(FLIP_SHARE * len(train_ids)), replace=False))
    for sample in flipped:
        given[sample] = (true_labels[sample] + rng.integers(1, 10)) % 10  # any other digit, uniformly

    for folder in ("digits", "digits-parquet"):
        shutil.rmtree(HERE / folder, ignore_errors=True)
    parquet_row: dict[int, str] = {}
    for split, ids in (("train", train_ids), ("val", heldout_ids)):
        records = []
        for row, sample in enumerate(ids):
            png = _png(pixels[sample])
            target = HERE / "digits" / split / CLASS_NAMES[given[sample]] / f"{sample:04d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(png)
            records.append({"image": {"bytes": png, "path": f"{sample:04d}.png"}, "label": int(given[sample]),
                            "id": f"{sample:04d}"})
            parquet_row[int(sample)] = f"{split}.parquet:{row}"
        _write_parquet(records, HERE / "digits-parquet" / f"{split}.parquet")

    with (HERE / "digits_flipped.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "folder_sample_id", "parquet_sample_id", "given_label", "true_label"])
        for sample in flipped:
            writer.writerow([f"{sample:04d}", f"train/{given[sample]}/{sample:04d}.png", parquet_row[int(sample)],
                             int(given[sample]), int(true_labels[sample])])
    print(f"train {len(train_ids)} (flipped {len(flipped)}), val {len(heldout_ids)} -> {HERE}")


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _write_parquet(records: list[dict], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    features = {"image": {"_type": "Image"}, "label": {"names": CLASS_NAMES, "_type": "ClassLabel"},
                "id": {"dtype": "string", "_type": "Value"}}
    schema = pa.schema([
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("label", pa.int64()),
        ("id", pa.string()),
    ], metadata={"huggingface": json.dumps({"info": {"features": features}})})
    pq.write_table(pa.Table.from_pylist(records, schema=schema), target)


if __name__ == "__main__":
    main()
