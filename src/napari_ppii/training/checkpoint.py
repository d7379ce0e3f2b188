"""Checkpoint I/O lives in :mod:`napari_ppii.checkpoint` (inference needs it without the trainer)."""

from ..checkpoint import FORMAT, VERSION, export_weights, load_checkpoint, save_checkpoint

__all__ = ["FORMAT", "VERSION", "export_weights", "load_checkpoint", "save_checkpoint"]

if __name__ == "__main__":  # python -m napari_ppii.training.checkpoint SRC DST (kept for old scripts)
    import sys

    print(export_weights(sys.argv[1], sys.argv[2]))
