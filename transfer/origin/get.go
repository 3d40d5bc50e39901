package origin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
)

// Defaults for GetOptions.
const (
	DefaultParallel = 8
	DefaultRetries  = 3
)

// GetOptions says what Get downloads, from where, and into where.
type GetOptions struct {
	// Manifest is the package content, already verified against signed
	// metadata and validated by the caller. Get checks its paths again.
	Manifest *metadata.Manifest
	// Source delivers chunk bytes. Get verifies each chunk by CID.
	Source ChunkSource
	// OutDir must not exist, or be an empty directory; its parent must
	// exist. It appears complete, or not at all.
	OutDir string
	// Parallel is the number of concurrent chunk requests. Default 8.
	Parallel int
	// Retries is the number of further attempts per chunk after a transient
	// error. 0 means the default (3); negative means none. A chunk that
	// fails its hash, or is longer than expected, is retried at most once.
	Retries int
	// Progress, if set, is called with the bytes written into files so far
	// and Manifest.TotalSize(). Calls are serialised and throttled (about
	// every 100ms, and once at the end).
	Progress func(done, total int64)
	// NoOwners writes every entry owned by the caller and drops setuid
	// and setgid from files, as Get does anyway when it does not run as
	// root: a file owned by the caller with the archive's setuid bit would
	// run as the caller, which the archive never meant. Run as root, Get
	// gives every entry the archive's owner (uid and gid) and full mode.
	NoOwners bool
}

// GetResult describes a finished Get.
type GetResult struct {
	Bytes   int64         // bytes of files written (Manifest.TotalSize)
	Fetched int64         // bytes fetched from Source (each unique chunk once)
	Chunks  int           // unique chunks fetched
	Files   int           // regular files written
	Elapsed time.Duration // wall time of Get
	// SetuidDropped counts the files written without the setuid or setgid
	// bit the archive gives them (see GetOptions.NoOwners).
	SetuidDropped int
}

// Get downloads the tree described by opts.Manifest into opts.OutDir.
//
// It checks every file's whole-file hash (Entry.Hash, the chunk-list hash)
// against its chunk list, fetches every unique chunk once, Parallel at a
// time, verifies each by CID and length, and writes it at every offset of
// every file that uses it: every file is then the one the manifest names.
// Files are created in a hidden staging directory beside OutDir, each
// fsynced once complete; then symlinks are made, modes applied (files, then directories
// deepest first) and the staging directory renamed to OutDir. On any error or cancellation the staging directory is removed:
// OutDir is left as it was.
func Get(ctx context.Context, opts GetOptions) (*GetResult, error) {
	start := time.Now()
	if opts.Manifest == nil {
		return nil, errors.New("get: no manifest")
	}
	if opts.Source == nil {
		return nil, errors.New("get: no chunk source")
	}
	if opts.Parallel <= 0 {
		opts.Parallel = DefaultParallel
	}
	p, err := newPlan(opts.Manifest)
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	out, err := checkOutDir(opts.OutDir)
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	staging, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".stork-partial-")
	if err != nil {
		return nil, fmt.Errorf("get: create staging directory: %w", err)
	}
	g := &getter{opts: opts, plan: p, staging: staging, progressTotal: opts.Manifest.TotalSize(),
		owners: !opts.NoOwners && os.Geteuid() == 0}
	if err := g.run(ctx); err != nil {
		if rerr := removeTree(staging); rerr != nil {
			err = fmt.Errorf("%w (and removing %s: %v)", err, staging, rerr)
		}
		return nil, fmt.Errorf("get %s: %w", opts.OutDir, err)
	}
	if err := ctx.Err(); err != nil {
		_ = removeTree(staging)
		return nil, fmt.Errorf("get %s: %w", opts.OutDir, err)
	}
	// rename(2), not os.Rename, which refuses to replace an empty directory.
	if err := syscall.Rename(staging, out); err != nil {
		err = &os.LinkError{Op: "rename", Old: staging, New: out, Err: err}
		_ = removeTree(staging)
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
			err = fmt.Errorf("%w: %v", ErrOutDirExists, err)
		}
		return nil, fmt.Errorf("get %s: %w", opts.OutDir, err)
	}
	syncDir(filepath.Dir(out))
	return &GetResult{
		Bytes:   g.progressTotal,
		Fetched: g.fetched,
		Chunks:  len(p.unique),
		Files:   len(p.files),
		Elapsed: time.Since(start),

		SetuidDropped: g.setuidDropped,
	}, nil
}

