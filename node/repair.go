package node

import (
	"context"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/share"
)

// DefaultScrubRate is how many bytes per second the background scrub
// re-hashes when Config.ScrubRate is 0.
const DefaultScrubRate = 4 << 20

// DefaultScrubFresh is how long after its content was verified an object
// is left to the cheap check by the scrub when Config.ScrubFresh is 0. A
// host that fetched an upgrade a minute ago gains nothing from hashing it
// again while it serves it (uploads and receivers verify what moves);
// the scrub is for damage that creeps in over days, or that nothing else
// would see.
const DefaultScrubFresh = 24 * time.Hour

// DefaultStoreCheckpoint is how often the store makes the files it wrote
// durable when Config.StoreCheckpoint is 0. An upgrade of hundreds of
// small packages then waits for about one sync of the file system per
// second, not several per package; a power cut costs at most about a
// second of downloads, checked (and fetched again if damaged) when the
// daemon starts.
const DefaultStoreCheckpoint = time.Second

// The daemon keeps its store sound (see share/damage.go): before a
// package's tree is exposed to a VM, ensurePackage checks its objects
// cheaply (intact); a scrubber re-hashes every object in turn at
// Config.ScrubRate (those verified within Config.ScrubFresh only
// checked cheaply); and a repairer fetches again, through the normal
// download path (swarm, then origin), every package whose objects were
// found damaged, at start (damage found by `stork verify --repair` while
// the daemon was stopped), whenever new damage is found, and every
// Config.RepairInterval while any remains.

// startStoreCare starts the scrubber and the repairer on ctx and returns
// what to wait on for them to end.
func (d *Daemon) startStoreCare(ctx context.Context) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() { d.repairLoop(ctx) })
	if d.cfg.ScrubRate > 0 {
		wg.Go(func() { d.scrubLoop(ctx) })
	}
	return &wg
}

// checks coalesces concurrent checks of one package (many VMs installing
// it at once): they share one share.CheckPackage.
type checks struct {
	mu sync.Mutex
	m  map[cid.Cid]*checkCall
}

type checkCall struct {
	done chan struct{}
	ok   bool
}

// intact checks a complete package before use (share.CheckPackage) and
// reports whether it is still complete; if not, its repair is under way
// once the caller downloads it. Callers asking while a check of the same
// package runs get its answer.
func (d *Daemon) intact(c cid.Cid) bool {
	d.chk.mu.Lock()
	if call := d.chk.m[c]; call != nil {
		d.chk.mu.Unlock()
		<-call.done
		return call.ok
	}
	if d.chk.m == nil {
		d.chk.m = make(map[cid.Cid]*checkCall)
	}
	call := &checkCall{done: make(chan struct{})}
	d.chk.m[c] = call
	d.chk.mu.Unlock()
	call.ok = d.checkPackage(c)
	d.chk.mu.Lock()
	delete(d.chk.m, c)
	d.chk.mu.Unlock()
	close(call.done)
	return call.ok
}

// checkPackage is one check of intact.
func (d *Daemon) checkPackage(c cid.Cid) bool {
	res, err := d.store.CheckPackage(c)
	if err != nil {
		d.log.Warn("store check failed", "manifest", c, "err", err)
	} else if res.Repairing() {
		d.log.Warn("package damaged on disk: fetching it again before use", "manifest", c, "damaged_objects", len(res.Damaged))
		d.kickRepair()
	}
	info, err := d.store.Package(c)
	return err == nil && info.State == share.StateComplete
}

func (d *Daemon) kickRepair() {
	select {
	case d.repairKick <- struct{}{}:
	default:
	}
}

// repairLoop fetches again the packages the store has marked for repair.
func (d *Daemon) repairLoop(ctx context.Context) {
	t := time.NewTicker(d.cfg.RepairInterval)
	defer t.Stop()
	for {
		d.repairPending(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.repairKick:
		}
	}
}

