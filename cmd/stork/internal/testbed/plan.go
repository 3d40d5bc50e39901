package testbed

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// NSPrefix starts the name of every network namespace a testbed creates;
// the creating process's PID follows ("stk-1234-"), so that runs in
// parallel never share a name and Clean can tell a dead run's leftovers
// from a live run's namespaces.
const NSPrefix = "stk-"

// Host is one testbed host: a network namespace with one link to its
// site's switch.
type Host struct {
	Site  int    // 1-based
	Index int    // 1-based within the site
	Name  string // "s2h3"
	NS    string // network namespace
	IP    string // 10.77.SITE.INDEX
}

// Plan names and addresses a testbed: S sites of H_s hosts each, a switch
// namespace per site (a bridge), a router namespace joining the sites and
// the repository site (one origin host). Addresses are 10.77.SITE.HOST/24,
// the router 10.77.SITE.254, the origin 10.77.0.1; they exist only inside
// the plan's namespaces.
type Plan struct {
	Prefix string
	Sites  []int // hosts per site
}

// NewPlan returns the plan of this process's testbed.
func NewPlan(sites []int) (Plan, error) {
	if len(sites) == 0 || len(sites) > 250 {
		return Plan{}, fmt.Errorf("testbed: %d sites: want 1 to 250", len(sites))
	}
	for i, n := range sites {
		if n < 1 || n > 250 {
			return Plan{}, fmt.Errorf("testbed: site %d has %d hosts: want 1 to 250", i+1, n)
		}
	}
	return Plan{Prefix: fmt.Sprintf("%s%d-", NSPrefix, os.Getpid()), Sites: sites}, nil
}

// RouterNS, OriginNS and SwitchNS name the plan's namespaces.
func (p Plan) RouterNS() string         { return p.Prefix + "r" }
func (p Plan) OriginNS() string         { return p.Prefix + "o" }
func (p Plan) SwitchNS(site int) string { return p.Prefix + "s" + strconv.Itoa(site) }

// OriginIP is the repository's address.
func (Plan) OriginIP() string { return "10.77.0.1" }

// Hosts lists every host, site by site.
func (p Plan) Hosts() []Host {
	var hs []Host
	for s, n := range p.Sites {
		for i := 1; i <= n; i++ {
			name := fmt.Sprintf("s%dh%d", s+1, i)
			hs = append(hs, Host{Site: s + 1, Index: i, Name: name, NS: p.Prefix + name, IP: fmt.Sprintf("10.77.%d.%d", s+1, i)})
		}
	}
	return hs
}

// Namespaces lists every namespace of the plan, router first.
func (p Plan) Namespaces() []string {
	ns := []string{p.RouterNS(), p.OriginNS()}
	for s := range p.Sites {
		ns = append(ns, p.SwitchNS(s+1))
	}
	for _, h := range p.Hosts() {
		ns = append(ns, h.NS)
	}
	return ns
}

// runOf returns the PID in a testbed namespace's name, or 0 if name is not
// one.
func runOf(name string) int {
	rest, ok := strings.CutPrefix(name, NSPrefix)
	if !ok {
		return 0
	}
	pid, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(pid)
	if err != nil || n <= 0 {
		return 0
	}
	return n
}
