package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/storkpm/stork/share"
)

// VM is a registered VM: its ID, the package name patterns it may request,
// where its packages appear on the host (ROOT/NAME) and how.
type VM struct {
	ID    string   `json:"id"`
	Allow []string `json:"allow"`
	Root  string   `json:"root"`
	Mode  string   `json:"mode"`
	// Quota caps the file bytes of the packages the VM may have installed
	// through its own socket (see reserveQuota); 0: no cap.
	Quota int64 `json:"quota,omitempty"`
	// Unprivileged is the operator's declaration that no process of the
	// VM runs as root (or as the store's owner): link views need it.
	Unprivileged bool `json:"unprivileged,omitempty"`
	// AllowSetuid lets the VM's bind and overlay views apply the setuid
	// and setgid bits of its packages (the setuid variant of each tree,
	// mounted without nosuid). Without it, those files show without the
	// bits, and the VM's list says so. Changing it makes the VM's views of
	// such packages again (applySetuidPolicy).
	AllowSetuid bool `json:"allow_setuid,omitempty"`
	// Groups are the groups the VM belongs to: the daemon keeps it with
	// what their signed policies require and without what they forbid
	// (converge.go), and the VM may request what they require.
	Groups []string `json:"groups,omitempty"`
}

var vmIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func validVMID(id string) error {
	if !vmIDPattern.MatchString(id) {
		return fmt.Errorf("vm id %q: %w: want 1-64 of A-Z a-z 0-9 _ . - starting with a letter or digit", id, ErrBadRequest)
	}
	return nil
}

// Validate checks a VM registration: one with neither an Allow pattern
// nor a group is refused (a VM that may have nothing is a mistake when
// registered; taken out of its last group later, it has nothing).
func (v *VM) Validate() error {
	if len(v.Allow) == 0 && len(v.Groups) == 0 {
		return fmt.Errorf("vm %s: %w: at least one --allow pattern or --group is required", v.ID, ErrBadRequest)
	}
	return v.validate()
}

// validate checks the VM's fields.
func (v *VM) validate() error {
	if err := validVMID(v.ID); err != nil {
		return err
	}
	if err := validGroups(v.ID, v.Groups); err != nil {
		return err
	}
	for _, p := range v.Allow {
		if _, err := path.Match(p, "x"); err != nil || p == "" || strings.Contains(p, "/") {
			return fmt.Errorf("vm %s: allow pattern %q: %w: want a shell pattern over package names", v.ID, p, ErrBadRequest)
		}
	}
	if v.Root == "" || !filepath.IsAbs(v.Root) || filepath.Clean(v.Root) != v.Root {
		return fmt.Errorf("vm %s: root %q: %w: want a clean absolute directory", v.ID, v.Root, ErrBadRequest)
	}
	mode, err := parseViewMode(v.Mode)
	if err != nil {
		return fmt.Errorf("vm %s: %w", v.ID, err)
	}
	if mode == share.ViewLink && !v.Unprivileged {
		return fmt.Errorf("vm %s: %w: link views give root inside the VM write access to the shared objects; "+
			"declare the VM unprivileged (--unprivileged) if none of its processes runs as root, or use --mode bind or overlay", v.ID, ErrBadRequest)
	}
	if mode == share.ViewLink && v.AllowSetuid {
		return fmt.Errorf("vm %s: %w: link views share the store's inodes and never apply setuid; use --mode bind or overlay with --allow-setuid", v.ID, ErrBadRequest)
	}
	if v.Quota < 0 {
		return fmt.Errorf("vm %s: quota %d: %w: want 0 (none) or a byte count", v.ID, v.Quota, ErrBadRequest)
	}
	return nil
}

// Allows reports whether the VM's policy lets it request package name.
func (v *VM) Allows(name string) bool {
	for _, p := range v.Allow {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// vmRegistry is the set of VMs, persisted as JSON (written atomically).
type vmRegistry struct {
	mu   sync.Mutex
	path string
	vms  map[string]VM
}

func loadVMRegistry(p string) (*vmRegistry, error) {
	r := &vmRegistry{path: p, vms: map[string]VM{}}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read vm registry: %w", err)
	}
	var list []VM
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("vm registry %s: malformed: %w", p, err)
	}
	for _, v := range list {
		r.vms[v.ID] = v
	}
	return r, nil
}

