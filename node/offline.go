package node

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/storkpm/stork/share"
)

// Offline reads a data directory whose daemon is stopped, for `stork
// status` and `stork list`: the store is opened read-only (share.OpenReadOnly)
// and nothing in the directory is written. A daemon that starts meanwhile
// waits for no reader: it fails to take the directory and its supervisor
// starts it again.
type Offline struct {
	d      *Daemon
	unlock func()
}

// OpenOffline opens dataDir for reading. It fails with ErrRunning while a
// daemon holds the directory (ask the daemon instead).
func OpenOffline(dataDir string) (*Offline, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("data directory %q: %w", dataDir, err)
	}
	unlock, err := lockDataDirShared(abs)
	if err != nil {
		return nil, err
	}
	store, err := share.OpenReadOnly(storeConfig(abs, nil))
	if err != nil {
		unlock()
		return nil, err
	}
	vms, err := loadVMRegistry(filepath.Join(abs, "vms.json"))
	if err != nil {
		store.Close()
		unlock()
		return nil, err
	}
	d := &Daemon{cfg: Config{DataDir: abs, ScrubRate: -1}, log: slog.New(slog.DiscardHandler), store: store, vms: vms}
	return &Offline{d: d, unlock: unlock}, nil
}

// Close releases the store and the directory.
func (o *Offline) Close() error {
	err := o.d.store.Close()
	o.unlock()
	return err
}

// Status is Daemon.Status of the stopped daemon: no peers, no counters,
// Offline set.
func (o *Offline) Status() (*Status, error) {
	st, err := o.d.Status()
	if err != nil {
		return nil, err
	}
	st.Offline = true
	return st, nil
}

// Installs lists the installs of vm ("" all) with the state of each view.
func (o *Offline) Installs(vm string) ([]Installed, error) { return o.d.listInstalls(vm) }

// lockDataDirShared takes the data directory's lock shared: readers
// exclude a daemon (which takes it exclusively), not each other.
func lockDataDirShared(dir string) (func(), error) {
	f, err := os.Open(filepath.Join(dir, "lock"))
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory %s: %w", dir, ErrRunning)
	}
	return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}
