"""`whale --version` / `-V`: the project version from CMakeLists.txt and, when built from a git
checkout, the commit it was built from; a source tree outside git still configures and says the
version alone."""
import re
import shutil
import subprocess

import pytest

from conftest import REPO, run_whale

LINE = re.compile(r"whale (\d+\.\d+\.\d+)(?: \(git ([0-9a-f]{12})(, modified)?\))?\n")


def project_version():
    m = re.search(r"project\(whale VERSION (\d+\.\d+\.\d+)", (REPO / "CMakeLists.txt").read_text())
    assert m, "CMakeLists.txt has no project version"
    return m.group(1)


def in_git(path):
    return shutil.which("git") and subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"],
                                                  capture_output=True).returncode == 0


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    out = run_whale(flag).stdout.decode()
    m = LINE.fullmatch(out)
    assert m, out
    assert m.group(1) == project_version()
    if in_git(REPO):
        assert m.group(2), f"built from a git checkout, but no commit in {out!r}"
        # A commit of this repository (the build may predate the newest commit).
        assert subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", m.group(2) + "^{commit}"]).returncode == 0


def test_version_in_help():
    assert run_whale("--help").stdout.decode().startswith(f"whale {project_version()}")


def test_configure_outside_git(tmp_path):
    """A source tree without .git (a release tarball): CMake configures, and version.h holds the
    version with no commit."""
    if not shutil.which("cmake"):
        pytest.skip("cmake missing")
    src = tmp_path / "whale"
    for d in ["cmake", "include", "src", "tests", "web", "bench"]:
        shutil.copytree(REPO / d, src / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "CMakeLists.txt", src)
    if in_git(src):
        pytest.skip(f"{tmp_path} lies inside a git checkout")
    p = subprocess.run(["cmake", "-S", str(src), "-B", str(src / "build")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    header = (src / "build" / "gen" / "version.h").read_text()
    assert f'#define WHALE_VERSION_FULL "{project_version()}"' in header, header
