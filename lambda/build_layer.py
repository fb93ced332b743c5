"""Build conntrace's AWS Lambda layer: one zip per architecture, for every Python runtime.

    python3 lambda/build_layer.py                  # both architectures, Python 3.9 to 3.13
    python3 lambda/build_layer.py --arch arm64 --python 3.12 --python 3.13

Each zip holds the exec wrapper at its root (``/opt/conntrace-wrapper`` once deployed) and
conntrace with its runtime dependencies under ``python/``. Wheels are fetched for Lambda's
platform with pip (``--platform``, ``--python-version``, ``--only-binary``), not for this
machine. A distribution whose wheel is the same for every chosen Python goes to
``python/``; one that differs (compiled code, or versions that dropped old Pythons) goes to
``python/lib/pythonX.Y/site-packages/``, which only that runtime reads. The oldest runtime's
versions are taken for all where a newer runtime can have them, so that most wheels are
shared: the same versions on every runtime, and one copy of each.

Left out on purpose: boto3, botocore, urllib3 and their companions, so the runtime's own
copies are the ones traced; and the gRPC exporter with grpcio (the heaviest part, compiled
per platform), since conntrace exports over OTLP/HTTP in Lambda by default.

Bytecode: sources are compiled with every ``python3.X`` interpreter of the chosen versions
found on PATH (``--invalidation-mode unchecked-hash``, since a layer never changes), so the
runtime does not compile them at each cold start; versions without an interpreter here
get sources only, which Lambda compiles in memory at each cold start.

Needs Python 3.9+ with pip 22.2+ and access to PyPI; writes to dist/lambda/ by default.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WRAPPER = Path(__file__).resolve().parent / "conntrace-wrapper"

PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13")
# Lambda's architecture names and the wheel platform tags for them.
ARCHES = {"x86_64": "x86_64", "arm64": "aarch64"}
# glibc of the runtime's OS: Amazon Linux 2 up to Python 3.11, Amazon Linux 2023 after.
GLIBC_MINOR = {"3.9": 26, "3.10": 26, "3.11": 26, "3.12": 34, "3.13": 34}

# Provided by every Lambda Python runtime; the layer must not shadow them.
RUNTIME_PROVIDED = {
    "boto3",
    "botocore",
    "urllib3",
    "s3transfer",
    "jmespath",
    "python-dateutil",
    "six",
}
# conntrace depends on the OTLP meta-package (gRPC and HTTP); the layer takes HTTP only.
REPLACED = {"opentelemetry-exporter-otlp": "opentelemetry-exporter-otlp-proto-http"}
# Cold start: importing wrapt 2 imports asyncio and importlib.metadata, about 75 ms more
# than wrapt 1.17 on the machine where this was measured.
LAYER_CONSTRAINTS = ("wrapt<2",)


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    url: str


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def run(command: Sequence[str], **options: object) -> None:
    subprocess.run(list(command), check=True, **options)  # type: ignore[call-overload]


def pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]


def platform_args(python: str, arch: str) -> list[str]:
    tag = ARCHES[arch]
    platforms = [f"manylinux2014_{tag}"]
    platforms += [f"manylinux_2_{minor}_{tag}" for minor in range(17, GLIBC_MINOR[python] + 1)]
    args = [f"--platform={platform}" for platform in platforms]
    return [*args, f"--python-version={python}", "--implementation=cp", "--only-binary=:all:"]


def build_conntrace_wheel(work: Path) -> Path:
    """conntrace's own wheel, built from a copy so the checkout stays clean."""
    source = work / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, source / name)
    run(pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(work / "wheels"), str(source)))
    [wheel] = (work / "wheels").glob("conntrace-*.whl")
    return wheel


def requirements(wheel: Path) -> list[str]:
    """conntrace's own requirements, with the layer's replacements."""
    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
    wanted = []
    for line in text.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        requirement = line.split(":", 1)[1].strip()
        if "extra ==" in requirement:
            continue
        name = canonical(re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0])
        if name in REPLACED:
            requirement = REPLACED[name] + requirement[len(name) :]
        wanted.append(requirement)
    return wanted


def resolve(
    wanted: list[str], python: str, arch: str, work: Path, pins: Sequence[Wheel] = ()
) -> list[Wheel]:
    """The wheels pip picks for ``wanted`` on this runtime, minus the runtime's own packages.

    ``pins`` are versions to keep if this runtime can have them.
    """
    report = work / f"report-{python}-{arch}.json"
    constraints = work / f"pins-{python}-{arch}.txt"
    lines = [*LAYER_CONSTRAINTS, *(f"{wheel.name}=={wheel.version}" for wheel in pins)]
    constraints.write_text("".join(f"{line}\n" for line in lines))
    run(
        pip(
            "install",
            "--quiet",
            "--dry-run",
            "--ignore-installed",
            "--report",
            str(report),
            "--target",
            str(work / "unused"),
            "--constraint",
            str(constraints),
            *platform_args(python, arch),
            *wanted,
        )
    )
    wheels = []
    for item in json.loads(report.read_text())["install"]:
        name = canonical(item["metadata"]["name"])
        if name not in RUNTIME_PROVIDED:
            wheels.append(Wheel(name, item["metadata"]["version"], item["download_info"]["url"]))
    return wheels


