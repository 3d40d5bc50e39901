package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/share"
)

// Convergence (see the package documentation, "Groups and convergence").

// DefaultPoll is how often the daemon reads the repository and converges
// its VMs when nothing tells it of a change sooner.
const DefaultPoll = 5 * time.Minute

// Backoff after a failed pass: it doubles from minConvergeBackoff up to
// the poll interval.
const minConvergeBackoff = time.Second

// ConvergeStatus is what the daemon last did to bring its VMs to their
// groups' policies (Status.Converge).
type ConvergeStatus struct {
	// Poll is the interval between passes when nothing happens sooner.
	Poll string `json:"poll"`
	// LastPass is when the last pass ended; LastConverged when a pass
	// last brought every VM to its desired set (zero: never).
	LastPass      time.Time `json:"last_pass"`
	LastConverged time.Time `json:"last_converged"`
	// MetadataVersion is the timestamp version the last pass applied.
	MetadataVersion int64 `json:"metadata_version"`
	// Pending lists what the last pass could not do ("vm: what"); Error
	// says why; Failures counts the failed passes in a row, and NextTry
	// is when the next one runs.
	Pending  []string   `json:"pending"`
	Error    string     `json:"error,omitempty"`
	Failures int        `json:"failures"`
	NextTry  *time.Time `json:"next_try,omitempty"`
	// VMs is each VM with groups (or with packages its groups installed).
	VMs []VMConvergence `json:"vms"`
}

// VMConvergence is one VM's desired and installed sets.
type VMConvergence struct {
	VM     string   `json:"vm"`
	Groups []string `json:"groups"`
	// Desired is NAME@VERSION of the closure of its groups' requirements;
	// Installed what its views hold now, of the names its groups manage.
	Desired   []string `json:"desired"`
	Installed []string `json:"installed"`
	// MetadataVersion is the timestamp version of the metadata its views
	// were last brought to (0: never).
	MetadataVersion int64  `json:"metadata_version"`
	Error           string `json:"error,omitempty"`
}

// converger holds the state of the convergence loop. pass serialises
// passes (the loop's and those asked through the API).
type converger struct {
	kickc chan struct{}
	pass  sync.Mutex

	mu      sync.Mutex
	st      ConvergeStatus
	vms     map[string]VMConvergence
	managed managedSet
	// saved is the managed set as converge.json holds it: a pass that
	// changed nothing does not write it again.
	saved []byte
}

// managedSet is, per VM, the package names that convergence installed
// there: the names it removes when no group wants them any more. It is
// kept in the data directory (converge.json) so that a restarted daemon
// still knows them; packages installed by hand are never in it.
type managedSet map[string][]string

func newConverger(dataDir string, poll time.Duration) (*converger, error) {
	c := &converger{kickc: make(chan struct{}, 1), vms: map[string]VMConvergence{}, managed: managedSet{}}
	c.st.Poll = poll.String()
	b, err := os.ReadFile(managedPath(dataDir))
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("convergence state: %w", err)
	}
	if err := json.Unmarshal(b, &c.managed); err != nil {
		return nil, fmt.Errorf("convergence state %s: %w", managedPath(dataDir), err)
	}
	c.saved = b
	return c, nil
}

func managedPath(dataDir string) string { return filepath.Join(dataDir, "converge.json") }

