# No `# syntax=` line: the builder's own Dockerfile frontend is used, nothing
# is pulled from a registry to parse this file.

# ---- build ------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /build

# Dependency layer: build every dependency against stub sources so that this
# layer is only rebuilt when Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/detect.rs \
 && cargo build --release --locked \
 && rm -rf src benches

# Real sources. Touch them so cargo rebuilds the crate itself, not the stubs.
COPY src ./src
COPY benches ./benches
RUN find src benches -name '*.rs' -exec touch {} + \
 && cargo build --release --locked \
 && install -D -s -m 0755 target/release/rootwatch /out/usr/local/bin/rootwatch \
 && install -d -m 0750 /out/varlib/rootwatch \
 && install -d -m 0755 /out/etc/rootwatch

# ---- runtime ----------------------------------------------------------------
# distroless/cc: glibc, libgcc and CA certificates (TLS to webhooks and AWS),
# no shell, no package manager. The :nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot

# Open Container Initiative annotations; a build adds version, revision,
# created and source (the repository's URL) with --label.
LABEL org.opencontainers.image.title="rootwatch" \
      org.opencontainers.image.description="Real-time alerts on AWS root-user activity and calls from outside IP allow lists, read from CloudTrail" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /out/usr/local/bin/rootwatch /usr/local/bin/rootwatch
# Copy the directories themselves (into existing parents) so that --chown
# applies to them and not only to their (empty) contents.
COPY --from=builder --chown=65532:65532 /out/varlib/ /var/lib/
COPY --from=builder /out/etc/ /etc/

USER 65532:65532
WORKDIR /var/lib/rootwatch
# Checkpoint state (CloudWatch Logs source). Declared as a volume so that ECS
# Fargate bind mounts and plain `docker run` start it owned by uid 65532; the
# rest of the filesystem can be mounted read-only.
VOLUME ["/var/lib/rootwatch"]

ENV RUST_LOG=info
# Admin server: /metrics, /healthz, /readyz
EXPOSE 9102

ENTRYPOINT ["rootwatch"]
CMD ["run", "--config", "/etc/rootwatch/rootwatch.toml"]
