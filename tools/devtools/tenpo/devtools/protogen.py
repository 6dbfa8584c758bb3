"""Build tool: generate Python code, type stubs and a descriptor set from protos/."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

DESCRIPTOR_SET = "tenpo_descriptors.binpb"


def generate(proto_root: Path, out_dir: Path) -> list[Path]:
    """Compile every .proto under ``proto_root`` into ``out_dir``; return the files compiled."""
    import google.api  # googleapis-common-protos ships its .proto sources next to the code
    from grpc_tools import protoc  # build-time dependency only

    googleapis_root = Path(next(iter(google.api.__path__))).parent.parent
    well_known_root = Path(str(resources.files("grpc_tools") / "_proto"))
    protos = sorted(proto_root.rglob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {proto_root}")
    out_dir.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent  # mypy-protobuf's plugins live beside the interpreter
    args = [
        "grpc_tools.protoc",
        f"--proto_path={proto_root}",
        f"--proto_path={googleapis_root}",
        f"--proto_path={well_known_root}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out=quiet:{out_dir}",
        f"--mypy_grpc_out=quiet:{out_dir}",
        # The gateway builds routes and OpenAPI (with comments) from this set.
        f"--descriptor_set_out={out_dir / DESCRIPTOR_SET}",
        "--include_imports",
        "--include_source_info",
        *(str(p.relative_to(proto_root)) for p in protos),
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    return protos


def main(argv: list[str]) -> None:
    proto_root, out_dir = Path(argv[0]), Path(argv[1])
    compiled = generate(proto_root, out_dir)
    print(f"generated code for {len(compiled)} proto files into {out_dir}")


if __name__ == "__main__":
    main(sys.argv[1:])
