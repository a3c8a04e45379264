// Package harness starts and controls real strata broker processes for
// end-to-end tests, benchmarks and fault injection.
//
// It owns: locating or building the strata binary (Binary), choosing free
// 127.0.0.1 ports (FreePort), and the lifecycle of one broker process
// (Start, Stop, Kill, Restart, Pause, Resume), each in its own process group
// with its output captured to a log file.
//
// It must never signal a process it did not start: every signal goes to the
// PID of a child this package spawned, never by name or to a broad group.
package harness
