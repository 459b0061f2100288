"""Ready-made problems shared by the demo, the benchmarks and the gallery.

These modules import their framework (PyTorch) when a problem is built; the
core of natgrad never imports them.
"""