func (r *vmRegistry) list() []VM {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]VM, 0, len(r.vms))
	for _, v := range r.vms {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (r *vmRegistry) get(id string) (VM, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.vms[id]
	return v, ok
}

func (r *vmRegistry) put(v VM) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.vms[v.ID] = v
	return r.saveLocked()
}

func (r *vmRegistry) remove(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.vms, id)
	return r.saveLocked()
}

func (r *vmRegistry) saveLocked() error {
	list := make([]VM, 0, len(r.vms))
	for _, v := range r.vms {
		list = append(list, v)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	tmp := r.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write vm registry: %w", err)
	}
	return os.Rename(tmp, r.path)
}

// vmServer serves one VM's socket. The VM's identity is the socket it
// connects to; nothing in a request can name another VM.
type vmServer struct {
	srv *http.Server
}

// AddVM registers (or updates) a VM and starts its socket.
func (d *Daemon) AddVM(v VM) error {
	if v.Mode == "" {
		v.Mode = "bind"
	}
	if v.Root == "" {
		v.Root = filepath.Join(d.cfg.DataDir, "views", v.ID)
	}
	if err := v.Validate(); err != nil {
		return err
	}
	if err := d.checkViewRoot(v.Root); err != nil {
		return fmt.Errorf("vm %s: %w", v.ID, err)
	}
	if err := d.vms.put(v); err != nil {
		return err
	}
	d.stopVM(v.ID)
	d.serveM.Lock()
	serving := d.serving
	d.serveM.Unlock()
	if serving {
		if err := d.startVM(v); err != nil {
			return err
		}
	}
	d.conv.kick()
	return d.applySetuidPolicy(v.ID)
}

// RemoveVM unregisters a VM, stops its socket and removes its views.
func (d *Daemon) RemoveVM(ctx context.Context, id string) error {
	if _, ok := d.vms.get(id); !ok {
		return fmt.Errorf("vm %s: %w", id, ErrUnknownVM)
	}
	d.stopVM(id)
	insts, err := d.store.Installs(id)
	if err != nil {
		return err
	}
	for _, in := range insts {
		if _, err := d.Uninstall(ctx, id, in.Name); err != nil {
			return err
		}
	}
	return d.vms.remove(id)
}

func (d *Daemon) startVM(v VM) error {
	ln, err := listenUnix(VMSocketPath(d.cfg.DataDir, v.ID), 0o660)
	if err != nil {
		return err
	}
	s := &vmServer{srv: newAPIServer(d.vmHandler(v.ID), d.cfg.API, d.log.With("vm", v.ID))}
	d.serveM.Lock()
	d.vmSrv[v.ID] = s
	d.serveM.Unlock()
	lln := newLimitListener(ln, d.log.With("vm", v.ID), newConnSlots(d.conns.PerVM), d.vmConns)
	go func() { _ = s.srv.Serve(lln) }()
	return nil
}

func (d *Daemon) stopVM(id string) {
	d.serveM.Lock()
	s := d.vmSrv[id]
	delete(d.vmSrv, id)
	d.serveM.Unlock()
	if s != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if s.srv.Shutdown(ctx) != nil {
			_ = s.srv.Close() // requests still running past the grace period
		}
		_ = os.Remove(VMSocketPath(d.cfg.DataDir, id))
	}
}

// startVMs starts the socket of every registered VM, and of every VM
// registered from now on, until stopVMs.
func (d *Daemon) startVMs() {
	d.serveM.Lock()
	d.serving = true
	d.serveM.Unlock()
	for _, vm := range d.vms.list() {
		if err := d.startVM(vm); err != nil {
			d.log.Warn("vm socket not started", "vm", vm.ID, "err", err)
		}
	}
}

