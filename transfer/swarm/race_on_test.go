//go:build race

package swarm_test

// raceOn: the race detector is on (it slows the swarms several times, and
// their timeouts with them).
const raceOn = true
