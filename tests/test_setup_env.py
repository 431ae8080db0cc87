"""Issue 21 item 15: scripts/setup-env.sh decides what is missing reliably, and when nothing is
missing it runs neither apt-get (root, network) nor pip (network)."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIBS = ("libGL.so.1 libEGL.so.1 libxkbcommon-x11.so.0 libxcb-icccm.so.4 libxcb-image.so.0 libxcb-keysyms.so.1 "
        "libxcb-randr.so.0 libxcb-render-util.so.0 libxcb-xinerama.so.0 libxcb-shape.so.0 libxcb-cursor.so.0 "
        "libdbus-1.so.3 libfontconfig.so.1").split()


def _tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + body + "\n")
    path.chmod(0o755)


@pytest.fixture
def sandbox(tmp_path):
    """A copy of the script beside a pyproject.toml, with fake ldconfig, Xvfb, apt-get, sudo and a venv
    whose python records what it is asked to do."""
    if shutil.which("bash") is None or shutil.which("sha256sum") is None:
        pytest.skip("needs bash and sha256sum")
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup-env.sh", root / "scripts" / "setup-env.sh")
    (root / "pyproject.toml").write_text('[project]\nname = "x"\n')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    # a linker cache far longer than a pipe's buffer, every library listed first: `grep -q` stops at its
    # first match and, in a pipeline under pipefail, ldconfig's SIGPIPE made the check fail at random
    listing = "".join(f"\t{lib} (libc6,x86-64) => /usr/lib/{lib}\n" for lib in LIBS)
    listing += "".join(f"\tlibfiller{i}.so.0 (libc6,x86-64) => /usr/lib/libfiller{i}.so.0\n" for i in range(5000))
    (tmp_path / "ldcache.txt").write_text(f"{len(LIBS) + 5000} libs found in cache\n" + listing)
    _tool(bin_dir, "ldconfig", f'cat "{tmp_path / "ldcache.txt"}"')
    _tool(bin_dir, "Xvfb", "exit 0")
    for name in ("apt-get", "sudo"):
        _tool(bin_dir, name, f'echo "{name} $*" >> "{calls}"; exit 1')
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    _tool(venv / "bin", "python", f'case "$1" in -c) exit 0;; *) echo "python $*" >> "{calls}"; exit 1;; esac')
    stamp = hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest()
    (venv / ".vbmd-setup-stamp").write_text(stamp + "\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "VBMD_VENV": str(venv)}
    return root, env, calls, venv


def test_nothing_missing_means_no_root_and_no_network(sandbox):
    root, env, calls, _ = sandbox
    for _ in range(10):  # the old check re-ran apt-get about one time in three
        done = subprocess.run(["bash", str(root / "scripts" / "setup-env.sh")], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "environment up to date" in done.stderr
    assert not calls.exists(), calls.read_text()


def test_a_missing_library_is_named_and_a_changed_project_reinstalls(sandbox, tmp_path):
    root, env, calls, venv = sandbox
    cache = tmp_path / "ldcache.txt"
    cache.write_text(cache.read_text().replace("libxcb-cursor.so.0", "libxcb-other.so.0"))
    done = subprocess.run(["bash", str(root / "scripts" / "setup-env.sh")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0 and "missing libxcb-cursor.so.0" in done.stderr
    assert "apt-get" in calls.read_text()  # only now
    calls.unlink()
    cache.write_text(cache.read_text().replace("libxcb-other.so.0", "libxcb-cursor.so.0"))
    (root / "pyproject.toml").write_text('[project]\nname = "changed"\n')
    done = subprocess.run(["bash", str(root / "scripts" / "setup-env.sh")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0 and "python -m pip install" in calls.read_text()


def test_a_lock_file_for_this_python_and_platform_pins_the_install(sandbox, tmp_path):
    import platform

    root, env, calls, venv = sandbox
    _tool(venv / "bin", "python", f'case "$1" in -c) exit 0;; *) echo "python $*" >> "{calls}";; esac')  # pip works
    python = shutil.which("python3")
    version = subprocess.run([python, "-c", 'import sys; print("%d.%d" % sys.version_info[:2])'],
                             capture_output=True, text=True, check=True).stdout.strip()
    name = f"requirements/lock-py{version}-{platform.system().lower()}-{platform.machine()}.txt"
    (root / "requirements").mkdir()
    (root / name).write_text("# a lock\nnumpy==2.4.6\n")
    run = dict(args=["bash", str(root / "scripts" / "setup-env.sh")], capture_output=True, text=True, timeout=60)

    done = subprocess.run(**run, env={**env, "PYTHON": python})  # the stamp was of pyproject.toml alone
    assert done.returncode == 0, done.stderr
    assert f'python -m pip install -q -e .[qt,testing] -c {name}' in calls.read_text()
    locked = hashlib.sha256((root / "pyproject.toml").read_bytes() + (root / name).read_bytes()).hexdigest()
    assert (venv / ".vbmd-setup-stamp").read_text().strip() == locked
    calls.unlink()
    done = subprocess.run(**run, env={**env, "PYTHON": python})
    assert done.returncode == 0 and "environment up to date" in done.stderr and not calls.exists()

    done = subprocess.run(**run, env={**env, "PYTHON": python, "VBMD_UNLOCKED": "1"})  # the newest releases
    assert done.returncode == 0 and "python -m pip install -q -e .[qt,testing]\n" in calls.read_text()
    (root / name).unlink()  # no lock for this platform: said, and the newest releases
    done = subprocess.run(**run, env={**env, "PYTHON": python})
    assert f"setup: no {name} for this Python and platform: the newest releases" in done.stderr
