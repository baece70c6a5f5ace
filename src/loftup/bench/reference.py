"""The paper's implementation as a stand-in (a Python file such as
``benchmarks/reference_impl.py``): loaded from its file, given our model's weights."""

from __future__ import annotations

from ..errors import UsageError
from ..paths import check_visible


def _reference(cls, model, device):
    """The paper's implementation (``cls``) holding ``model``'s weights."""
    from ..hub import native_to_reference

    state = native_to_reference({k: v.float() for k, v in model.state_dict().items()})
    return cls.from_state_dict(state).to(device).eval()


def load_reference_class(path):
    """``ReferenceLoftUp`` from a Python file such as ``benchmarks/reference_impl.py``; a
    :class:`loftup.errors.UsageError` saying what is wrong with the file when it cannot be had
    (missing, a folder, not Python, an error while importing it, no such class); a
    :class:`loftup.errors.PathPermissionError` where it lies in a folder this user may not
    search."""
    import importlib.util
    import os

    from ..data.paths import home_expanded

    fix = "give a Python file that defines ReferenceLoftUp, e.g. benchmarks/reference_impl.py"
    where = f"reference implementation {path}"
    # "--reference=~/ref.py" reaches us unexpanded (the shell expands ~ only at a word's
    # start): "no such file" for a file that is there, where every other path of loftup's
    # takes ~ as the home folder
    path = home_expanded(path, "--reference")
    check_visible(path, "--reference")  # behind a folder not searchable: "no such file"
    if os.path.isdir(path):
        raise UsageError(f"{where} is a folder; {fix}")
    if not os.path.isfile(path):
        raise UsageError(f"{where}: no such file; {fix}")
    spec = importlib.util.spec_from_file_location("loftup_reference_standin", path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{where} is not a Python (.py) file; {fix}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise UsageError(
            f"{where} has a Python syntax error at line {e.lineno}: {e.msg}; fix the file or {fix}"
        ) from None
    except Exception as e:  # the user's own file failed to run: say how, without a traceback
        raise UsageError(
            f"{where} failed while being imported: {type(e).__name__}: {e}; fix the file or {fix}"
        ) from None
    cls = getattr(module, "ReferenceLoftUp", None)
    if cls is None:
        raise UsageError(f"{where} defines no ReferenceLoftUp class; {fix}")
    return cls
