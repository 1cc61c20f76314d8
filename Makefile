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

# A bounded libFuzzer run over the wire format (FUZZ_SECONDS, default 60).
fuzz:
	scripts/setup.sh run
	Fuzz/run.sh $(FUZZ_SECONDS)

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
