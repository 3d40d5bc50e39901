package share

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
)

// Sub-directories of a store's data directory.
const (
	objectsDir = "objects"
	treesDir   = "trees"
	setuidDir  = "setuid"
	partialDir = "partial"
	indexDir   = "index"
	tmpDir     = "tmp"
)

// Config configures a Store. Only Dir is required.
type Config struct {
	// Dir is the data directory; the store's layout is created under it.
	Dir string
	// Logger receives the store's events (and badger's warnings and errors).
	// Nil discards them.
	Logger *slog.Logger
	// Limits bound the manifests BeginPackage accepts; zero fields take
	// metadata's defaults.
	Limits metadata.Limits
	// SyncWrites makes every object, partial chunk, tree and index record
	// durable (fsync) before it is relied upon. It is the default: the zero
	// Config syncs too, and only UnsafeNoSync turns syncing off. The field
	// exists so that callers can say what they rely on.
	SyncWrites bool
	// UnsafeNoSync skips every fsync. The store still survives the process
	// being killed (the page cache outlives it) but not a power cut or a
	// kernel crash. For tests and benchmarks only.
	UnsafeNoSync bool
	// RebuildCommand is the command that rebuilds a lost index, named in
	// ErrIndexLost errors (default "stork index rebuild").
	RebuildCommand string
	// ScrubFresh: Scrub does not re-hash an object whose content was
	// verified less than this long ago (as it was stored, or by an
	// earlier Scrub) while its file keeps the stamp it had then; it only
	// compares the stamp. Zero: Scrub re-hashes every object. See
	// damage.go.
	ScrubFresh time.Duration
	// Checkpoint, when positive, is how often the store makes the files
	// and the download records it wrote durable, instead of waiting for
	// them at each step of a download; what was recorded after the last
	// checkpoint is checked by Open after a power cut (checkpoint.go).
	// Zero syncs at each step.
	Checkpoint time.Duration
}

// Store is the per-host store. All methods are safe for concurrent use.
type Store struct {
	dir  string
	log  *slog.Logger
	lim  metadata.Limits
	sync bool
	db   *badger.DB

	rebuildCmd string        // see Config.RebuildCommand
	scrubFresh time.Duration // see Config.ScrubFresh
	ckpt       time.Duration // see Config.Checkpoint
	ckptStop   chan struct{} // stops checkpointLoop
	ckptDone   chan struct{} // closed when it has
	// lastRun is how the last run that opened the store ended
	// (readLastRun); owner is set once this run has recorded itself.
	lastRun struct{ cut, checkpoints bool }
	owner   bool
	// lazyWrites counts the index's unsynced writes (updateLazy);
	// lazySynced is its value at the last checkpoint's sync.
	lazyWrites, lazySynced atomic.Int64
	now                    func() time.Time // the clock objects' verification times come from

	mcMu   sync.Mutex                 // guards mcache
	mcache map[cid.Cid]cachedManifest // decoded manifests by CID

	// life is held shared by every operation that reads or writes objects,
	// partial files or trees, and exclusively by GC, RemovePackage and
	// Close, so that those never race a download's commit.
	life sync.RWMutex
	// beginning serialises the BeginPackage calls of one package (by
	// manifest CID), so that it has one Partial; calls for different
	// packages run at once, and their syncs share the file system's and
	// badger's commits. beginMu guards the map.
	beginMu   sync.Mutex
	beginning map[string]*beginLock
	// setuidMu serialises building setuid trees (SetuidTree).
	setuidMu sync.Mutex
	// newLayout is the layout new trees get: currentLayout (tests set
	// layoutReadOnly to write a store as earlier versions did).
	newLayout int

	mu       sync.Mutex // guards the fields below
	closed   bool
	filling  map[string]*Partial     // the packages being filled, by manifest CID string
	partials map[string]*partialFile // by partial id

	scratch sync.Map // the fanouts of tmp/ made since Open (inScratch)

	fds   *fdCache   // open partial files
	cm    *committer // commit groups (groupcommit.go)
	fsync *fsSyncer  // the file system's syncs, shared (fssync.go)
	// treesSync shares the syncs of trees/ (new trees' names).
	treesSync *fsSyncer
	indexSync *fsSyncer  // the index's logs, in checkpoint mode (syncIndex)
	places    placeCache // where ReadChunk found chunks in objects
	// noDirect is set once the file system refused O_DIRECT
	// (direct_linux.go).
	noDirect atomic.Bool
	// writing counts the chunk bytes being written (claimSpace).
	writing atomic.Int64

	// Damage counters (damage.go).
	damaged, repairedObjects, scrubbed atomic.Int64
}

