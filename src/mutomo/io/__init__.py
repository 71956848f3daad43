"""File input and output: hits (CSV, ROOT, HDF5)."""

from mutomo.io.hits import (
    HitsData,
    HitsFileError,
    hits_from_simulation,
    read_csv,
    read_hdf5,
    read_root,
    write_csv,
    write_hdf5,
    write_root,
)

__all__ = [
    "HitsData",
    "HitsFileError",
    "hits_from_simulation",
    "read_csv",
    "read_hdf5",
    "read_root",
    "write_csv",
    "write_hdf5",
    "write_root",
]
