// Package bench is Strata's benchmark tool (`strata bench`, `make bench`).
//
// It owns: measuring the physical limits of the machine it runs on
// (D_fsync, L_fsync, N_lo — before and after the benchmarks, so that a noisy
// run is flagged), running the named benchmarks of
// docs/BENCHMARKS.md against real `strata serve` processes started through
// internal/harness, and reporting every figure three ways (wall MB/s, MB per
// broker-CPU-second, ratio to the benchmark's limit) over several
// repetitions as min / median / max, judged on the median against the goal.
//
// Output is a human table on stdout and one JSON document per run,
// <out>/<UTC timestamp>.json (see Report). A figure that could not be
// measured is recorded as {"value": null, "reason": "..."}; it is never
// filled in or estimated.
//
// Benchmarks are rows of the table returned by Benchmarks: each has an id, the
// limit it is judged against and a goal on the ratio, and a Prepare function
// returning a Runner whose Rep method measures one repetition. Adding a
// benchmark (P2, L1, C2, U1, M1) is adding a row.
//
// Units: 1 MB = 10^6 bytes; MiB is 2^20 bytes. CPU time is utime+stime from
// /proc/<pid>/stat of every broker process, in clock ticks of 1/100 s.
//
// It must never: signal a process it did not start (brokers are stopped by
// their PID through harness), leave brokers running or data behind, bind
// anything but 127.0.0.1, or run a loop that is not bounded in count and time.
package bench
