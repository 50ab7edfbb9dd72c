"""Regenerate the KlioMessage Python bindings from klio.proto.

Run from the repository root: ``python scripts/gen_proto.py``. The output is
committed; ``tests/message/test_proto_current.py`` fails when it is stale.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent.parent / "runtime" / "klio_runtime" / "proto"
OUTPUTS = ("klio_pb2.py", "klio_pb2.pyi")


def generate(out_dir: Path) -> None:
    """Compile klio.proto into ``out_dir`` with grpcio-tools' bundled protoc."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"--proto_path={PROTO_DIR}",
        f"--proto_path={well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        str(PROTO_DIR / "klio.proto"),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed on klio.proto")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        for name in OUTPUTS:
            (PROTO_DIR / name).write_text((Path(tmp) / name).read_text())
    print(f"wrote {', '.join(OUTPUTS)} to {PROTO_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
