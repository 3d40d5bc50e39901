package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/share"
	"github.com/storkpm/stork/transfer/swarm"
)

// maxRequestBody caps every API request body (see guard).
const maxRequestBody = 64 << 10

// Status is what `stork status --json` prints.
type Status struct {
	PeerID          string          `json:"peer_id"`
	Addrs           []string        `json:"addrs"`
	Peers           int             `json:"peers"`
	BytesFromPeers  int64           `json:"bytes_from_peers"`
	BytesFromOrigin int64           `json:"bytes_from_origin"`
	BytesUploaded   int64           `json:"bytes_uploaded"`
	Repo            string          `json:"repo"`
	DataDir         string          `json:"data_dir"`
	Packages        []PackageStatus `json:"packages"`
	VMs             []VM            `json:"vms"`
	Store           StoreHealth     `json:"store"` // damage found and repaired (repair.go)
	Views           []Installed     `json:"views"` // every install, with the state of its view
	// Downloads are the package downloads running.
	Downloads []DownloadStatus `json:"downloads"`
	// Metadata is the repository metadata the daemon applied.
	Metadata MetadataStatus `json:"metadata"`
	// Converge is what convergence to the VMs' groups did (converge.go).
	Converge ConvergeStatus `json:"converge"`
	// Offline: read from the data directory of a stopped daemon
	// (OpenOffline); peers and counters are zero.
	Offline bool `json:"offline,omitempty"`
	// Site is this host's site, SiteSource how it is known: "configured"
	// (--site), "inferred" (round-trip times; the name starts with "~")
	// or "unknown". SitePeers are the peers whose site is known or whose
	// round trip was measured, and whether each is in ours.
	Site       string           `json:"site"`
	SiteSource string           `json:"site_source"`
	SitePeers  []swarm.PeerSite `json:"site_peers,omitempty"`
	// Pulls is what became of this host's cooperative origin fetching
	// since it started: where its duplicate origin fetches come from.
	Pulls PullStatus `json:"pulls"`
}

// PullStatus counts a host's pull-through requests (as the asker) and
// origin chunk requests since the daemon started (swarm.Counters).
type PullStatus struct {
	// Streams: pull-through streams opened to fetchers.
	Streams int64 `json:"streams"`
	// Silent, Claimed, Refused: requests given up because the fetcher
	// said nothing, kept working without sending the chunk, or refused.
	Silent  int64 `json:"silent"`
	Claimed int64 `json:"claimed"`
	Refused int64 `json:"refused"`
	// OriginFetches: chunk requests sent to the origin; OriginFallbacks:
	// those of them for chunks another member ranked before this host
	// for (every fetcher before it refused, failed or stayed silent).
	OriginFetches   int64 `json:"origin_fetches"`
	OriginFallbacks int64 `json:"origin_fallbacks"`
	// OriginDownWaited, OriginDownAtOnce: pull-through requests this host
	// answered that it cannot reach the origin, after waiting on an
	// origin request that failed, or at once (its origin known
	// unreachable then: a site cut off from the repository).
	OriginDownWaited int64 `json:"origin_down_waited"`
	OriginDownAtOnce int64 `json:"origin_down_at_once"`
	// UpSession, UpPull: chunk bytes this host sent peers in swarm
	// sessions (parts of chunks cancelled under way included) and in
	// answers to their pull-through requests; together BytesUploaded.
	UpSession int64 `json:"up_session"`
	UpPull    int64 `json:"up_pull"`
}

// pullStatus is c as Status shows it.
func pullStatus(c swarm.Counters) PullStatus {
	return PullStatus{
		Streams: c.PullStreams, Silent: c.PullsSilent, Claimed: c.PullsClaimed, Refused: c.PullsRefused,
		OriginFetches: c.OriginFetches, OriginFallbacks: c.OriginFallbacks,
		OriginDownWaited: c.OriginDownWaited, OriginDownAtOnce: c.OriginDownAtOnce,
		UpSession: c.UpSession, UpPull: c.UpPull,
	}
}

