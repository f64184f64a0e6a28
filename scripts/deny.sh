#!/usr/bin/env bash
# Dependency policy (deny.toml): RustSec advisories, licenses, bans, sources, all offline.
# Advisories come from the snapshot in ../shared/advisory-db (its SNAPSHOT.md): cargo-deny reads a
# database only as a git repository named after its URL, dated by its HEAD commit, so the snapshot
# is copied into target/ as such a repository once per snapshot.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
deny="$root/.tools/cargo/bin/cargo-deny"
snapshot="$root/../shared/advisory-db"
if [ ! -x "$deny" ]; then
  echo "tools: installing cargo-deny (compiles once, ~2 minutes)"
  cargo install cargo-deny --locked --quiet --root "$root/.tools/cargo"
fi
if [ ! -d "$snapshot/crates" ]; then
  echo "deny: the advisory snapshot $snapshot is missing (it sits beside the repository)" >&2
  exit 2
fi
cd "$root"

# The folder name cargo-deny derives from the default URL https://github.com/rustsec/advisory-db.
dbs="$root/target/advisory-dbs"
db="$dbs/advisory-db-3157b0e258782691"
# The snapshot's own date (SNAPSHOT.md), so cargo-deny judges staleness from when it was taken.
date=$(grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}' "$snapshot/SNAPSHOT.md" | head -1)
stamp="$dbs/.snapshot"
want="$(cd "$snapshot" && find crates rust -type f | wc -l) $date"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  rm -rf "$dbs"; mkdir -p "$dbs"
  cp -r "$snapshot" "$db"
  chmod -R u+w "$db"
  (cd "$db" && git init -q && git add -A &&
    GIT_COMMITTER_DATE="${date}T00:00:00Z" git -c user.name=ci -c user.email=ci@localhost \
      commit -q --no-gpg-sign -m "advisory-db snapshot $date" --date "${date}T00:00:00Z")
  echo "$want" > "$stamp"
fi

# --offline needs every target's crates in the local registry; fetching them asks crates.io only.
cargo fetch --locked --quiet

config=$(mktemp); trap 'rm -f "$config"' EXIT
{ cat deny.toml; printf '\n[advisories]\ndb-path = "%s"\ndb-urls = ["https://github.com/rustsec/advisory-db"]\n' "$dbs"; } > "$config"
"$deny" --offline --config "$config" --log-level error check advisories licenses bans sources
echo "deny: advisories (snapshot $date), licenses, bans and sources passed"
