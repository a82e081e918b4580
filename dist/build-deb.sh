#!/bin/sh
# Build the Debian package: target/debian/leasedns_<version>-1_<arch>.deb (under
# $CARGO_TARGET_DIR instead when that is set). Needs cargo-deb (`cargo install cargo-deb
# --locked`). The man pages come from the CLI (`leasedns man DIR`, clap_mangen) and must exist
# before cargo-deb collects the assets (it maps target/release/ in them to the real target dir).
set -eu
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release --locked
rm -rf "$TARGET/release/man"
"$TARGET/release/leasedns" man "$TARGET/release/man"
gzip -9n "$TARGET"/release/man/*.1
cargo deb --no-build --locked --strip "$@"
