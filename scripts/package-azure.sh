#!/usr/bin/env bash
# `make package-azure`: the Function App package. Builds the custom handler for x86_64 Linux
# (release), lays out target/azure-package/ as the Functions host expects it (host.json, one
# folder per function with its function.json, the `azure-handler` executable beside them) and
# zips it to target/logrelay-azure-functions.zip for zip deploy / WEBSITE_RUN_FROM_PACKAGE.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

target_triple="x86_64-unknown-linux-gnu"   # Azure Functions on Linux runs x86_64
app="infra/azure/function-app"
out="target/azure-package"
zip_path="target/logrelay-azure-functions.zip"

echo "package-azure: building azure-handler (release, $target_triple)"
cargo build --release --locked -p azure-handler --target "$target_triple"
binary="target/$target_triple/release/azure-handler"
[ -x "$binary" ] || { echo "package-azure: $binary missing after the build" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
cp "$app/host.json" "$out/host.json"
functions=()
for function_json in "$app"/*/function.json; do
  name="$(basename "$(dirname "$function_json")")"
  mkdir -p "$out/$name"
  cp "$function_json" "$out/$name/function.json"
  functions+=("$name")
done
install -m 0755 "$binary" "$out/azure-handler"

# Every JSON file must parse: the host skips a function whose function.json does not.
python3 - "$out" <<'PY'
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.json")):
    json.loads(path.read_text())
PY

rm -f "$zip_path"
if command -v zip >/dev/null 2>&1; then
  (cd "$out" && zip -q -r -X "$root/$zip_path" .)
else
  # python's zipfile, keeping the executable bit (run-from-package mounts the zip as is).
  python3 - "$out" "$zip_path" <<'PY'
import os, sys, zipfile
src, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
    for folder, _, files in os.walk(src):
        for name in sorted(files):
            path = os.path.join(folder, name)
            info = zipfile.ZipInfo(os.path.relpath(path, src))
            info.external_attr = (os.stat(path).st_mode & 0o777) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as handle:
                archive.writestr(info, handle.read())
PY
fi

# The newest glibc symbol the binary needs; the Function App image must provide it
# (Functions 4.x Linux images are Debian 12, glibc 2.36).
glibc="$(objdump -T "$binary" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -V | tail -1 || true)"

echo "package-azure: functions: ${functions[*]}"
printf '  %-28s %8d KiB\n' "azure-handler" "$(( $(stat -c %s "$out/azure-handler") / 1024 ))"
printf '  %-28s %8d KiB  %s\n' "$(basename "$zip_path")" "$(( $(stat -c %s "$zip_path") / 1024 ))" "$zip_path"
[ -n "$glibc" ] && echo "  needs ${glibc/_/ } or newer on the host image"
echo "package-azure: deploy with: az functionapp deployment source config-zip -g <rg> -n <app> --src $zip_path"
