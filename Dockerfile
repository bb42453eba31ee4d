# prow-operator's image: its four binaries (prow-operator, prow-webhook, prow-hook,
# prow-dashboard), statically
# linked, on an empty base, run as a non-root user. Three stages:
#
#   prebuilt  the binaries built beforehand on the host (kind-tests/scripts/image.sh does it):
#             needs no base image, so it builds where no registry can be reached.
#   utils     the pod utilities' image (prow-utils and git), from a root image.sh assembles.
#   build     builds the binaries in a Rust image, for machines that can pull one.
#   (last)    the same image as `prebuilt`, from `build`'s binaries: `docker build .`
#
#   kind-tests/scripts/image.sh                    # -> prow-operator.local/prow-operator:0.1.0
#   docker build -t prow-operator.local/prow-operator:0.1.0 .
#
# The binaries sit at the root; the chart runs `/prow-operator`, `/prow-webhook`, `/prow-hook`
# and `/prow-dashboard`.
# The user is 65532 (distroless's "nonroot"); the chart sets it again with runAsNonRoot.

FROM scratch AS prebuilt
COPY prow-operator prow-webhook prow-hook prow-dashboard /
USER 65532:65532
ENTRYPOINT ["/prow-operator"]

# The pod utilities of decorated jobs (`--utility-image`): prow-utils and git with its
# libraries, assembled by kind-tests/scripts/image.sh into `utils-root`. Runs as root, as
# upstream's utility images do: it reads Secrets mounted 0400 (SSH keys) and writes emptyDirs.
FROM scratch AS utils
COPY utils-root/ /
ENV HOME=/tmp
ENTRYPOINT ["/prow-utils"]

ARG RUST_IMAGE=rust:1.89-bookworm
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu \
      -p prow-operator -p prow-webhook -p prow-hook -p prow-dashboard \
      --bin prow-operator --bin prow-webhook --bin prow-hook --bin prow-dashboard \
 && cp target/x86_64-unknown-linux-gnu/release/prow-operator \
       target/x86_64-unknown-linux-gnu/release/prow-webhook \
       target/x86_64-unknown-linux-gnu/release/prow-hook \
       target/x86_64-unknown-linux-gnu/release/prow-dashboard /

FROM scratch
COPY --from=build /prow-operator /prow-webhook /prow-hook /prow-dashboard /
USER 65532:65532
ENTRYPOINT ["/prow-operator"]

