# Orion: the two quick-start commands are `make dev` and `make test`.
# Both install what the build needs on Debian (libclang for RocksDB's bindings).

CARGO_TARGET_DIR ?= /var/tmp/orion-target
export CARGO_TARGET_DIR
ORION := $(CARGO_TARGET_DIR)/debug/orion

.PHONY: dev test lint deps build jepsen

# `make jepsen JEPSEN="--time-limit 120 --workload register,set --peers 5 --runs 10"`
JEPSEN ?= --time-limit 60 --workload all

# Start a local three-peer cluster (Ctrl-C stops it).
dev: deps
	cargo build --workspace --bins
	$(ORION) dev

# The whole suite: lints, then every test with nextest.
test: deps lint
	cargo nextest run --workspace --no-fail-fast

# Fault-injection runs on real processes in network namespaces (root); each run
# leaves its history, verdicts and timeline in jepsen/results/.
jepsen: deps
	cargo build --workspace --bins
	$(CARGO_TARGET_DIR)/debug/orion-jepsen $(JEPSEN)

lint: deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

build: deps
	cargo build --workspace

# RocksDB's Rust bindings are generated with libclang; a C++ compiler builds RocksDB.
deps:
	@if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then \
		echo "installing libclang-dev (needed to build RocksDB's bindings)"; \
		apt-get update -qq && apt-get install -y -qq libclang-dev clang; \
	fi
	@command -v c++ >/dev/null || { apt-get update -qq && apt-get install -y -qq g++; }
	@command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
	@# The fault-injection runs: namespaces (iproute2), loss (nftables), clock skew (libfaketime).
	@if ! command -v nft >/dev/null || ! command -v ip >/dev/null || ! [ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ]; then \
		apt-get update -qq && apt-get install -y -qq iproute2 nftables faketime; \
	fi
