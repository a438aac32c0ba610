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

# `make bench-all`: every scenario with the figures BENCHMARKS.md reports, one after
# another on this machine (about 25 minutes), reports in bench/results/.
BENCH_BIN := $(CARGO_TARGET_DIR)/release/orion-bench
.PHONY: bench-all
bench-all: deps
	cargo build --release --bin orion --bin orion-bench
	for c in 1 16 64 256; do $(BENCH_BIN) write --clients $$c --duration 10s || exit 1; done
	$(BENCH_BIN) read --clients 1 --duration 10s
	$(BENCH_BIN) read --clients 64 --duration 10s
	$(BENCH_BIN) failover --trials 20 --clients 16 --steady 5m
	$(BENCH_BIN) schedule --services 10000 --replicas 10 --nodes 1000 --large 100
	$(BENCH_BIN) reschedule --replicas 100 --trials 3
	$(BENCH_BIN) footprint --services 10000
	$(BENCH_BIN) fan-in --agents 1000,10000

# `make bench-ui`: the dashboard's render benchmark in headless Chromium (1,000
# services, 200 nodes, 3,000 replicas; prints the figures; BENCHMARKS.md).
.PHONY: bench-ui
bench-ui: deps ; cargo nextest run --workspace --test ui -E 'test(render_benchmark)' --no-capture

# `make fuzz FUZZ_SECONDS=600`: every cargo-fuzz target in fuzz/ in turn (nightly,
# cargo-fuzz; one job each), from and into its corpus fuzz/corpus/<target>/. Not part
# of `make test`, which replays that corpus on stable. After a long run, shrink the
# corpus before committing it: `cd fuzz && cargo +nightly fuzz cmin -s none <target>`.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= spec agent_frames watch_position token csr
FUZZ_TARGET_DIR ?= /var/tmp/orion-fuzz-target
.PHONY: fuzz
fuzz:
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		cargo +nightly fuzz run -s none -a --target-dir $(FUZZ_TARGET_DIR) $$t -- \
			-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 -max_len=16384 \
			-print_final_stats=1 || exit 1; \
	done
	# The server's TOML config: its crate builds RocksDB, so it is fuzzed on stable.
	ORION_FUZZ_SECONDS=$(FUZZ_SECONDS) cargo nextest run --workspace --no-capture \
		-E 'test(=config::tests::fuzz_corpus_server_config)'

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
