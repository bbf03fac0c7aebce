"""Built-in data set readers."""

from ferzoo import DatasetSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def register_datasets(register):
    register(DatasetSpec(
        name="synthetic", loader="ferzoo.data:synthetic", splits=("train", "val", "test"),
        description="generated blob 'faces' (no download): quick start and smoke tests"))