def install(wheels: Sequence[str], target: Path, python: str, arch: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    run(
        pip(
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--target",
            str(target),
            *platform_args(python, arch),
            *wheels,
        )
    )
    # Console scripts point at this machine's interpreter: of no use in Lambda.
    shutil.rmtree(target / "bin", ignore_errors=True)


def interpreter(version: str) -> str | None:
    """A working ``pythonX.Y`` on PATH (a pyenv shim may name one it cannot run)."""
    found = shutil.which(f"python{version}")
    if found is None:
        return None
    check = [found, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
    done = subprocess.run(check, capture_output=True, text=True)
    return found if done.returncode == 0 and done.stdout.strip() == version else None


def compile_bytecode(python_dir: Path, pythons: Sequence[str]) -> list[str]:
    """Compile with each chosen version's interpreter found here; the versions compiled."""
    compiled = []
    for version in pythons:
        python = interpreter(version)
        if python is None:
            continue
        common = ["-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
        # The shared part, without the other versions' directories.
        run([python, *common, "-x", r"/python/lib/python3\.[0-9]+/", str(python_dir)])
        own = python_dir / "lib" / f"python{version}" / "site-packages"
        if own.exists():
            run([python, *common, str(own)])
        compiled.append(version)
    return compiled


def write_zip(root: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(root).as_posix())


def tree_size(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def build(arch: str, pythons: Sequence[str], conntrace_wheel: Path, work: Path, out: Path) -> Path:
    wanted = requirements(conntrace_wheel)
    # The oldest runtime's versions for all, where a newer runtime can have them: most
    # wheels are then the same file for every runtime, and the layer holds one copy.
    oldest = resolve(wanted, pythons[0], arch, work)
    chosen = {pythons[0]: oldest}
    for python in pythons[1:]:
        try:
            chosen[python] = resolve(wanted, python, arch, work, pins=oldest)
        except subprocess.CalledProcessError:
            print(f"  Python {python}: not every version of Python {pythons[0]} fits; newest ones")
            chosen[python] = resolve(wanted, python, arch, work)
    everywhere = set.intersection(*(set(wheels) for wheels in chosen.values()))

    root = work / f"layer-{arch}"
    python_dir = root / "python"
    first = pythons[0]
    install([str(conntrace_wheel), *sorted(w.url for w in everywhere)], python_dir, first, arch)
    for python, wheels in chosen.items():
        own = sorted(w.url for w in wheels if w not in everywhere)
        if own:
            install(own, python_dir / "lib" / f"python{python}" / "site-packages", python, arch)
    compiled = compile_bytecode(python_dir, pythons)
    shutil.copy2(WRAPPER, root / WRAPPER.name)
    (root / WRAPPER.name).chmod(0o755)

    destination = out / f"conntrace-layer-{arch}.zip"
    write_zip(root, destination)
    print(
        f"{destination}: {destination.stat().st_size / 1e6:.1f} MB zipped, "
        f"{tree_size(root) / 1e6:.1f} MB unzipped"
    )
    shared = sorted(f"{w.name} {w.version}" for w in everywhere)
    print(f"  shared by Python {', '.join(pythons)}: conntrace, {', '.join(shared)}")
    for python, wheels in chosen.items():
        own = sorted(f"{w.name} {w.version}" for w in wheels if w not in everywhere)
        print(f"  Python {python} only: {', '.join(own) or 'nothing'}")
    print(f"  bytecode for Python: {', '.join(compiled) or 'none (no matching python3.X here)'}")
    return destination


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="build_layer.py", description="Build conntrace's AWS Lambda layer zips."
    )
    parser.add_argument(
        "--arch", action="append", choices=sorted(ARCHES), help="default: x86_64 and arm64"
    )
    parser.add_argument("--python", action="append", choices=PYTHONS, help="default: 3.9 to 3.13")
    parser.add_argument(
        "--out", type=Path, default=REPO / "dist" / "lambda", help="default: dist/lambda"
    )
    args = parser.parse_args(argv)
    arches = args.arch or sorted(ARCHES)
    pythons = sorted(set(args.python or PYTHONS), key=PYTHONS.index)
    with tempfile.TemporaryDirectory(prefix="conntrace-layer-") as temporary:
        work = Path(temporary)
        conntrace_wheel = build_conntrace_wheel(work)
        for arch in arches:
            build(arch, pythons, conntrace_wheel, work, args.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