// DownloadStatus is one running package download.
type DownloadStatus struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	ManifestCID string `json:"manifest"`
	Have        int64  `json:"have"`  // bytes of the package the store holds
	Total       int64  `json:"total"` // the package's bytes
	// FromPeers and FromOrigin split what this run of the download
	// received; Peers is how many peers it trades with now.
	FromPeers  int64     `json:"from_peers"`
	FromOrigin int64     `json:"from_origin"`
	Peers      int       `json:"peers"`
	Started    time.Time `json:"started"`
	// WaitingOriginSince is when the origin became unreachable for this
	// download, which has taken what peers hold and waits for the rest.
	WaitingOriginSince *time.Time `json:"waiting_origin_since,omitempty"`
}

// MetadataStatus is the repository metadata a daemon applied.
type MetadataStatus struct {
	Version   int64     `json:"version"`   // of the signed timestamp; 0 before the first refresh
	Refreshed time.Time `json:"refreshed"` // zero before the first refresh
}

// PackageStatus is one package in the store.
type PackageStatus struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	ManifestCID string `json:"manifest"`
	// State is the store's ("complete", "partial"), or StateWaitingOrigin
	// while its download waits for an unreachable origin.
	State    string   `json:"state"`
	Size     int64    `json:"size"`
	Have     int64    `json:"have"`
	Files    int      `json:"files"`
	Installs []string `json:"installs"`
	// WaitingOriginSince is when the origin became unreachable for the
	// package's download (state waiting_origin).
	WaitingOriginSince *time.Time `json:"waiting_origin_since,omitempty"`
}

// StateWaitingOrigin: the package's download has taken what peers have
// and waits, with backoff, for an unreachable origin (until the daemon's
// OriginDeadline).
const StateWaitingOrigin = "waiting_origin"

// Status reports the daemon's counters and store.
func (d *Daemon) Status() (*Status, error) {
	pkgs, err := d.store.Packages()
	if err != nil {
		return nil, err
	}
	st, err := d.counters()
	if err != nil {
		return nil, err
	}
	st.Packages = []PackageStatus{}
	st.VMs = d.vms.list()
	if st.Views, err = d.listInstalls(""); err != nil {
		return nil, err
	}
	if st.Store, err = d.storeHealth(); err != nil {
		return nil, err
	}
	active := d.swarmActive() // one snapshot, so packages and downloads agree
	st.Downloads = d.activeDownloads(active)
	if d.conv != nil {
		st.Converge = d.conv.status()
	}
	if d.meta != nil {
		st.Metadata.Refreshed, st.Metadata.Version = d.meta.state()
	}
	for _, p := range pkgs {
		installs := p.Installs
		if installs == nil {
			installs = []string{}
		}
		ps := PackageStatus{
			Name: p.Name, Version: p.Version, ManifestCID: p.ManifestCID.String(), State: string(p.State),
			Size: p.Size, Have: p.Have, Files: p.Files, Installs: installs,
		}
		downloadState(&ps, active[p.ManifestCID])
		st.Packages = append(st.Packages, ps)
	}
	return st, nil
}

// swarmActive snapshots the swarm's running downloads by manifest; empty
// in an Offline daemon.
func (d *Daemon) swarmActive() map[cid.Cid]swarm.ActiveDownload {
	m := map[cid.Cid]swarm.ActiveDownload{}
	if d.swarm != nil { // nil in an Offline daemon
		for _, a := range d.swarm.Active() {
			m[a.Manifest] = a
		}
	}
	return m
}

// downloadState adds what a running swarm download a says to ps: the
// bytes it holds, and whether it waits for the origin. a is zero if none
// runs.
func downloadState(ps *PackageStatus, a swarm.ActiveDownload) {
	if !a.Manifest.Defined() {
		return
	}
	ps.Have = max(ps.Have, a.Done)
	if !a.WaitingOriginSince.IsZero() {
		since := a.WaitingOriginSince.UTC()
		ps.State, ps.WaitingOriginSince = StateWaitingOrigin, &since
	}
}

