"""Code run where file modes refuse what they say: tests run as root, whom no mode refuses
(a file of mode 000 opens), so the code runs in a process under ``setpriv`` without the two
capabilities that let root past them (same uid 0, its chmod now applies); as another user, in a
plain one. Each is a fork of a Python started so, one for each set of the settings Python
and torch read as they start (tests/forking_python.py says what a fork takes fresh and what it
keeps of that Python's; tests/forking_servers.py starts and keeps them). The conftest fixtures ``unsearchable`` and ``locked`` refuse folders
in this process; a file's own mode, which open() reads in C (h5py, PIL, scipy), needs this.

A test's files of this user's own (mode 000) are refused wherever modes apply; a file of
another user's (:func:`others`) only as root, who alone may give a file away: each test takes
``whose`` (:data:`WHOSE`, :func:`refuse`), so that the other-user case alone is skipped for a
plain user. Where no such Python can be started, the test is skipped; in CI (CI set), where
setpriv must be there, one missing fails it, as reference_files' ``need_reference`` does."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from forking_servers import _command, _forked
from processes import src_env

#: Why no Python where modes apply can be started as root: setpriv (util-linux) is missing.
NO_SETPRIV = "setpriv (util-linux) is not installed: as root, no file mode refuses a read"


@functools.cache
def _unusable() -> str | None:
    """Why no such Python can be started here (None: it can): no POSIX users, setpriv missing,
    or a file of mode 000 still read under it."""
    if not hasattr(os, "geteuid"):
        return "this system has no POSIX file modes"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return NO_SETPRIV
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "probe"
        probe.write_text("x")
        probe.chmod(0)
        code = f"open({str(probe)!r}).read()"
        ran = subprocess.run([*_command(), "-c", code], capture_output=True, check=False)
    if ran.returncode == 0:
        return "a file of mode 000 is read even so (root's capabilities cannot be dropped here)"
    return None


def where_modes_apply(code: str, timeout: float = 60) -> dict:
    """Run ``code`` (Python, which sets ``result``: anything JSON holds) where file modes
    apply, with loftup and the tests' helpers importable; ``result`` as it was set. The test
    is skipped where that cannot be done (failed in CI where setpriv is missing), and fails
    where the code has not ended in ``timeout`` seconds (killed, with what it started)."""
    why = _unusable()
    if why == NO_SETPRIV and os.environ.get("CI"):
        pytest.fail(f"{why}; CI runs these tests: install util-linux")
    if why is not None:
        pytest.skip(why)
    script = f"import json, sys\n{code}\nsys.stdout.write('\\n' + json.dumps(result))\n"
    status, out, err = _forked(script, fork_env(), timeout)
    assert status == 0, err
    return json.loads(out.splitlines()[-1])


def fork_env() -> dict:
    """This process's environment, with loftup's source, then the tests' helpers, then what
    PYTHONPATH holds here (test_min_versions.py: older releases) on the path."""
    return src_env(Path(__file__).parent)


def commands(cases: dict) -> str:
    """Code for :func:`where_modes_apply` running each of ``cases`` (name: argv) through
    loftup's main, its ``result`` {name: [exit code, its stderr, stripped]}."""
    return f"""
import contextlib, io
from loftup.cli import main
result = {{}}
for name, argv in {cases!r}.items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    result[name] = [code, err.getvalue().strip()]
"""


def told(call) -> str:
    """ "TYPE: message" of what ``call()`` raises, or "none" where it raises nothing (for the
    code :func:`where_modes_apply` runs, to put in its ``result``)."""
    try:
        call()
    except Exception as e:  # noqa: BLE001 - what it raised is the answer
        return f"{type(e).__name__}: {e}"
    return "none"


#: The two cases of :func:`refuse`: a file of this user's own, and another user's. The second
#: is a slow test where it is a parameter (``parametrize("whose", WHOSE)``): the wording for
#: another user's file (its owner, the chmod of the group or others) is read_refused's alone,
#: checked in the default suite by test_read_refused_fix.py, and each entry point's own
#: refusal by its "own" case.
OWN, ANOTHER = "own", "another user's"
WHOSE = [OWN, pytest.param(ANOTHER, marks=pytest.mark.slow, id=ANOTHER)]


def refuse(path: Path, whose: str) -> str | None:
    """``path`` made a file this user may not read: its own of mode 000 (``whose`` "own":
    None returned) or another user's of mode 600 (:func:`others`: that user's name)."""
    assert whose in (OWN, ANOTHER), whose
    if whose == OWN:
        path.chmod(0)
        return None
    return others(path)


def others(path: Path, mode: int = 0o600, *, my_group: bool = False) -> str:
    """``path`` made another user's (uid 65534, nobody), of ``mode`` (600: this user may not
    read it) and group nogroup (``my_group``: this user's), that user's name returned, as
    errors say it. The test is skipped where files cannot be given away (not root), as the
    other-user case of each test (``whose``) only."""
    import pwd

    try:
        os.chown(path, 65534, os.getegid() if my_group else 65534)
    except PermissionError:
        pytest.skip("files can be given to another user by root only")
    path.chmod(mode)
    try:
        return pwd.getpwuid(65534).pw_name
    except KeyError:
        return "uid 65534"
