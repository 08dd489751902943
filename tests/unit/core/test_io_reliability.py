"""Files: atomic writes without collisions, legal long names, typed errors naming the path,
the user's umask for meshes and results.json, stale temporary files removed."""

import os
import subprocess
import sys
import threading

import meshio
import numpy as np
import pytest

from physim import errors
from physim.io import read_mesh, write_mesh
from physim.scenario import write_json_atomic

PTS = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
TETS = np.array([[0, 1, 2, 3]])


def test_concurrent_writes_of_one_path_never_fail(tmp_path):
    path = tmp_path / "m.vtu"
    errs = []
    start = threading.Barrier(40)

    def write(i):
        try:
            start.wait()
            write_mesh(path, PTS, {"tetra": TETS}, point_data={"id": np.full(4, float(i))})
        except Exception as exc:  # collected and reported below
            errs.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errs == []
    m = read_mesh(path)
    assert np.unique(m.point_data["id"]).size == 1  # one complete write, not a mixture
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.vtu"]


def test_long_legal_file_name_is_written(tmp_path):
    name = "a" * 246 + ".vtu"  # 250 characters, legal on every common file system
    out = write_mesh(tmp_path / name, PTS, {"tetra": TETS})
    assert out.name == name and read_mesh(out).points.shape == (4, 3)
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_write_errors_are_physim_errors_naming_the_path(tmp_path):
    too_long = tmp_path / ("b" * 300 + ".vtu")
    with pytest.raises(errors.FileError) as info:
        write_mesh(too_long, PTS, {"tetra": TETS})
    assert str(too_long) in str(info.value) and isinstance(info.value, OSError)
    with pytest.raises(errors.MeshError, match=r"m\.xyz.*unknown mesh format.*'\.xyz'"):
        write_mesh(tmp_path / "m.xyz", PTS, {"tetra": TETS})
    with pytest.raises(errors.MeshError, match="unknown file_format 'nope'"):
        write_mesh(tmp_path / "m.vtu", PTS, {"tetra": TETS}, file_format="nope")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(errors.FileError, match="file/m.vtu"):
        write_mesh(blocker / "m.vtu", PTS, {"tetra": TETS})
    with pytest.raises(errors.InvalidTypeError, match="point_data"):
        write_mesh(tmp_path / "m.vtu", PTS, {"tetra": TETS}, point_data={"o": np.array([None] * 4)})
    with pytest.raises(errors.InvalidTypeError, match="path"):
        write_mesh(12, PTS, {"tetra": TETS})
    with pytest.raises(errors.MissingFileError, match="missing.vtu"):
        read_mesh(tmp_path / "missing.vtu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_meshes_and_results_follow_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        m = write_mesh(tmp_path / "m.vtu", PTS, {"tetra": TETS})
        j = write_json_atomic(tmp_path / "results.json", {"a": 1.0})
    finally:
        os.umask(old)
    assert m.stat().st_mode & 0o777 == mode
    assert j.stat().st_mode & 0o777 == mode


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    from physim._atomic import _HOST, _stem

    path = tmp_path / "m.vtu"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{_stem(path)}{_HOST}-{dead.pid}.zz99yy88.tmp"
    stale.write_bytes(b"half a mesh")
    write_mesh(path, PTS, {"tetra": TETS})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.vtu"]


def test_meshio_roundtrip_of_fields_still_exact(tmp_path):
    data = np.linspace(0, 1, 4)
    write_mesh(tmp_path / "f.vtu", PTS, {"tetra": TETS}, point_data={"t": data}, cell_data={"c": [7]})
    m = meshio.read(tmp_path / "f.vtu")
    np.testing.assert_array_equal(m.point_data["t"], data)
    np.testing.assert_array_equal(m.cell_data["c"][0], [7])
