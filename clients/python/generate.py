#!/usr/bin/env python3
"""Generates the Python gRPC client code of every contract in proto/ with grpcio-tools.

    python3 clients/python/generate.py [--out DIR] [--proto DIR]

Runs `python -m grpc_tools.protoc` over every .proto under proto/ (lbaas/{api,scheduler,agent}/v1)
with --python_out, --grpc_python_out and --pyi_out. Imports of Google's well-known types
(google/protobuf/field_mask.proto, ...) resolve against the copies grpcio-tools bundles; their
Python modules are not generated, because the protobuf runtime ships them (google.protobuf.*_pb2)
and a second copy would shadow it.

The output (default: clients/python/lbaas_client/gen/) holds the package tree `lbaas/...`, as
protoc names modules after their .proto paths: the generated code imports `lbaas.api.v1.api_pb2`,
so the output directory goes on sys.path (lbaas_client.load() does that). It is generated, never
committed: it depends on the grpcio-tools version (the _grpc modules refuse an older grpcio) and
must follow the protos.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_OUT = HERE / "lbaas_client" / "gen"
DEFAULT_PROTO = REPO / "proto"


def bundled_include() -> Path:
    """The well-known types grpcio-tools ships (google/protobuf/*.proto)."""
    try:
        import grpc_tools
    except ImportError:
        sys.exit("generate.py: grpcio-tools is not installed (pip install grpcio-tools)")
    include = Path(grpc_tools.__file__).resolve().parent / "_proto"
    if not (include / "google" / "protobuf" / "field_mask.proto").is_file():
        sys.exit(f"generate.py: no well-known types in {include}: a broken grpcio-tools install?")
    return include


def generate(out: Path, proto: Path) -> list[Path]:
    protos = sorted(proto.rglob("*.proto"))
    if not protos:
        sys.exit(f"generate.py: no .proto files under {proto}")
    include = bundled_include()
    # Start clean so a removed .proto leaves no stale module behind.
    if (out / "lbaas").exists():
        shutil.rmtree(out / "lbaas")
    out.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{proto}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--pyi_out={out}",
        *[str(p.relative_to(proto)) for p in protos],
    ]
    result = subprocess.run(command, cwd=proto, check=False)
    if result.returncode != 0:
        sys.exit(f"generate.py: protoc failed ({result.returncode}): {' '.join(command)}")
    # Regular packages, so the tree is importable (and type-checkable) without namespace tricks.
    for directory in [p for p in (out / "lbaas").rglob("*") if p.is_dir()] + [out / "lbaas"]:
        (directory / "__init__.py").touch()
    return protos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--proto", type=Path, default=DEFAULT_PROTO, help="proto root")
    args = parser.parse_args()
    out, proto = args.out.resolve(), args.proto.resolve()
    protos = generate(out, proto)
    version = importlib.metadata.version("grpcio-tools")
    print(f"generated {len(protos)} protos with grpcio-tools {version} into {out}")
    for p in protos:
        print(f"  {p.relative_to(proto)}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
