# Conveniences over the scripts; the README's two commands are scripts/run.sh and scripts/test.sh,
# which need nothing but bash and Swift.
ARGS ?= --upstream 1.1.1.1

.PHONY: run test build fuzz sanitize bench clean

run:
	scripts/run.sh $(ARGS)

test:
	scripts/test.sh

build:
	scripts/setup.sh run
	swift build

# Bounded libFuzzer runs of every target: the wire format, the DoT reply path, the query pipeline,
# filter lists, the configuration file (FUZZ_SECONDS each, default 60).
fuzz:
	scripts/setup.sh run
	Fuzz/run.sh $(or $(FUZZ_SECONDS),60) all

# The Swift tests under ThreadSanitizer and AddressSanitizer.
sanitize:
	scripts/sanitize.sh

# Micro benchmarks (ordo-one/benchmark).
bench:
	scripts/setup.sh run
	ln -sfn .. Benchmarks/dotproxy
	cd Benchmarks && swift package --disable-sandbox benchmark $(BENCH_ARGS)

clean:
	rm -rf .build .build-tsan .build-asan Benchmarks/.build Fuzz/.build