// Open opens (creating if needed) the store under cfg.Dir and recovers from
// a crash: it empties tmp/ and drops chunk-presence records of partial files
// that no longer exist (their file was moved into objects/ just before the
// crash). Nothing else needs repair: see the package documentation.
//
// Open refuses (ErrIndexLost) an index that is not the store's own or that
// lacks packages whose trees exist: see checkIndex.
func Open(cfg Config) (*Store, error) { return open(cfg, true) }

// open is Open; checks false skips the index checks (for Rebuild).
func open(cfg Config, checks bool) (*Store, error) {
	s, err := newStore(cfg)
	if err != nil {
		return nil, err
	}
	log := s.log
	for _, d := range []struct {
		name string
		mode os.FileMode
	}{{"", 0o755}, {objectsDir, 0o700}, {treesDir, 0o700}, {setuidDir, 0o700}, {partialDir, 0o700}, {indexDir, 0o700}, {tmpDir, 0o700}, {manifestsDir, 0o755}} {
		if err := os.MkdirAll(s.path(d.name), d.mode); err != nil {
			return nil, fmt.Errorf("open store %s: %w", cfg.Dir, err)
		}
		if d.mode == 0o700 {
			// Objects and trees carry the archive's write bits and owners:
			// only root may reach them on the host (views reach them
			// through mounts, which root made).
			if err := os.Chmod(s.path(d.name), d.mode); err != nil {
				return nil, fmt.Errorf("open store %s: %w", cfg.Dir, err)
			}
		}
	}
	opts := s.indexOptions().WithSyncWrites(s.sync && s.ckpt <= 0).WithNumCompactors(2)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open store %s: index: %w: %w; %s", cfg.Dir, ErrIndexLost, err, s.hintRebuild())
	}
	s.db = db
	// Only now, holding badger's directory lock, is tmp/ ours to empty.
	if err := removeAll(s.path(tmpDir)); err == nil {
		err = os.Mkdir(s.path(tmpDir), 0o700)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: clear tmp: %w", cfg.Dir, err)
	}
	for _, d := range []string{partialDir, tmpDir} {
		if err := markTopDir(s.path(d)); err != nil {
			log.Debug("store: sub-directories not spread over the file system", "dir", s.path(d), "err", err)
		}
	}
	if checks {
		if err := s.readLastRun(); err != nil {
			db.Close()
			return nil, fmt.Errorf("open store %s: index: %w: %w; %s", cfg.Dir, ErrIndexLost, err, s.hintRebuild())
		}
		if err := s.checkIndex(); err != nil {
			db.Close()
			return nil, err
		}
	}
	if err := s.recover(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: recover: %w", cfg.Dir, err)
	}
	if checks {
		if err := s.recoverUnsynced(); err != nil {
			db.Close()
			return nil, fmt.Errorf("open store %s: check what the last run wrote after its last checkpoint: %w", cfg.Dir, err)
		}
	}
	if checks {
		if err := s.backfillManifests(); err != nil {
			db.Close()
			return nil, fmt.Errorf("open store %s: manifest files: %w", cfg.Dir, err)
		}
	}
	s.start()
	log.Debug("store opened", "dir", cfg.Dir, "sync", s.sync)
	return s, nil
}

