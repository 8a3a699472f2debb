"""Generate the Python code for every contract in proto/, and check that it is not stale.

Generated code lands in the ``livecommerce`` package at the project root (its import path
follows the proto package, ``livecommerce.<service>.v1``), with mypy stubs beside it. It is
committed, never edited by hand, and ``check`` fails when it differs from a fresh generation.
"""

from __future__ import annotations

import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PACKAGE = "livecommerce"


def _protos() -> list[Path]:
    return sorted(PROTO_DIR.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    include = str(Path(protoc.__file__).parent / "_proto")
    scripts = Path(sys.executable).parent
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={scripts / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={scripts / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *[str(p) for p in _protos()],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed: see the messages above")
    package_root = out_dir / PACKAGE
    for directory in [package_root, *[d for d in package_root.rglob("*") if d.is_dir()]]:
        (directory / "__init__.py").touch()
    (package_root / "py.typed").touch()
    (package_root / "__init__.py").write_text(
        '"""Generated from proto/ by `make proto`. Do not edit."""\n'
    )


def _differences(left: Path, right: Path) -> list[str]:
    comparison = filecmp.dircmp(left, right, ignore=["__pycache__"])
    found = [f"only in generated: {n}" for n in comparison.left_only]
    found += [f"only in committed: {n}" for n in comparison.right_only]
    found += [f"differs: {n}" for n in comparison.diff_files]
    _, mismatch, errors = filecmp.cmpfiles(left, right, comparison.common_files, shallow=False)
    found += [f"differs: {n}" for n in mismatch + errors if f"differs: {n}" not in found]
    for sub in comparison.common_dirs:
        found += [f"{sub}/{d}" for d in _differences(left / sub, right / sub)]
    return found


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "generate"
    target = ROOT / PACKAGE
    if command == "generate":
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(Path(tmp) / PACKAGE, target)
        print(f"generated {len(_protos())} proto files into {target.relative_to(ROOT)}/")
        return 0
    if command == "check":
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            stale = _differences(Path(tmp) / PACKAGE, target) if target.exists() else ["missing"]
        if stale:
            print("generated code is stale; run `make proto` and commit:", *stale, sep="\n  ")
            return 1
        print("generated code is up to date")
        return 0
    print(f"unknown command {command!r}; use generate or check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