// repairPending starts a download of every package marked for repair
// that is not being downloaded already.
func (d *Daemon) repairPending(ctx context.Context) {
	reps, err := d.store.RepairsPending()
	if err != nil {
		d.log.Warn("list packages to repair", "err", err)
		return
	}
	for _, rp := range reps {
		r, err := d.storeResolved(rp.Package)
		if err != nil {
			d.log.Warn("repair: package unreadable", "manifest", rp.Package.ManifestCID, "err", err)
			continue
		}
		d.fl.mu.Lock()
		_, busy := d.fl.m[r.ManifestCID]
		d.fl.mu.Unlock()
		if busy {
			continue
		}
		f, err := d.ensurePackage(ctx, r)
		if err != nil {
			d.log.Warn("repair: download not started", "package", r.Name+"@"+r.Version, "err", err)
			continue
		}
		d.log.Info("repair: fetching package again", "package", r.Name+"@"+r.Version, "reason", rp.Reason, "objects", len(rp.Objects))
		d.background(func(context.Context) {
			<-f.done
			if f.err != nil {
				d.log.Warn("repair: download failed; retried later", "package", r.Name+"@"+r.Version, "err", f.err)
			}
		})
	}
}

// storeResolved describes a package of the store as a resolved package,
// from its stored manifest (checked against its CID when it was stored).
func (d *Daemon) storeResolved(info share.PackageInfo) (*metadata.Resolved, error) {
	m, b, err := d.store.Manifest(info.ManifestCID)
	if err != nil {
		return nil, err
	}
	return &metadata.Resolved{
		Name: info.Name, Version: info.Version, ManifestCID: info.ManifestCID,
		ManifestBytes: b, Manifest: m, Length: int64(len(b)), Size: m.TotalSize(),
	}, nil
}

// scrubLoop re-hashes the store's objects in turn, Config.ScrubRate bytes
// per second at most, and at most one batch per second.
func (d *Daemon) scrubLoop(ctx context.Context) {
	rate := d.cfg.ScrubRate
	next := ""
	for {
		start := time.Now()
		n, res, err := d.store.Scrub(ctx, next, rate)
		wait := time.Second
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			d.log.Warn("scrub failed; retried in a minute", "err", err)
			wait = time.Minute
		default:
			next = n
			if res.Repairing() {
				d.kickRepair()
			}
			wait = max(wait, time.Duration(float64(res.Bytes)/float64(rate)*float64(time.Second)))
		}
		timer := time.NewTimer(wait - time.Since(start))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// StoreHealth is the store's damage report in Status.
type StoreHealth struct {
	DamagedObjects  int64          `json:"damaged_objects"`  // found damaged and quarantined since start
	RepairedObjects int64          `json:"repaired_objects"` // fetched again since start
	ScrubbedBytes   int64          `json:"scrubbed_bytes"`   // re-hashed by the scrubber since start
	ScrubRate       int64          `json:"scrub_rate"`       // bytes/s, 0: off
	Repairing       []RepairStatus `json:"repairing"`        // packages waiting to be fetched again
}

// RepairStatus is a package waiting to be fetched again.
type RepairStatus struct {
	Name        string    `json:"name"`
	Version     string    `json:"version"`
	ManifestCID string    `json:"manifest"`
	Objects     int       `json:"objects"`
	Reason      string    `json:"reason"`
	Since       time.Time `json:"since"`
}

// storeHealth reports the store's damage counters and pending repairs.
func (d *Daemon) storeHealth() (StoreHealth, error) {
	dc := d.store.DamageCounts()
	h := StoreHealth{
		DamagedObjects: dc.Damaged, RepairedObjects: dc.Repaired, ScrubbedBytes: dc.Scrubbed,
		ScrubRate: max(d.cfg.ScrubRate, 0), Repairing: []RepairStatus{},
	}
	reps, err := d.store.RepairsPending()
	if err != nil {
		return h, err
	}
	for _, r := range reps {
		h.Repairing = append(h.Repairing, RepairStatus{
			Name: r.Package.Name, Version: r.Package.Version, ManifestCID: r.Package.ManifestCID.String(),
			Objects: len(r.Objects), Reason: r.Reason, Since: r.Since,
		})
	}
	return h, nil
}

// RepairStore is VerifyStore that also repairs, while no daemon runs on
// the data directory (share.Store.Repair): objects that fail are
// quarantined and packages whose trees differ are marked, and the daemon
// fetches them all again when it next starts. It returns the problems
// found and the packages marked ("NAME@VERSION").
func RepairStore(ctx context.Context, dataDir string) (problems, marked []string, err error) {
	unlock, err := lockDataDir(dataDir)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	store, err := share.Open(storeConfig(dataDir, nil))
	if err != nil {
		return nil, nil, err
	}
	defer store.Close()
	problems, _, err = store.Repair(ctx)
	if err != nil {
		return problems, nil, err
	}
	reps, err := store.RepairsPending()
	for _, r := range reps {
		marked = append(marked, r.Package.Name+"@"+r.Package.Version)
	}
	return problems, marked, err
}