// newStore is the Store of cfg, its defaults filled in, with nothing
// opened yet.
func newStore(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("open store: %w: empty data directory", ErrInvalid)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		dir:        cfg.Dir,
		log:        log,
		lim:        cfg.Limits,
		sync:       !cfg.UnsafeNoSync,
		rebuildCmd: cfg.RebuildCommand,
		scrubFresh: cfg.ScrubFresh,
		ckpt:       cfg.Checkpoint,
		now:        time.Now,
		filling:    make(map[string]*Partial),
		partials:   make(map[string]*partialFile),
		newLayout:  currentLayout,
		fsync:      newFSSyncer(cfg.Dir, syncFS),
		treesSync:  newFSSyncer(filepath.Join(cfg.Dir, treesDir), syncDirPath),
		indexSync:  newFSSyncer(filepath.Join(cfg.Dir, indexDir), syncIndexFiles),
	}
	if s.rebuildCmd == "" {
		s.rebuildCmd = defaultRebuildCommand
	}
	return s, nil
}

// indexOptions are the badger options Open and OpenReadOnly share.
func (s *Store) indexOptions() badger.Options {
	return badger.DefaultOptions(s.path(indexDir)).
		WithLogger(badgerLogger{s.log.With("component", "badger")}).
		WithMetricsEnabled(false).
		WithNumVersionsToKeep(1).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(16 << 20).
		WithValueLogFileSize(64 << 20)
}

// start starts what an open store runs: the partial-file descriptor cache
// and the committer of chunk groups.
func (s *Store) start() {
	s.fds = newFDCache(s, maxOpenPartials)
	s.cm = newCommitter(s)
	if s.ckpt > 0 && s.owner {
		s.ckptStop, s.ckptDone = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(s.ckptDone)
			s.checkpointLoop(s.ckptStop)
		}()
	}
}

