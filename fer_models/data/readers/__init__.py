"""Dataset readers: one module per ``DATASETS`` entry (imported on first lookup).

The public API is here: :func:`read_dataset` (the factory) and, for a new reader, the
base class :class:`DatasetReader` and its helpers. A new dataset is one new module in this
package, e.g. ``mydata.py``::

    from fer_models.data.manifest import Sample
    from fer_models.data.readers import DatasetReader, add_if_exists
    from fer_models.registry import DATASETS

    @DATASETS.register("mydata", classes=7)
    class MyData(DatasetReader):
        \"\"\"My dataset: one line per image, "<file> <label>".\"\"\"

        name, title = "mydata", "MyData"

        def check(self, root, opts):  # options are already validated (``options``, ``choices``)
            self.require(root, "labels.txt")

        def collect(self, root, manifest, opts):
            for line in (root / "labels.txt").read_text().splitlines():
                name, label = line.split()  # label already in the project's order here
                add_if_exists(manifest, Sample(path=str(root / name), split="train", label=int(label)))
"""

from fer_models.data.readers._base import (
    DATA_ENV,
    DatasetReader,
    add_if_exists,
    check_options,
    fold_options,
    read_dataset,
    reader,
    subject_folds,
    verify_images,
)

__all__ = ["DATA_ENV", "DatasetReader", "add_if_exists", "check_options", "fold_options", "read_dataset",
           "reader", "subject_folds", "verify_images"]