// saveManaged writes the managed set, replacing the file in one rename
// (synced first, so that a crash leaves the old set or the new one), unless
// the file holds it already.
func (d *Daemon) saveManaged() error {
	d.conv.mu.Lock()
	b, err := json.Marshal(d.conv.managed)
	same := bytes.Equal(b, d.conv.saved)
	d.conv.mu.Unlock()
	if err != nil || same {
		return err
	}
	p := managedPath(d.cfg.DataDir)
	if err := writeFileSync(p+".tmp", b, 0o600); err != nil {
		return fmt.Errorf("convergence state: %w", err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return fmt.Errorf("convergence state: %w", err)
	}
	d.conv.mu.Lock()
	d.conv.saved = b
	d.conv.mu.Unlock()
	return nil
}

// writeFileSync is os.WriteFile followed by an fsync of the file.
func writeFileSync(name string, b []byte, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// kick asks for a pass soon; a kick while one is pending is one kick.
func (c *converger) kick() {
	if c == nil {
		return
	}
	select {
	case c.kickc <- struct{}{}:
	default:
	}
}

// status returns a copy of the convergence status.
func (c *converger) status() ConvergeStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.st
	st.Pending = slices.Clone(st.Pending)
	st.VMs = slices.SortedFunc(maps.Values(c.vms), func(a, b VMConvergence) int { return strings.Compare(a.VM, b.VM) })
	if st.Pending == nil {
		st.Pending = []string{}
	}
	return st
}

// convergeLoop runs a pass at start, then every poll interval, whenever
// kicked (a VM's groups changed, newer metadata was announced), and after
// a failed pass with backoff, until ctx ends.
func (d *Daemon) convergeLoop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-d.conv.kickc:
		}
		next := d.cfg.Poll
		if _, err := d.Converge(ctx); err != nil && ctx.Err() == nil {
			backoff = min(max(2*backoff, minConvergeBackoff), d.cfg.Poll)
			next = backoff
			d.log.Warn("convergence failed: retrying", "in", next, "err", err)
		} else {
			backoff = 0
		}
		at := d.cfg.Now().Add(next)
		d.conv.mu.Lock()
		d.conv.st.NextTry = &at
		d.conv.mu.Unlock()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// Converge runs one pass now: it refreshes the repository metadata (if
// older than RefreshInterval), brings every VM with groups to its desired
// set, and collects what no VM uses any more. A VM whose policies cannot
// be read or whose packages cannot be fetched is left as it was and
// reported; the others converge. It returns the status after the pass.
func (d *Daemon) Converge(ctx context.Context) (ConvergeStatus, error) {
	d.conv.pass.Lock()
	defer d.conv.pass.Unlock()
	err := d.convergePass(ctx)
	// Peers told of the metadata now can take its files and the packages
	// from this host.
	d.announce()
	d.conv.mu.Lock()
	now := d.cfg.Now()
	d.conv.st.LastPass = now
	if err != nil {
		d.conv.st.Failures++
		d.conv.st.Error = err.Error()
	} else {
		d.conv.st.Failures, d.conv.st.Error = 0, ""
		d.conv.st.LastConverged = now
		d.conv.st.NextTry = nil
	}
	d.conv.mu.Unlock()
	return d.conv.status(), err
}

// convergePass is one pass of Converge. A host none of whose VMs has
// groups (or packages its groups installed) reads nothing: it needs no
// policy, and learns of newer metadata from the requests it serves.
func (d *Daemon) convergePass(ctx context.Context) error {
	vms := d.vms.list()
	d.forgetRemovedVMs(vms)
	d.conv.mu.Lock()
	vms = slices.DeleteFunc(vms, func(v VM) bool { return len(v.Groups) == 0 && len(d.conv.managed[v.ID]) == 0 })
	d.conv.mu.Unlock()
	if len(vms) == 0 {
		return nil
	}
	if _, err := d.meta.refresh(ctx, false); err != nil {
		return err
	}
	_, version := d.meta.state()
	var errs, pending []string
	removed := false
	for _, v := range vms {
		d.conv.mu.Lock()
		managed := slices.Clone(d.conv.managed[v.ID])
		d.conv.mu.Unlock()
		res := d.convergeVM(ctx, v, managed, version)
		removed = removed || res.removed
		pending = append(pending, res.pending...)
		if res.err != nil {
			errs = append(errs, res.err.Error())
		}
	}
	if err := d.saveManaged(); err != nil {
		errs = append(errs, err.Error())
	}
	if removed {
		if res, err := d.store.GC(ctx); err != nil {
			errs = append(errs, err.Error())
		} else {
			d.log.Info("collected what no vm uses", "packages", res.Packages, "objects", res.Objects)
		}
	}
	d.conv.mu.Lock()
	d.conv.st.MetadataVersion = version
	d.conv.st.Pending = pending
	d.conv.mu.Unlock()
	if len(errs) > 0 {
		return fmt.Errorf("converge: %w: %s", ErrConverge, joinErrs(errs))
	}
	return nil
}

