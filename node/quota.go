package node

import (
	"context"
	"fmt"
	"sync"

	"github.com/ipfs/go-cid"
)

// vmQuotas holds the bytes each VM's requests in flight have reserved
// against its quota (VM.Quota).
type vmQuotas struct {
	mu      sync.Mutex
	pending map[string]int64
}

// reserveQuota checks a VM's own request for ref against its quota: the
// file bytes of the packages of ref's closure that the VM has not
// installed yet, plus those of every package it has installed, plus what
// its other requests in flight have reserved, must not exceed the quota.
// The new bytes stay reserved until release is called. A VM without a
// quota is not limited.
func (d *Daemon) reserveQuota(ctx context.Context, v VM, ref string) (release func(), err error) {
	if v.Quota <= 0 {
		return func() {}, nil
	}
	pkgs, err := d.meta.closure(ctx, ref, nil)
	if err != nil {
		return nil, err
	}
	insts, err := d.store.Installs(v.ID)
	if err != nil {
		return nil, err
	}
	installed := make(map[cid.Cid]bool)
	var used int64
	for _, in := range insts {
		if installed[in.ManifestCID] {
			continue
		}
		installed[in.ManifestCID] = true
		if info, err := d.store.Package(in.ManifestCID); err == nil {
			used += info.Size
		}
	}
	var add int64
	for _, p := range pkgs {
		if !installed[p.ManifestCID] {
			installed[p.ManifestCID] = true
			add += p.Manifest.TotalSize()
		}
	}
	q := &d.quota
	q.mu.Lock()
	defer q.mu.Unlock()
	pending := q.pending[v.ID]
	if used+pending+add > v.Quota {
		return nil, fmt.Errorf("vm %s may not install %s: %w: it needs %d more bytes on top of %d installed and %d being installed, over its quota of %d bytes: %w",
			v.ID, ref, ErrQuotaExceeded, add, used, pending, v.Quota, ErrForbidden)
	}
	if q.pending == nil {
		q.pending = make(map[string]int64)
	}
	q.pending[v.ID] += add
	var once sync.Once
	return func() {
		once.Do(func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			if q.pending[v.ID] -= add; q.pending[v.ID] <= 0 {
				delete(q.pending, v.ID)
			}
		})
	}, nil
}
