# Sourced by the benchmark scripts (from the project's root): builds what
# they run and sets
#   target     cargo's target directory
#   rootwatch  the release binary
#   gen_trail  the record generator
# and defines build_vrl_peer.
# shellcheck shell=bash

cargo build --release --locked --quiet --bin rootwatch
# The generator is built in the dev profile: an example pulls in every
# dev-dependency, which a release build would compile again for nothing.
cargo build --locked --quiet --example gen-trail
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
rootwatch=$target/release/rootwatch
gen_trail=$target/debug/examples/gen-trail

# build_vrl_peer ERRFILE: builds the VRL peer (its own crate, not part of
# rootwatch's build; the first build fetches and compiles VRL, which takes
# minutes) and sets vrl_peer; on failure the compiler's output is in
# ERRFILE and the status is non-zero.
build_vrl_peer() {
  vrl_peer=$target/vrl-peer/release/vrl-peer
  cargo build --release --locked --quiet --manifest-path benches/vrl-peer/Cargo.toml \
    --target-dir "$target/vrl-peer" 2>"$1"
}
