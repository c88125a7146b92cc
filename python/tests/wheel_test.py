"""The wheel: its files are the package's, RECORD's hashes hold, the tags
say CPython 3.11 on Linux x86-64, the build is reproducible, and it installs
offline into a --system-site-packages venv and imports from there."""

import base64
import glob
import hashlib
import os
import re
import subprocess
import sys
import zipfile

import pytest

import build_wheel

RUNFILES = os.path.join(os.environ.get("TEST_SRCDIR", ".."), "tandem")
PACKAGE = sorted(glob.glob(os.path.join(RUNFILES, "python/tandem/*")))
WHEELS = glob.glob(os.path.join(RUNFILES, "python/tandem-*.whl"))


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _version():
    init = _read(os.path.join(RUNFILES, "python/tandem/__init__.py")).decode()
    return re.search(r'^__version__ = "([^"]+)"', init, re.M).group(1)


def _record_errors(members):
    """What in a wheel's {name: bytes} disagrees with its RECORD."""
    record = next(n for n in members if n.endswith(".dist-info/RECORD"))
    errors, listed = [], set()
    for line in members[record].decode().splitlines():
        name, digest, size = line.rsplit(",", 2)
        listed.add(name)
        if name == record:
            continue
        data = members.get(name)
        want = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data or b"").digest()).rstrip(b"=").decode()
        if data is None or digest != want or int(size) != len(data):
            errors.append(name)
    return errors + sorted(set(members) - listed)


@pytest.fixture(scope="module")
def wheel():
    assert len(WHEELS) == 1, WHEELS
    with zipfile.ZipFile(WHEELS[0]) as z:
        return {n: z.read(n) for n in z.namelist()}


def test_name_tags_and_metadata(wheel):
    v = _version()
    assert os.path.basename(WHEELS[0]) == f"tandem-{v}-cp311-cp311-linux_x86_64.whl"
    info = f"tandem-{v}.dist-info"
    assert "Tag: cp311-cp311-linux_x86_64" in wheel[f"{info}/WHEEL"].decode().splitlines()
    assert "Root-Is-Purelib: false" in wheel[f"{info}/WHEEL"].decode().splitlines()
    meta = wheel[f"{info}/METADATA"].decode()
    assert f"Name: tandem\nVersion: {v}\n" in meta and "Debian 12" in meta


def test_files_are_the_package_and_record_holds(wheel):
    v = _version()
    package = {"tandem/" + os.path.basename(p): _read(p) for p in PACKAGE}
    assert {"tandem/_tandem.so", "tandem/eplb.py", "tandem/schedule.py", "tandem/schedule_pb2.py"} <= set(package)
    info = {f"tandem-{v}.dist-info/{n}" for n in ("METADATA", "WHEEL", "RECORD")}
    assert set(wheel) == set(package) | info
    for name, data in package.items():
        assert wheel[name] == data, name
    assert _record_errors(wheel) == []


def test_a_changed_file_breaks_the_record(wheel):
    """Must-fail twin of the RECORD check."""
    tampered = dict(wheel)
    tampered["tandem/eplb.py"] = wheel["tandem/eplb.py"].replace(b"reference", b"referencf", 1)
    assert _record_errors(tampered) == ["tandem/eplb.py"]


def test_the_build_is_reproducible(tmp_path, wheel):
    out = tmp_path / os.path.basename(WHEELS[0])
    build_wheel.build(str(out), _version(), PACKAGE)
    assert _read(str(out)) == _read(WHEELS[0])
    with pytest.raises(ValueError, match="__version__"):
        build_wheel.build(str(tmp_path / "tandem-9.9-cp311-cp311-linux_x86_64.whl"), "9.9", PACKAGE)


def test_installs_offline_into_a_venv_and_imports(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PIP_NO_CACHE_DIR"] = "1"
    subprocess.run([str(venv / "bin/pip"), "install", "-q", "--no-index", "--no-deps", WHEELS[0]], check=True,
                   env=env)
    code = ("import tandem, tandem.eplb as e; print(tandem.__file__); "
            "print(e.rebalance_experts([[3, 1, 2, 2]], 4, 1, 1, 2)[2])")
    out = subprocess.run([str(venv / "bin/python"), "-c", code], capture_output=True, text=True, env=env,
                         cwd=str(tmp_path), check=True).stdout.split()
    assert out[0].startswith(str(venv)), out
    assert " ".join(out[1:]) == "[[1, 1, 1, 1]]", out


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
