"""Test helper: write minimal DICOM files (pydicom is imported on use)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np


def write_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    slope: float = 1.0,
    intercept: float = 0.0,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    samples: int = 1,
    extra: Optional[dict[str, Any]] = None,
) -> None:
    """A minimal valid single-frame DICOM file (Secondary Capture).

    ``extra`` sets more attributes by keyword (e.g. ``SeriesInstanceUID``,
    ``ImagePositionPatient``) before saving.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = stored.shape[:2]
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope = repr(float(slope))
    ds.RescaleIntercept = repr(float(intercept))
    ds.PixelData = stored.astype(np.uint16).tobytes()
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    ds.save_as(str(path), enforce_file_format=True)
