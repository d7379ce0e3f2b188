"""The bundled sample data (see README.md here), shipped in wheels as ``napari_ppii.resources`` and read
with :mod:`importlib.resources`."""
