"""Generate the Python gRPC code (pb2, pb2_grpc and mypy stubs) from protos/."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

PROTO_ROOT = Path("protos")
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi", ".binpb")
# Our files' descriptors WITH their comments (source info), which the _pb2 modules drop:
# server reflection serves these so that `grpcurl describe` shows the contract's comments.
DESCRIPTOR_SET = Path("fleetward") / "descriptor_set.binpb"


def _proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def _generate(out: Path) -> None:
    bindir = Path(sys.executable).parent
    include = resources.files("grpc_tools") / "_proto"
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        f"--descriptor_set_out={out / DESCRIPTOR_SET}",
        "--include_source_info",
        *(str(p) for p in _proto_files()),
    ]
    (out / DESCRIPTOR_SET).parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:  # mypy-protobuf chatters on stderr; show it only on failure
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"protoc failed with exit code {proc.returncode}")


def _generated(root: Path) -> dict[Path, Path]:
    return {
        p.relative_to(root): p
        for p in root.rglob("*")
        if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)
    }


def main(out: Path, *, check: bool) -> int:
    """Regenerate into ``out``; with ``check`` only report whether anything would change."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        _generate(tmp_path)
        fresh = _generated(tmp_path)
        committed = _generated(out)
        changed = sorted(
            str(rel)
            for rel in fresh.keys() | committed.keys()
            if rel not in fresh
            or rel not in committed
            or not filecmp.cmp(fresh[rel], committed[rel], shallow=False)
        )
        if check:
            if changed:
                print("generated code is stale; run `make proto`. Differs:", *changed, sep="\n  ")
                return 1
            print(f"generated code is up to date ({len(fresh)} files)")
            return 0
        for rel in committed.keys() - fresh.keys():
            committed[rel].unlink()
        for rel, src in fresh.items():
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
        print(f"generated {len(fresh)} files under {out} ({len(changed)} changed)")
        return 0