// activeDownloads reports the running downloads, with the swarm's split
// between peers and origin from the snapshot split.
func (d *Daemon) activeDownloads(split map[cid.Cid]swarm.ActiveDownload) []DownloadStatus {
	d.fl.mu.Lock()
	defer d.fl.mu.Unlock()
	out := make([]DownloadStatus, 0, len(d.fl.m))
	for c, f := range d.fl.m {
		a := split[c]
		ds := DownloadStatus{Name: f.name, Version: f.version, ManifestCID: c.String(),
			Have: f.have.Load(), Total: f.total.Load(), FromPeers: a.FromPeers, FromOrigin: a.FromOrigin, Peers: a.Peers, Started: f.started}
		if !a.WaitingOriginSince.IsZero() {
			since := a.WaitingOriginSince.UTC()
			ds.WaitingOriginSince = &since
		}
		out = append(out, ds)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}

// counters is Status without the store's packages and the VMs.
func (d *Daemon) counters() (*Status, error) {
	st := &Status{
		PeerID:  d.peerID(),
		Addrs:   d.addrs(),
		Repo:    d.cfg.RepoURL,
		DataDir: d.cfg.DataDir,
	}
	if d.swarm != nil { // nil in an Offline daemon
		ss := d.swarm.Stats()
		st.BytesFromPeers, st.BytesFromOrigin, st.BytesUploaded = ss.BytesFromPeers, ss.BytesFromOrigin, ss.BytesUploaded
		st.Pulls = pullStatus(d.swarm.Counters())
	}
	if d.p2p != nil {
		st.Peers = len(d.p2p.Peers())
	}
	d.siteStatus(st)
	return st, nil
}

// adminHandler is the API of the admin socket: everything the host's
// administrator may ask, one handler per route.
func (d *Daemon) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := d.Status()
		answer(w, st, err)
	})
	mux.HandleFunc("GET /v1/peers", func(w http.ResponseWriter, r *http.Request) {
		peers := []PeerInfo{}
		if d.p2p != nil {
			peers = d.p2p.Peers()
		}
		writeJSON(w, http.StatusOK, peers)
	})
	mux.HandleFunc("POST /v1/fetch", d.serveFetch)
	mux.HandleFunc("POST /v1/install", func(w http.ResponseWriter, r *http.Request) {
		var req InstallRequest
		if err := decodeRequest(r, &req); err != nil {
			writeError(w, err)
			return
		}
		streamProgress(w, r, func(p Progress) (any, error) { return d.Install(r.Context(), req, p) })
	})
	mux.HandleFunc("POST /v1/uninstall", d.serveUninstall)
	mux.HandleFunc("GET /v1/installs", func(w http.ResponseWriter, r *http.Request) {
		out, err := d.listInstalls(r.URL.Query().Get("vm"))
		answer(w, out, err)
	})
	mux.HandleFunc("POST /v1/gc", d.serveGC)
	mux.HandleFunc("GET /v1/vms", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.vms.list())
	})
	mux.HandleFunc("POST /v1/vms", d.serveAddVM)
	mux.HandleFunc("POST /v1/vms/{id}/groups", d.serveVMGroups)
	mux.HandleFunc("POST /v1/converge", d.serveConverge)
	mux.HandleFunc("POST /v1/announce", d.serveAnnounce)
	mux.HandleFunc("DELETE /v1/vms/{id}", func(w http.ResponseWriter, r *http.Request) {
		err := d.RemoveVM(r.Context(), r.PathValue("id"))
		answer(w, map[string]string{"removed": r.PathValue("id")}, err)
	})
	return mux
}

// serveFetch is POST /v1/fetch: Fetch, its progress streamed.
func (d *Daemon) serveFetch(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Ref string `json:"ref"`
	}
	if err := decodeRequest(r, &req); err != nil {
		writeError(w, err)
		return
	}
	streamProgress(w, r, func(p Progress) (any, error) {
		infos, err := d.Fetch(r.Context(), req.Ref, p)
		if err != nil {
			return nil, err
		}
		out := make([]PackageStatus, 0, len(infos))
		for _, i := range infos {
			out = append(out, PackageStatus{Name: i.Name, Version: i.Version, ManifestCID: i.ManifestCID.String(), State: string(i.State), Size: i.Size, Have: i.Have, Files: i.Files})
		}
		return out, nil
	})
}

// serveUninstall is POST /v1/uninstall.
func (d *Daemon) serveUninstall(w http.ResponseWriter, r *http.Request) {
	var req struct {
		VM   string `json:"vm"`
		Name string `json:"name"`
	}
	if err := decodeRequest(r, &req); err != nil {
		writeError(w, err)
		return
	}
	out, err := d.Uninstall(r.Context(), req.VM, req.Name)
	answer(w, out, err)
}

