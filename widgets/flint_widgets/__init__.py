"""flint's Jupyter widgets (installed with the ``lab`` extra)."""

__all__: list[str] = []
