# Orion: the two quick-start commands are `make dev` and `make test`.
# Both first install what the build and the tests need on Debian (`make deps`).

CARGO_TARGET_DIR ?= /var/tmp/orion-target
export CARGO_TARGET_DIR
ORION := $(CARGO_TARGET_DIR)/debug/orion

.PHONY: dev test lint deps build jepsen install openapi api-fuzz

# `make jepsen JEPSEN="--time-limit 120 --workload register,set --peers 5 --runs 10"`
JEPSEN ?= --time-limit 60 --workload all

# Start a local three-peer cluster (Ctrl-C stops it).
dev: deps
	cargo build --workspace --bins
	$(ORION) dev

# The whole suite: lints, then every test with nextest.
test: deps lint
	scripts/schemathesis/install.sh
	cargo nextest run --workspace --no-fail-fast

# Fault-injection runs on real processes in network namespaces (root); each run
# leaves its history, verdicts and timeline in jepsen/results/.
jepsen: deps
	cargo build --workspace --bins
	$(CARGO_TARGET_DIR)/debug/orion-jepsen $(JEPSEN)

lint: deps
	scripts/check-architecture.sh
	scripts/check-layers.py
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

build: deps
	cargo build --workspace

# A release build of the one binary, installed where deploy/orion-server.service
# expects it.
PREFIX ?= /usr/local
install: deps
	cargo build --release --bin orion
	install -D -m 0755 $(CARGO_TARGET_DIR)/release/orion $(DESTDIR)$(PREFIX)/bin/orion
	@echo "installed $(DESTDIR)$(PREFIX)/bin/orion"

# `make bench BENCH="read --clients 64"`: one orion-bench scenario, release build (BENCHMARKS.md).
.PHONY: bench
bench: deps ; cargo build --release --bin orion --bin orion-bench && $(CARGO_TARGET_DIR)/release/orion-bench $(or $(BENCH),write --clients 64 --duration 10s)

# Everything the build and the tests use beyond Rust is listed, with the real file each
# must provide, in scripts/deps.txt; deps.sh installs what is missing (Debian), and
# check-fresh.sh proves the list covers every program the code starts.
deps:
	@scripts/deps.sh
	@scripts/check-fresh.sh

# Regenerate docs/openapi.json from the route table; the test `api_contract`
# fails when the committed file differs from what the peers serve.
openapi: deps
	cargo build --workspace --bins
	$(ORION) openapi > docs/openapi.json

# `make api-fuzz API_FUZZ_SECONDS=600`: the schemathesis contract run of
# `make test` (60 s there), for longer.
API_FUZZ_SECONDS ?= 600
api-fuzz: deps
	ORION_SCHEMATHESIS_SECONDS=$(API_FUZZ_SECONDS) cargo test --workspace --test api_contract schemathesis -- --nocapture