func joinErrs(errs []string) string {
	if len(errs) == 1 {
		return errs[0]
	}
	return fmt.Sprintf("%s (and %d more)", errs[0], len(errs)-1)
}

// forgetRemovedVMs drops the state of VMs no longer registered.
func (d *Daemon) forgetRemovedVMs(vms []VM) {
	registered := func(id string) bool { return slices.ContainsFunc(vms, func(v VM) bool { return v.ID == id }) }
	d.conv.mu.Lock()
	defer d.conv.mu.Unlock()
	maps.DeleteFunc(d.conv.managed, func(id string, _ []string) bool { return !registered(id) })
	maps.DeleteFunc(d.conv.vms, func(id string, _ VMConvergence) bool { return !registered(id) })
}

// vmResult is what converging one VM did.
type vmResult struct {
	removed bool
	pending []string
	err     error
}

// convergeVM brings v to the closure of its groups' requirements: it
// reads the policies and resolves the closure (on failure nothing
// changes), fetches every member (on failure nothing changes), then
// installs or upgrades each in place and removes what its groups managed
// and want no more, and what they forbid.
func (d *Daemon) convergeVM(ctx context.Context, v VM, managed []string, version int64) (res vmResult) {
	vc := VMConvergence{VM: v.ID, Groups: slices.Clone(v.Groups), Desired: []string{}}
	defer func() {
		vc.Installed = d.managedInstalled(v.ID)
		if res.err != nil {
			vc.Error = res.err.Error()
		}
		d.conv.mu.Lock()
		if res.err == nil {
			vc.MetadataVersion = version
		} else {
			vc.MetadataVersion = d.conv.vms[v.ID].MetadataVersion
		}
		d.conv.vms[v.ID] = vc
		d.conv.mu.Unlock()
	}()
	want, forbid, err := d.groupsWant(ctx, v.Groups)
	if err != nil {
		return vmResult{err: fmt.Errorf("vm %s: %w", v.ID, err), pending: []string{v.ID + ": read its groups' policies"}}
	}
	closure, err := d.meta.c.ResolveSet(ctx, want)
	if err == nil {
		err = checkForbidden(closure, forbid)
	}
	if err != nil {
		return vmResult{err: fmt.Errorf("vm %s: %w", v.ID, err), pending: []string{v.ID + ": resolve " + fmt.Sprint(want)}}
	}
	desired := map[string]bool{}
	for _, r := range closure {
		vc.Desired = append(vc.Desired, r.Name+"@"+r.Version)
		desired[r.Name] = true
	}
	slices.Sort(vc.Desired)
	for _, r := range closure {
		if _, err := d.fetch(ctx, r.Name+"@"+r.Version, true, nil); err != nil {
			return vmResult{err: fmt.Errorf("vm %s: fetch %s@%s: %w", v.ID, r.Name, r.Version, err), pending: pendingOf(v.ID, vc.Desired)}
		}
	}
	return d.applyVM(ctx, v, closure, managed, desired, forbid)
}

func pendingOf(vm string, refs []string) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = vm + ": " + r
	}
	return out
}

