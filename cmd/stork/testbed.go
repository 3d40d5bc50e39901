package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

const catTestbed = "Testbed"

// testbedCommand is hidden: it is `make testbed`'s harness (root, network
// namespaces, tc), not an operator's tool.
func testbedCommand() *cli.Command {
	return &cli.Command{
		Name:   "testbed",
		Usage:  "sites of hosts on one machine (network namespaces, tc): swarm against HTTP, faults, the simulator beside (root)",
		Hidden: true,
		Subcommands: []*cli.Command{
			testbedRunCommand(),
			testbedCleanCommand(),
			testbedDelayCommand(),
		},
	}
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want positive integers separated by commas", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}