// verifyingSource is a ChunkSource of this package that checks every chunk
// against its CID before returning it (Client), so Get need not hash the
// bytes twice. The method is unexported: no outside source can claim it.
type verifyingSource interface {
	ChunkSource
	verifiesChunks()
}

// use is one place a chunk goes: a file and an offset in it.
type use struct {
	file   int // index into plan.files
	offset int64
	length int64
}

type fileItem struct {
	entry    *metadata.Entry
	dev, ino uint64       // of the file Get created, checked on every reopen
	pending  atomic.Int64 // chunks not yet written; fsync when it reaches 0
}

// plan is a checked manifest, arranged for Get.
type plan struct {
	rootMode *uint32           // mode of the "." entry, if any
	dirs     []*metadata.Entry // sorted by path: parents first
	files    []*fileItem
	links    []*metadata.Entry
	unique   []metadata.ChunkRef
	uses     map[cid.Cid][]use
}

// newPlan checks every entry again (defence in depth: the caller validated
// the manifest) and arranges the work.
func newPlan(m *metadata.Manifest) (*plan, error) {
	p := &plan{uses: make(map[cid.Cid][]use)}
	types := make(map[string]metadata.EntryType, len(m.Entries))
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Path == "." && e.Type == metadata.TypeDir {
			if p.rootMode != nil {
				return nil, fmt.Errorf("entry %q: %w", e.Path, metadata.ErrDuplicatePath)
			}
			mode := e.Mode
			p.rootMode = &mode
			continue
		}
		if err := metadata.ValidatePath(e.Path); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnsafePath, err)
		}
		if _, dup := types[e.Path]; dup {
			return nil, fmt.Errorf("entry %q: %w", e.Path, metadata.ErrDuplicatePath)
		}
		types[e.Path] = e.Type
	}
	fileIndex := make(map[int]int) // entry index -> files index
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Path == "." {
			continue
		}
		// Every ancestor that the manifest lists must be a directory: no
		// file is ever created through a symlink or below a file.
		for dir := path.Dir(e.Path); dir != "."; dir = path.Dir(dir) {
			if t, ok := types[dir]; ok && t != metadata.TypeDir {
				return nil, fmt.Errorf("entry %q: %w: parent %q is a %s", e.Path, ErrUnsafePath, dir, t)
			}
		}
		switch e.Type {
		case metadata.TypeDir:
			p.dirs = append(p.dirs, e)
		case metadata.TypeSymlink:
			if e.Target == "" || strings.IndexByte(e.Target, 0) >= 0 {
				return nil, fmt.Errorf("entry %q: %w: empty symlink target, or NUL in it", e.Path, metadata.ErrMalformed)
			}
			p.links = append(p.links, e)
		case metadata.TypeFile:
			if e.Size < 0 {
				return nil, fmt.Errorf("entry %q: %w: size %d", e.Path, metadata.ErrMalformed, e.Size)
			}
			var want int64
			if e.Size > 0 {
				if m.ChunkSize <= 0 || m.ChunkSize > metadata.MaxChunkSize {
					return nil, fmt.Errorf("manifest: %w: chunk size %d", metadata.ErrMalformed, m.ChunkSize)
				}
				want = (e.Size + m.ChunkSize - 1) / m.ChunkSize
			}
			if int64(len(e.Chunks)) != want {
				return nil, fmt.Errorf("entry %q: %w: %d chunks for %d bytes, want %d", e.Path, metadata.ErrMalformed, len(e.Chunks), e.Size, want)
			}
			for _, s := range e.Chunks {
				if _, _, err := metadata.ParseCID(s); err != nil {
					return nil, fmt.Errorf("entry %q: %w", e.Path, err)
				}
			}
			if err := verifyFileHash(e); err != nil {
				return nil, err
			}
			fileIndex[i] = len(p.files)
			p.files = append(p.files, &fileItem{entry: e})
			p.files[len(p.files)-1].pending.Store(int64(len(e.Chunks)))
		default:
			return nil, fmt.Errorf("entry %q: %w: type %q", e.Path, metadata.ErrUnsupportedEntry, e.Type)
		}
	}
	// Parents the manifest does not list get 0755, like a mkdir -p would.
	for _, e := range m.Entries {
		for dir := path.Dir(e.Path); dir != "." && dir != "/"; dir = path.Dir(dir) {
			if _, ok := types[dir]; ok {
				continue
			}
			types[dir] = metadata.TypeDir
			p.dirs = append(p.dirs, &metadata.Entry{Path: dir, Type: metadata.TypeDir, Mode: 0o755})
		}
	}
	sort.Slice(p.dirs, func(i, j int) bool { return p.dirs[i].Path < p.dirs[j].Path })
	for _, r := range m.ChunkRefs() {
		if r.Length <= 0 {
			return nil, fmt.Errorf("entry %q: %w: empty chunk %d", m.Entries[r.Entry].Path, metadata.ErrMalformed, r.Index)
		}
		if _, seen := p.uses[r.CID]; !seen {
			p.unique = append(p.unique, r)
		}
		p.uses[r.CID] = append(p.uses[r.CID], use{file: fileIndex[r.Entry], offset: r.Offset, length: r.Length})
	}
	return p, nil
}

