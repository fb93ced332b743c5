"""The exec wrapper: one Python, conntrace started, and every layer's directories on the path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import PYTHON, WRAPPER

# Run by the wrapped interpreter: what it sees, as JSON.
PROBE = """
import json, os, sys
import conntrace, sitecustomize
from other_layer import where as other
from other_layer_for_this_python import where as other_versioned
print(json.dumps({
    "pid": os.getpid(),
    "pythonpath": os.environ["PYTHONPATH"],
    "sys_path": sys.path,
    "sitecustomize": sitecustomize.__file__,
    "conntrace": conntrace.__file__,
    "instrumented": conntrace.is_instrumented(),
    "other": other,
    "other_versioned": other_versioned,
}))
"""
VERSION = "{}.{}".format(*sys.version_info[:2])


@pytest.fixture
def opt(layer_root: Path, tmp_path: Path) -> Path:
    """/opt with conntrace's layer and another layer that has a package in each place."""
    root = tmp_path / "opt"
    root.mkdir()
    (root / WRAPPER.name).symlink_to(layer_root / WRAPPER.name)
    (root / "python").mkdir()
    (root / "python" / "conntrace").symlink_to(layer_root / "python" / "conntrace")
    (root / "python" / "other_layer.py").write_text("where = __file__\n")
    versioned = root / "python" / "lib" / f"python{VERSION}" / "site-packages"
    versioned.mkdir(parents=True)
    (versioned / "other_layer_for_this_python.py").write_text("where = __file__\n")
    return root


def _run(opt: Path, interpreter: str, **environ: str) -> tuple[subprocess.Popen[str], dict]:
    env = {"PATH": "/usr/bin:/bin", "AWS_LAMBDA_FUNCTION_NAME": "orders"}
    env["OTEL_TRACES_EXPORTER"] = "none"
    env.update(environ)
    process = subprocess.Popen(
        [str(opt / WRAPPER.name), interpreter, "-c", PROBE],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return process, json.loads(out)


def test_the_runtime_command_runs_in_the_same_process_with_conntrace_on(opt):
    process, seen = _run(opt, PYTHON)

    # exec, not a child: the interpreter is the process Lambda started.
    assert seen["pid"] == process.pid
    assert seen["instrumented"] is True
    assert seen["sitecustomize"] == str(opt / "python/conntrace/bootstrap/sitecustomize.py")
    assert seen["conntrace"] == str(opt / "python/conntrace/__init__.py")


def test_the_layer_directories_the_runtime_would_skip_are_put_back(opt):
    _process, seen = _run(opt, PYTHON)

    versioned = f"{opt}/python/lib/python{VERSION}/site-packages"
    assert seen["pythonpath"] == f"{opt}/python/conntrace/bootstrap:{versioned}:{opt}/python"
    # In the order the runtime itself uses: the version's directory before python/.
    path = seen["sys_path"]
    assert path.index(versioned) < path.index(f"{opt}/python")
    assert seen["other"] == f"{opt}/python/other_layer.py"
    assert seen["other_versioned"] == f"{versioned}/other_layer_for_this_python.py"


def test_a_pythonpath_of_the_function_comes_before_the_layers(opt, tmp_path):
    own = tmp_path / "own"
    own.mkdir()
    _process, seen = _run(opt, PYTHON, PYTHONPATH=str(own))

    versioned = f"{opt}/python/lib/python{VERSION}/site-packages"
    expected = f"{opt}/python/conntrace/bootstrap:{own}:{versioned}:{opt}/python"
    assert seen["pythonpath"] == expected


def test_the_python_version_comes_from_the_runtime_name_when_the_command_has_none(opt):
    unversioned = str(Path(PYTHON).with_name("python3"))
    _process, seen = _run(opt, unversioned, AWS_EXECUTION_ENV=f"AWS_Lambda_python{VERSION}")

    assert seen["other_versioned"].startswith(f"{opt}/python/lib/python{VERSION}/")


def test_without_a_command_the_wrapper_says_why_and_exits_2(opt):
    done = subprocess.run([str(opt / WRAPPER.name)], capture_output=True, text=True)

    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1
    assert "no command to run" in done.stderr