// recover drops presence records whose partial file is gone.
func (s *Store) recover() error {
	ids := make(map[string]bool)
	err := s.db.View(func(txn *badger.Txn) error {
		return scanKeys(txn, prefixPresence, func(k []byte, _ *badger.Item) error {
			id, _, ok := splitPresenceKey(k)
			if ok {
				ids[id] = true
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for id := range ids {
		if _, err := os.Lstat(s.partialPath(id)); errors.Is(err, fs.ErrNotExist) {
			s.log.Info("dropping presence records of a finished partial file", "partial", id)
			if err := s.deletePrefix([]byte(prefixPresence + id + "/")); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close stops the committer and closes the index and every open partial
// file. Downloads handed out
// before become unusable.
func (s *Store) Close() error {
	s.life.Lock()
	defer s.life.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.partials = nil
	s.filling = nil
	s.mu.Unlock()
	// Callers of PutChunk hold life shared while they wait for their
	// group: none is pending now.
	s.cm.close()
	var errs []error
	if s.ckptStop != nil {
		close(s.ckptStop)
		<-s.ckptDone
	}
	errs = append(errs, s.closeRun())
	errs = append(errs, s.fds.closeAll())
	errs = append(errs, s.db.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close store %s: %w", s.dir, err)
	}
	return nil
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Dir returns the store's data directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

// TreePath returns where the tree of a committed package lives:
// DIR/trees/<manifest CID>. The directory exists once Commit has returned.
func (s *Store) TreePath(manifestCID cid.Cid) string {
	return s.path(treesDir, manifestCID.String())
}

// ObjectPath returns the path of the object holding the file with the given
// hash (Entry.Hash) as variant v (see ObjectVariant).
func (s *Store) ObjectPath(hash string, v ObjectVariant) string {
	return s.path(objectsDir, fanout(hash), objectName(hash, v))
}

// partialPath is where partial file id lives: partial/<fanout>/<id>, in
// the sub-directory its object will have (fanout of its hash), so that
// the creates and renames of a package of many small files do not all
// wait on one directory's lock.
func (s *Store) partialPath(id string) string {
	return s.path(partialDir, fanout(hashOfPartialID(id)), id)
}

// inScratch calls create with tmp/<fanout of key>, made if need be: the
// directory where a file or tree to be renamed to a name ending in key
// is written first. tmp/ spreads its sub-directories over the file
// system (markTopDir), so the concurrent downloads of small packages
// create their manifest files and trees in different directories and
// block groups: creators in one directory queue on its lock, and files
// created under one directory share its block group's inode bitmap. A
// directory removed behind the store's back is made again, once.
func (s *Store) inScratch(key string, create func(dir string) error) error {
	shard := fanout(key)
	d := s.path(tmpDir, shard)
	for try := 0; ; try++ {
		if _, ok := s.scratch.Load(shard); !ok {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return err
			}
			s.scratch.Store(shard, true)
		}
		err := create(d)
		if try > 0 || !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		s.scratch.Delete(shard)
	}
}

// fanout is the sub-directory of objects/ for a hash: its last two
// characters (base32 CIDs all start alike, they end at random).
func fanout(hash string) string {
	if len(hash) < 2 {
		return "__"
	}
	return hash[len(hash)-2:]
}

// ObjectVariant is what tells stored copies of one content apart: the
// permission bits and the owner their inode carries. A hard link shares
// its inode's mode and owner, so the same content is stored once per
// variant the trees need.
type ObjectVariant struct {
	Perm     os.FileMode // permission bits only (0o777): never setuid, setgid or sticky
	UID, GID uint32
}

// Tree layouts: how a package's tree maps entries to objects and
// directories (pkgRecord.Layout).
const (
	// layoutReadOnly is the layout of stores written before modes and
	// owners were carried: objects and directories without write bits,
	// owned by root. Trees built so are kept as they are.
	layoutReadOnly = 0
	// layoutFull gives objects the entry's permission bits (write bits
	// included; setuid, setgid and sticky never) and owner, and
	// directories the entry's full mode and owner.
	layoutFull = 1
	// currentLayout is the layout new trees are built with.
	currentLayout = layoutFull
)

// EntryVariant is the object variant a tree built now links for file
// entry e: its permission bits (write bits kept; setuid, setgid and
// sticky dropped: a store object never carries them) and its owner.
func EntryVariant(e *metadata.Entry) ObjectVariant { return variantOf(currentLayout, e) }

// variantOf is the object variant a tree of the given layout links for e.
func variantOf(layout int, e *metadata.Entry) ObjectVariant {
	if layout == layoutReadOnly {
		return ObjectVariant{Perm: os.FileMode(e.Mode & 0o555)}
	}
	return ObjectVariant{Perm: os.FileMode(e.Mode & 0o777), UID: e.UID, GID: e.GID}
}

// variant is the variant an object record describes.
func (r *objRecord) variant() ObjectVariant {
	return ObjectVariant{Perm: os.FileMode(r.Perm), UID: r.UID, GID: r.GID}
}

// objectName is an object's file name: the hash for the common 0444 owned
// by root, else the hash and the octal permission ("<hash>.555"), and the
// owner if it is not root ("<hash>.644.1000.1000").
func objectName(hash string, v ObjectVariant) string {
	switch {
	case v.UID != 0 || v.GID != 0:
		return fmt.Sprintf("%s.%o.%d.%d", hash, v.Perm, v.UID, v.GID)
	case v.Perm == 0o444:
		return hash
	}
	return fmt.Sprintf("%s.%o", hash, v.Perm)
}

// partialID names a partial file: the hash and the size ("<hash>-<size>"),
// because two manifests may claim one hash with different sizes and only
// one of them can be right.
func partialID(hash string, size int64) string { return fmt.Sprintf("%s-%d", hash, size) }

// syncDir fsyncs a directory so that entries created in it are durable.
func (s *Store) syncDir(dir string) error {
	if !s.sync {
		return nil
	}
	return syncDirPath(dir)
}

// removeAll removes path even where the store made directories read-only.
func removeAll(path string) error {
	err := os.RemoveAll(path)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	// Make every directory writable, then retry.
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(path)
}

// badgerLogger adapts badger's logger to slog at warn: badger's info and
// debug chatter is dropped.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(trimNL(fmt.Sprintf(f, a...))) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(trimNL(fmt.Sprintf(f, a...))) }
func (b badgerLogger) Infof(string, ...any)        {}
func (b badgerLogger) Debugf(string, ...any)       {}

func trimNL(s string) string {
	for len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	return s
}
