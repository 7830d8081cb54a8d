# The weir image: the release binary (built by scripts/build.sh, as in CI) on a distroless base
# with glibc and CA certificates, running as a non-root user.
#
#   docker build -t ghcr.io/weir-dev/weir:0.1.0 .
#   docker push ghcr.io/weir-dev/weir:0.1.0

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN scripts/build.sh && cp target/release/weir /weir

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /weir /weir
# 65532 is distroless's "nonroot"; the Helm chart runs it with a read-only root filesystem.
USER 65532:65532
# HTTP, HTTPS, admin (/healthz, /readyz, /metrics): weir's default listen ports.
EXPOSE 8080 8443 10254
ENTRYPOINT ["/weir"]
