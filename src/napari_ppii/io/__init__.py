# SPDX-License-Identifier: BSD-3-Clause
"""Scan I/O: the :class:`Scan` value, readers for radiographs and CT, boxes, writers."""

from ..errors import InputError
from .boxes import Box, read_boxes, read_boxes_csv, read_lidc_xml, write_boxes_csv
from .readers import (
    SCAN_SUFFIXES,
    SeriesInfo,
    list_series,
    read_dicom_file,
    read_dicom_series,
    read_itk,
    read_raster,
    read_scan,
    scan_files,
    scan_suffix,
)
from .scan import Scan
from .writers import write_array

__all__ = [
    "Box",
    "InputError",
    "SCAN_SUFFIXES",
    "Scan",
    "SeriesInfo",
    "list_series",
    "read_boxes",
    "read_boxes_csv",
    "read_dicom_file",
    "read_dicom_series",
    "read_itk",
    "read_lidc_xml",
    "read_raster",
    "read_scan",
    "scan_files",
    "scan_suffix",
    "write_array",
    "write_boxes_csv",
]