// checkOutDir returns the absolute OutDir after checking that it does not
// exist (or is an empty directory, not a symlink) and that its parent is a
// directory.
func checkOutDir(dir string) (string, error) {
	if dir == "" {
		return "", errors.New("no output directory")
	}
	out, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("output directory %q: %w", dir, err)
	}
	if out == filepath.Dir(out) {
		return "", fmt.Errorf("output directory %q: %w: the file system root", dir, ErrOutDirExists)
	}
	if fi, err := os.Stat(filepath.Dir(out)); err != nil {
		return "", fmt.Errorf("output directory %q: parent: %w", dir, err)
	} else if !fi.IsDir() {
		return "", fmt.Errorf("output directory %q: parent is not a directory", dir)
	}
	fi, err := os.Lstat(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return out, nil
	case err != nil:
		return "", fmt.Errorf("output directory %q: %w", dir, err)
	case !fi.IsDir():
		return "", fmt.Errorf("output directory %q: %w (a %s)", dir, ErrOutDirExists, fi.Mode().Type())
	}
	f, err := os.Open(out)
	if err != nil {
		return "", fmt.Errorf("output directory %q: %w", dir, err)
	}
	defer f.Close()
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return "", fmt.Errorf("output directory %q: %w", dir, ErrOutDirExists)
	}
	return out, nil
}

// getter is one Get in progress.
type getter struct {
	opts    GetOptions
	plan    *plan
	staging string
	root    *os.Root
	owners  bool // give entries the archive's owners and setuid/setgid
	// setuidDropped counts files written without their setuid or setgid.
	setuidDropped int

	mu            sync.Mutex // guards the fields below
	fetched       int64
	written       int64
	progressTotal int64
	lastProgress  time.Time
}

