# make bench: weir against a plain franz-go consumer on one seeded topic
# (see README, "Performance"). Shrink it with BENCH_FLAGS="--records 100000".
BENCH_FLAGS ?=

.PHONY: bench bench-memory
bench:
	go run ./cmd/weir loadtest bench $(BENCH_FLAGS)

# make bench-memory: weir run's peak RSS against max_inflight_bytes + 64 MiB
# with a slow handler and a million records waiting (README, "Memory").
bench-memory:
	go run ./cmd/weir loadtest memory $(BENCH_FLAGS)
