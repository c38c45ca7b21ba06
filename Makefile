# make bench: weir against a plain franz-go consumer on one seeded topic
# (see README, "Performance"). Shrink it with BENCH_FLAGS="--records 100000".
BENCH_FLAGS ?=

.PHONY: bench
bench:
	go run ./cmd/weir loadtest bench $(BENCH_FLAGS)
