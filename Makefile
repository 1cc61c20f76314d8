# The two commands a newcomer needs are `make run` and `make test`; each installs what it needs first.
ARGS ?= --upstream 1.1.1.1
SWIFT ?= swift

.PHONY: run test build fuzz bench clean

run:
	scripts/setup.sh run
	$(SWIFT) run -c release dotproxy $(ARGS)

test:
	scripts/setup.sh test
	$(SWIFT) build
	scripts/e2e-clients.sh .build/debug/dotproxy
	$(SWIFT) test

build:
	scripts/setup.sh run
	$(SWIFT) build

# A bounded libFuzzer run over the wire format (FUZZ_SECONDS, default 60).
fuzz:
	scripts/setup.sh run
	Fuzz/run.sh $(FUZZ_SECONDS)

# Micro benchmarks (ordo-one/benchmark).
bench:
	scripts/setup.sh run
	ln -sfn .. Benchmarks/dotproxy
	cd Benchmarks && $(SWIFT) package --disable-sandbox benchmark $(BENCH_ARGS)

clean:
	rm -rf .build Benchmarks/.build Fuzz/.build
