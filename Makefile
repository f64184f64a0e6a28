# logrelay: two commands matter. `make run` shows the relay working end to end on the bundled
# sample against the local Azure emulator; `make test` runs every test. Both set themselves up.
SHELL := /bin/bash
CARGO ?= cargo
export PATH := $(CURDIR)/.tools/venv/bin:$(PATH)

.PHONY: run test build lint fmt clippy unit tools local package-aws package-azure deploy-aws deploy-azure \
        lint-infra bench fuzz reliability schema big-object

## run: start the emulator, send the bundled Keeper sample with `logrelay send`, show what landed
run:
	@scripts/run.sh

## test: everything: format, clippy, unit, end-to-end (emulator, moto, cargo-lambda), infra lint
test:
	@scripts/test.sh

build:
	$(CARGO) build --workspace --all-targets --all-features

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

tools:
	@scripts/tools.sh python aws infra

## local: the AWS path locally (moto + emulator + cargo lambda), prints what landed
local:
	@scripts/local-aws.sh

## package-aws: Lambda bootstraps for arm64 with cargo-lambda
package-aws:
	@scripts/package-aws.sh

## package-azure: the Function App zip (binary + host.json + function folders)
package-azure:
	@scripts/package-azure.sh

deploy-aws:
	@scripts/deploy-aws.sh

deploy-azure:
	@scripts/deploy-azure.sh

lint-infra:
	@scripts/lint-infra.sh

bench:
	@scripts/bench.sh

fuzz:
	@scripts/fuzz.sh

reliability:
	@scripts/reliability.sh

## big-object: a ~200 MB gzipped export through the release s3-forwarder (moto + cargo-lambda) at 512 MB: duration, peak memory, Lambda cost
big-object:
	@scripts/big-object.sh

schema:
	$(CARGO) run --quiet -p logrelay-cli -- schema