func (g *getter) run(ctx context.Context) error {
	root, err := os.OpenRoot(g.staging)
	if err != nil {
		return fmt.Errorf("open staging directory: %w", err)
	}
	defer root.Close()
	g.root = root

	// 1. Directories, owner-writable while they are filled.
	for _, e := range g.plan.dirs {
		if err := root.MkdirAll(e.Path, 0o700); err != nil {
			return fmt.Errorf("create directory %q: %w", e.Path, err)
		}
	}
	// 2. Files, created exclusively (never through a symlink) and pre-sized.
	for i := range g.plan.files {
		if err := g.createFile(g.plan.files[i]); err != nil {
			return err
		}
	}
	// 3. Chunks.
	if err := g.fetchAll(ctx); err != nil {
		return err
	}
	g.reportProgress(true)
	// 4. Each file was fsynced as its last chunk landed; empty files now.
	if err := forEach(ctx, g.opts.Parallel, g.plan.files, g.syncEmptyFile); err != nil {
		return err
	}
	// 5. Symlinks, last, so nothing above was written through one. Their
	// targets are written as the archive has them, absolute ones too:
	// they are resolved by whoever uses the tree, relative to that
	// reader's root; Get itself never follows one.
	for _, e := range g.plan.links {
		if dir := path.Dir(e.Path); dir != "." {
			if err := root.MkdirAll(dir, 0o700); err != nil {
				return fmt.Errorf("create directory %q: %w", dir, err)
			}
		}
		if err := root.Symlink(e.Target, e.Path); err != nil {
			return fmt.Errorf("create symlink %q: %w", e.Path, err)
		}
		if err := g.chown(e); err != nil {
			return err
		}
	}
	// 6. Owners, then modes (chown clears setuid): files, then
	// directories deepest first, then the top.
	for _, f := range g.plan.files {
		if err := g.chown(f.entry); err != nil {
			return err
		}
		mode := f.entry.Mode
		if !g.owners && mode&0o6000 != 0 {
			mode &^= 0o6000
			g.setuidDropped++
		}
		if err := g.chmod(f.entry.Path, mode); err != nil {
			return err
		}
	}
	for i := len(g.plan.dirs) - 1; i >= 0; i-- {
		e := g.plan.dirs[i]
		syncDir(filepath.Join(g.staging, filepath.FromSlash(e.Path)))
		if err := g.chown(e); err != nil {
			return err
		}
		if err := g.chmod(e.Path, e.Mode); err != nil {
			return err
		}
	}
	rootMode := uint32(0o755)
	if g.plan.rootMode != nil {
		rootMode = *g.plan.rootMode
	}
	syncDir(g.staging)
	if err := os.Chmod(g.staging, fileMode(rootMode)); err != nil {
		return fmt.Errorf("chmod top directory: %w", err)
	}
	return ctx.Err()
}

func (g *getter) createFile(fi *fileItem) error {
	p := fi.entry.Path
	if dir := path.Dir(p); dir != "." {
		if err := g.root.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create directory %q: %w", dir, err)
		}
	}
	f, err := g.root.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("create file %q: %w", p, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("create file %q: %w", p, err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("create file %q: no inode information", p)
	}
	fi.dev, fi.ino = uint64(sys.Dev), sys.Ino
	if fi.entry.Size > 0 {
		if err := f.Truncate(fi.entry.Size); err != nil {
			return fmt.Errorf("size file %q: %w", p, err)
		}
	}
	return nil
}

