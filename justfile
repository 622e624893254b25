# berth — the commands a person runs. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]

prefix := env_var_or_default("BERTH_PREFIX", "/usr/local")
image_tar := justfile_directory() / "target/berth-images/busybox.tar"

# Show the recipes.
default:
    @just --list

# Install the system packages berth and its tests need (Debian 12).
deps:
    deploy/install-deps.sh

# Build every binary (release).
build:
    cargo build --release --workspace --bins

# Put `berth` and the service binaries on PATH ({{prefix}}/bin).
install: build
    install -d {{prefix}}/bin
    for b in berth berthd berth-engine berth-image-store berth-supervisor berth-network berth-volume berth-log-router berth-shim; do install -m 0755 target/release/$b {{prefix}}/bin/$b; done
    @echo "installed into {{prefix}}/bin"

# Start all six services in the background; returns once all answer (BERTH_ONE_PROCESS=1: as one process, berthd).
up:
    deploy/local/berth-up.sh

# Stop the services started by `just up` (running containers keep running).
down:
    deploy/local/berth-down.sh

# Build the offline busybox test image (an OCI layout tarball).
image:
    deploy/images/build-busybox-image.sh {{image_tar}}

# Set up, start the engine, load the busybox image and run containers.
demo: deps install up image
    deploy/local/demo.sh {{image_tar}}

# Run every test: unit tests and end-to-end tests against the real services and kernel.
test: deps image
    cargo build --workspace --bins
    BERTH_TEST_IMAGE={{image_tar}} cargo test --workspace --no-fail-fast

# Benchmarks, beside Docker when it is installed; writes docs/benchmarks.md.
bench: deps install image
    deploy/install-deps.sh docker
    deploy/bench/run.sh {{image_tar}}

# Format the code.
fmt:
    cargo fmt --all

# Lint: formatting and clippy with warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
