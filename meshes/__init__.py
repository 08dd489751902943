"""The shipped biventricular meshes, installed as ``physim.meshes`` (see ``generate_meshes.py``)."""