// serveGC is POST /v1/gc.
func (d *Daemon) serveGC(w http.ResponseWriter, r *http.Request) {
	var req GCRequest
	if err := decodeRequest(r, &req); err != nil {
		writeError(w, err)
		return
	}
	res, err := d.store.GCWith(r.Context(), share.GCOptions{Partial: req.Partial})
	answer(w, res, err)
}

// serveAddVM is POST /v1/vms: AddVM, answered with the VM and its socket.
func (d *Daemon) serveAddVM(w http.ResponseWriter, r *http.Request) {
	var v VM
	if err := decodeRequest(r, &v); err != nil {
		writeError(w, err)
		return
	}
	if err := d.AddVM(v); err != nil {
		writeError(w, err)
		return
	}
	v, _ = d.vms.get(v.ID)
	writeJSON(w, http.StatusOK, map[string]any{"vm": v, "socket": VMSocketPath(d.cfg.DataDir, v.ID)})
}

// answer writes v as JSON, or err.
func answer(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// guard wraps every API handler (newAPIServer). It reads the request body
// whole, at most maxRequestBody bytes, under the server's ReadTimeout (once
// the body is read, net/http lifts the read deadline and only watches for
// the client hanging up, so a long install is not cut). Every write of the
// response then has writeTimeout to complete, counted from the write.
func guard(h http.Handler, writeTimeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dw := &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: writeTimeout}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeError(dw, fmt.Errorf("request body: %w: over %d bytes", ErrBadRequest, maxRequestBody))
			} else {
				writeError(dw, fmt.Errorf("request body: %w: %v", ErrBadRequest, err))
			}
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(dw, r)
	})
}

// deadlineWriter gives each write of a response (and the flush that sends
// it) its own deadline, so that a streamed response lives as long as it
// makes progress and a client that stops reading is dropped.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (w *deadlineWriter) extend() { _ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout)) }

func (w *deadlineWriter) WriteHeader(status int) {
	w.extend()
	w.ResponseWriter.WriteHeader(status)
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.extend()
	return w.ResponseWriter.Write(p)
}

func (w *deadlineWriter) Flush() {
	w.extend()
	_ = w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// decodeRequest strictly decodes one JSON object from the request body.
func decodeRequest(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w: %v", ErrBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("request body: %w: trailing data", ErrBadRequest)
	}
	return nil
}

// apiError is the body of every error response.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

func errorCode(err error) (int, string) {
	switch {
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden, "forbidden"
	case errors.Is(err, ErrUnknownVM), errors.Is(err, metadata.ErrNotFound), errors.Is(err, share.ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, ErrBadRequest), errors.Is(err, metadata.ErrMalformed):
		return http.StatusBadRequest, "bad_request"
	case errors.Is(err, share.ErrInUse):
		return http.StatusConflict, "in_use"
	case errors.Is(err, ErrConverge):
		return http.StatusInternalServerError, "not_converged"
	}
	return http.StatusInternalServerError, "failed"
}

func writeError(w http.ResponseWriter, err error) {
	status, code := errorCode(err)
	writeJSON(w, status, apiError{Error: err.Error(), Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// progressLine is one line of a streamed (NDJSON) long-running request:
// progress lines, then exactly one line with result or error.
type progressLine struct {
	Done   int64           `json:"done,omitempty"`
	Total  int64           `json:"total,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	Code   string          `json:"code,omitempty"`
}

// streamProgress runs fn, streaming its progress as NDJSON lines and ending
// with its result or error.
func streamProgress(w http.ResponseWriter, r *http.Request, fn func(Progress) (any, error)) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	last := time.Time{}
	emit := func(l progressLine) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(l)
		if flusher != nil {
			flusher.Flush()
		}
	}
	res, err := fn(func(done, total int64) {
		if time.Since(last) < 100*time.Millisecond {
			return
		}
		last = time.Now()
		emit(progressLine{Done: done, Total: total})
	})
	if err != nil {
		_, code := errorCode(err)
		emit(progressLine{Error: err.Error(), Code: code})
		return
	}
	b, err := json.Marshal(res)
	if err != nil {
		emit(progressLine{Error: err.Error()})
		return
	}
	emit(progressLine{Result: bytes.TrimSpace(b)})
}
