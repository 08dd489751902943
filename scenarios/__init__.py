"""physim's scenario scripts, installed as ``physim.scenarios``.

Each module is a standalone script (``python scenarios/NAME.py`` in a source
checkout, ``physim run NAME`` anywhere); importing this package runs nothing.
"""