// openFile reopens a file Get created, refusing anything else at its path.
func (g *getter) openFile(fi *fileItem, flag int) (*os.File, error) {
	f, err := g.root.OpenFile(fi.entry.Path, flag|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("open %q: %w", fi.entry.Path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open %q: %w", fi.entry.Path, err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || !st.Mode().IsRegular() || uint64(sys.Dev) != fi.dev || sys.Ino != fi.ino {
		f.Close()
		return nil, fmt.Errorf("open %q: %w: not the file Get created", fi.entry.Path, ErrUnsafePath)
	}
	return f, nil
}

// chown gives e its archive owner when Get runs with owners; it never
// follows a symlink (an entry that is one is changed itself).
func (g *getter) chown(e *metadata.Entry) error {
	if !g.owners {
		return nil
	}
	if err := g.root.Lchown(e.Path, int(e.UID), int(e.GID)); err != nil {
		return fmt.Errorf("chown %q: %w", e.Path, err)
	}
	return nil
}

func (g *getter) chmod(p string, mode uint32) error {
	if err := g.root.Chmod(p, fileMode(mode)); err != nil {
		return fmt.Errorf("chmod %q: %w", p, err)
	}
	return nil
}

// fileMode turns manifest permission bits (0o7777) into an os.FileMode.
func fileMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

// fetchAll moves the unique chunks through FetchChunks into the staging files.
func (g *getter) fetchAll(ctx context.Context) error {
	_, err := FetchChunks(ctx, FetchChunksOptions{
		Chunks:   g.plan.unique,
		Source:   g.opts.Source,
		Sink:     getSink{g},
		Parallel: g.opts.Parallel,
		Retries:  g.opts.Retries,
	})
	return err
}

// getSink writes a verified chunk at every offset of every file using it.
type getSink struct{ g *getter }

func (s getSink) PutChunk(c cid.Cid, data []byte) error {
	g := s.g
	for _, u := range g.plan.uses[c] {
		if u.length != int64(len(data)) {
			return fmt.Errorf("chunk %s: %w: used with length %d", c, metadata.ErrMalformed, u.length)
		}
		if err := g.writeAt(g.plan.files[u.file], data, u.offset); err != nil {
			return err
		}
	}
	g.mu.Lock()
	g.fetched += int64(len(data))
	g.mu.Unlock()
	return nil
}

func (g *getter) writeAt(fi *fileItem, data []byte, off int64) error {
	f, err := g.openFile(fi, os.O_WRONLY)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(data, off); err != nil {
		f.Close()
		return fmt.Errorf("write %q at %d: %w", fi.entry.Path, off, err)
	}
	// The file's last chunk: fsync now, overlapping the rest of the
	// download, rather than all files at the end.
	if fi.pending.Add(-1) == 0 {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("fsync %q: %w", fi.entry.Path, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %q: %w", fi.entry.Path, err)
	}
	g.mu.Lock()
	g.written += int64(len(data))
	g.mu.Unlock()
	g.reportProgress(false)
	return nil
}

// reportProgress calls opts.Progress, at most every 100ms unless final.
func (g *getter) reportProgress(final bool) {
	if g.opts.Progress == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	if !final && now.Sub(g.lastProgress) < 100*time.Millisecond {
		return
	}
	g.lastProgress = now
	g.opts.Progress(g.written, g.progressTotal)
}

// syncEmptyFile fsyncs a file that has no chunks.
func (g *getter) syncEmptyFile(_ context.Context, fi *fileItem) error {
	if len(fi.entry.Chunks) > 0 {
		return nil
	}
	f, err := g.openFile(fi, os.O_RDONLY)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %q: %w", fi.entry.Path, err)
	}
	return nil
}

// syncDir fsyncs a directory, best effort: durability of the names, not
// correctness, depends on it.
func syncDir(dir string) {
	f, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = f.Sync()
	_ = f.Close()
}

// removeTree removes dir and everything below it, first making directories
// writable (applied modes such as 0555 would stop os.RemoveAll). It never
// follows symlinks.
func removeTree(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		} else if err != nil && p != dir {
			// The parent was unreadable: make it readable and go on.
			_ = os.Chmod(filepath.Dir(p), 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// verifyFileHash checks e.Hash, the whole-file hash. Entry.Hash is the
// chunk-list hash (metadata.FileHash: the sha2-256 of the file's chunk
// digests), so once every chunk has matched its CID and length, checking the
// hash against the chunk list proves the file without reading it again.
func verifyFileHash(e *metadata.Entry) error {
	return e.VerifyHash()
}
