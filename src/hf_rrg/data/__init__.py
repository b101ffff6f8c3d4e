"""Data path: dataset builders (`load_builder`), Parquet export and dataset statistics.

Light to import: `datasets`, `pyarrow` and the report cleaners are imported inside the functions.
"""

from .builders import (
    DEFAULT_SPLIT_RATIOS,
    available_builders,
    builder_script_path,
    counted_split,
    deterministic_split,
    load_builder,
    load_builder_class,
    make_builder,
)
from .export import export_parquet
from .stats import dataset_statistics, format_statistics

__all__ = [
    "DEFAULT_SPLIT_RATIOS",
    "available_builders",
    "builder_script_path",
    "dataset_statistics",
    "counted_split",
    "deterministic_split",
    "export_parquet",
    "format_statistics",
    "load_builder",
    "load_builder_class",
    "make_builder",
]