// applyVM installs what closure holds into v's views (an install of what
// is there is a no-op; another version is switched in place) and removes
// the managed names not desired and every forbidden name it has.
func (d *Daemon) applyVM(ctx context.Context, v VM, closure []*metadata.Resolved, managed []string, desired, forbid map[string]bool) vmResult {
	var res vmResult
	var errs []error
	now := map[string]bool{}
	// Installing one name (NoDeps) changes no other name's install, and
	// closure holds no forbidden name: one read serves both loops.
	installed := d.installsByName(v.ID)
	for _, r := range closure {
		old, had := installed[r.Name]
		if had && old.ManifestCID.Equals(r.ManifestCID) && d.views.get(v.ID, r.Name) == "" {
			now[r.Name] = true
			continue
		}
		if _, err := d.Install(ctx, InstallRequest{VM: v.ID, Ref: r.Name + "@" + r.Version, NoDeps: true}, nil); err != nil {
			errs = append(errs, err)
			res.pending = append(res.pending, v.ID+": install "+r.Name+"@"+r.Version)
			if !had {
				continue
			}
		} else if had && !old.ManifestCID.Equals(r.ManifestCID) {
			res.removed = d.release(old.ManifestCID) || res.removed
		}
		now[r.Name] = true
	}
	drop := map[string]bool{}
	for _, n := range managed {
		if !desired[n] {
			drop[n] = true
		}
	}
	for n := range forbid {
		if _, ok := installed[n]; ok {
			drop[n] = true
		}
	}
	for _, n := range slices.Sorted(maps.Keys(drop)) {
		out, err := d.Uninstall(ctx, v.ID, n)
		if err != nil && !errors.Is(err, share.ErrNotFound) {
			errs = append(errs, err)
			res.pending = append(res.pending, v.ID+": remove "+n)
			now[n] = true
			continue
		}
		for _, in := range out {
			if c, err := cid.Decode(in.ManifestCID); err == nil {
				res.removed = d.release(c) || res.removed
			}
		}
	}
	d.conv.mu.Lock()
	d.conv.managed[v.ID] = slices.Sorted(maps.Keys(now))
	d.conv.mu.Unlock()
	if len(errs) > 0 {
		res.err = fmt.Errorf("vm %s: %w", v.ID, errors.Join(errs...))
	}
	return res
}

// release lets GC collect a package that convergence took out of a view
// once no VM has it installed (a fetched package is kept until then, see
// fillPackage), and says whether it did.
func (d *Daemon) release(c cid.Cid) bool {
	p, err := d.store.Package(c)
	if err != nil || len(p.Installs) > 0 {
		return false
	}
	if err := d.store.SetKeep(c, false); err != nil {
		d.log.Warn("package not released for collection", "manifest", c, "err", err)
		return false
	}
	return true
}

// managedInstalled lists NAME@VERSION of vm's installs whose names its
// groups manage.
func (d *Daemon) managedInstalled(vm string) []string {
	d.conv.mu.Lock()
	managed := slices.Clone(d.conv.managed[vm])
	d.conv.mu.Unlock()
	installed := d.installsByName(vm)
	out := []string{}
	for _, n := range managed {
		if in, ok := installed[n]; ok {
			out = append(out, in.Name+"@"+in.Version)
		}
	}
	return out
}

// groupsWant reads the policies of groups: the union of their
// requirements and of their forbidden names. A policy that cannot be read
// (unknown group, or a role refused: expired, below threshold, rolled
// back) is an error, so that the VM keeps its last good state.
func (d *Daemon) groupsWant(ctx context.Context, groups []string) (want []string, forbid map[string]bool, err error) {
	forbid = map[string]bool{}
	for _, g := range groups {
		gi, err := d.meta.c.Group(ctx, g)
		if err != nil {
			return nil, nil, err
		}
		want = append(want, gi.Policy.Require...)
		for _, n := range gi.Policy.Forbid {
			forbid[n] = true
		}
	}
	return want, forbid, nil
}

// checkForbidden refuses a closure that holds a forbidden name (one group
// requires what another forbids, or a dependency is forbidden).
func checkForbidden(closure []*metadata.Resolved, forbid map[string]bool) error {
	for _, r := range closure {
		if forbid[r.Name] {
			return fmt.Errorf("%w: %s is required (or a dependency) and forbidden by the VM's groups", ErrConverge, r.Name)
		}
	}
	return nil
}

// serveConverge is POST /v1/converge: one pass now, answered with the
// status after it (an error if the pass failed).
func (d *Daemon) serveConverge(w http.ResponseWriter, r *http.Request) {
	st, err := d.Converge(r.Context())
	answer(w, st, err)
}

// Converge asks the daemon for a convergence pass now and returns the
// status after it.
func (c *Client) Converge(ctx context.Context) (*ConvergeStatus, error) {
	var st ConvergeStatus
	err := c.call(ctx, http.MethodPost, "/v1/converge", struct{}{}, &st)
	return &st, err
}