// stopVMs stops every VM socket.
func (d *Daemon) stopVMs(ctx context.Context) {
	d.serveM.Lock()
	d.serving = false
	ids := make([]string, 0, len(d.vmSrv))
	for id := range d.vmSrv {
		ids = append(ids, id)
	}
	d.serveM.Unlock()
	for _, id := range ids {
		d.stopVM(id)
	}
}

// VMPackage is what a VM sees of a package: no host paths.
type VMPackage struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	Installed bool   `json:"installed"`
	Path      string `json:"path,omitempty"` // relative to the VM's package root
}

// vmHandler is the API a VM reaches through its own socket.
func (d *Daemon) vmHandler(id string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/packages", func(w http.ResponseWriter, r *http.Request) {
		v, ok := d.vms.get(id)
		if !ok {
			writeError(w, fmt.Errorf("vm %s: %w", id, ErrUnknownVM))
			return
		}
		pkgs, err := d.meta.packages(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		installed := d.vmInstalled(id, v)
		mayHave := d.vmMayHave(r.Context(), v)
		var out []VMPackage
		for _, p := range pkgs {
			if !mayHave(p.Name) {
				continue
			}
			vp := VMPackage{Name: p.Name, Version: p.Version}
			if rel, ok := installed[p.Name+"\x00"+p.ManifestCID.String()]; ok {
				vp.Installed, vp.Path = true, rel
			}
			out = append(out, vp)
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/installed", func(w http.ResponseWriter, r *http.Request) {
		v, ok := d.vms.get(id)
		if !ok {
			writeError(w, fmt.Errorf("vm %s: %w", id, ErrUnknownVM))
			return
		}
		insts, err := d.store.Installs(id)
		if err != nil {
			writeError(w, err)
			return
		}
		out := []VMPackage{}
		for _, in := range insts {
			rel, _ := filepath.Rel(v.Root, in.Into)
			out = append(out, VMPackage{Name: in.Name, Version: in.Version, Installed: true, Path: rel})
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /v1/install", func(w http.ResponseWriter, r *http.Request) {
		v, ok := d.vms.get(id)
		if !ok {
			writeError(w, fmt.Errorf("vm %s: %w", id, ErrUnknownVM))
			return
		}
		var req struct {
			Ref string `json:"ref"`
		}
		if err := decodeRequest(r, &req); err != nil {
			writeError(w, err)
			return
		}
		name, _, _ := strings.Cut(req.Ref, "@")
		if !d.vmMayHave(r.Context(), v)(name) {
			writeError(w, fmt.Errorf("vm %s may not install %q: %w by its policy %v and groups %v", id, req.Ref, ErrForbidden, v.Allow, v.Groups))
			return
		}
		release, err := d.reserveQuota(r.Context(), v, req.Ref)
		if err != nil {
			writeError(w, err)
			return
		}
		defer release()
		streamProgress(w, r, func(p Progress) (any, error) {
			insts, err := d.Install(r.Context(), InstallRequest{VM: id, Ref: req.Ref, Into: v.Root, Mode: v.Mode}, p)
			if err != nil {
				return nil, err
			}
			out := make([]VMPackage, 0, len(insts))
			for _, in := range insts {
				rel, _ := filepath.Rel(v.Root, in.Path)
				out = append(out, VMPackage{Name: in.Name, Version: in.Version, Installed: true, Path: rel})
			}
			return out, nil
		})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fmt.Errorf("%s %s: %w: no such VM endpoint", r.Method, r.URL.Path, ErrForbidden))
	})
	return mux
}

// vmInstalled maps name NUL manifest CID -> path relative to the VM root.
func (d *Daemon) vmInstalled(id string, v VM) map[string]string {
	out := map[string]string{}
	insts, err := d.store.Installs(id)
	if err != nil {
		return out
	}
	for _, in := range insts {
		rel, _ := filepath.Rel(v.Root, in.Into)
		out[in.Name+"\x00"+in.ManifestCID.String()] = rel
	}
	return out
}
