// Command strata is the Strata broker.
//
//	strata serve [flags]   run a broker (embedded etcd and local defaults when given nothing)
//	strata bench [flags]   run the benchmarks of BENCHMARKS.md
//	strata version
//
// This is the only place that picks concrete backends.
package main

import (
	"fmt"
	"os"

	"github.com/stratabroker/strata/internal/bench"
)

var version = "dev"

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		os.Exit(serve(os.Args[2:]))
	case "bench":
		os.Exit(bench.Main(os.Args[2:]))
	case "version", "--version", "-version":
		fmt.Println("strata", version)
	case "help", "-h", "--help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "strata: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  strata serve [flags]   run a broker; 'strata serve -h' lists every flag
  strata bench [flags]   measure the machine's limits and the broker against them
  strata version
`)
}
