package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// Client talks to a daemon's local API over a Unix socket: the admin socket
// of a data directory, or a VM's own socket.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client of the admin API of the daemon on dataDir.
func NewClient(dataDir string) *Client { return NewSocketClient(SocketPath(dataDir)) }

// NewSocketClient returns a client of the API served on socket.
func NewSocketClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 4,
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}}
}

// APIError is an error the daemon answered with.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string { return e.Message }

// Is maps the daemon's error codes back onto this package's sentinels.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrForbidden:
		return e.Code == "forbidden"
	case ErrBadRequest:
		return e.Code == "bad_request"
	case ErrBusy:
		return e.Code == "busy"
	case ErrConverge:
		return e.Code == "not_converged"
	}
	return false
}

func (c *Client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte: // already encoded
		rd = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://stork"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if _, serr := os.Stat(c.socket); serr != nil {
			return nil, fmt.Errorf("%w: no socket at %s (start `stork daemon`)", ErrNotRunning, c.socket)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrNotRunning, c.socket, err)
	}
	return resp, nil
}

func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e apiError
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return &APIError{Status: resp.StatusCode, Code: e.Code, Message: e.Error}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// stream runs a streamed request, passing progress on and decoding the result.
func (c *Client) stream(ctx context.Context, path string, body any, progress Progress, out any) error {
	resp, err := c.do(ctx, http.MethodPost, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e apiError
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return &APIError{Status: resp.StatusCode, Code: e.Code, Message: e.Error}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var l progressLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("daemon sent a malformed line: %w", err)
		}
		switch {
		case l.Error != "":
			return &APIError{Status: http.StatusOK, Code: l.Code, Message: l.Error}
		case l.Result != nil:
			if out != nil {
				return json.Unmarshal(l.Result, out)
			}
			return nil
		case progress != nil:
			progress(l.Done, l.Total)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("daemon connection: %w", err)
	}
	return errors.New("daemon closed the connection before answering")
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	return &st, c.call(ctx, http.MethodGet, "/v1/status", nil, &st)
}

// Fetch brings ref and its closure into the host store.
func (c *Client) Fetch(ctx context.Context, ref string, progress Progress) ([]PackageStatus, error) {
	var out []PackageStatus
	return out, c.stream(ctx, "/v1/fetch", map[string]string{"ref": ref}, progress, &out)
}

// Install exposes ref's closure in a VM's view.
func (c *Client) Install(ctx context.Context, req InstallRequest, progress Progress) ([]Installed, error) {
	var out []Installed
	return out, c.stream(ctx, "/v1/install", req, progress, &out)
}

// Uninstall removes a VM's view of a package.
func (c *Client) Uninstall(ctx context.Context, vm, name string) ([]Installed, error) {
	var out []Installed
	return out, c.call(ctx, http.MethodPost, "/v1/uninstall", map[string]string{"vm": vm, "name": name}, &out)
}

// Installs lists installs, of one VM or (vm == "") of all.
func (c *Client) Installs(ctx context.Context, vm string) ([]Installed, error) {
	var out []Installed
	return out, c.call(ctx, http.MethodGet, "/v1/installs?vm="+url.QueryEscape(vm), nil, &out)
}

// GC collects what nothing references.
func (c *Client) GC(ctx context.Context) (map[string]any, error) {
	return c.GCWith(ctx, GCRequest{})
}

// GCRequest says what else GC may remove.
type GCRequest struct {
	// Partial also drops unfinished packages no VM uses and no download
	// is filling, with their partial files (share.GCOptions.Partial).
	Partial bool `json:"partial,omitempty"`
}

// GCWith collects what nothing references, and what req allows.
func (c *Client) GCWith(ctx context.Context, req GCRequest) (map[string]any, error) {
	var out map[string]any
	return out, c.call(ctx, http.MethodPost, "/v1/gc", req, &out)
}

// AddVM registers a VM; the answer names its socket.
func (c *Client) AddVM(ctx context.Context, v VM) (string, error) {
	var out struct {
		Socket string `json:"socket"`
	}
	return out.Socket, c.call(ctx, http.MethodPost, "/v1/vms", v, &out)
}

// RemoveVM unregisters a VM and removes its views.
func (c *Client) RemoveVM(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/v1/vms/"+url.PathEscape(id), nil, nil)
}

// VMs lists registered VMs.
func (c *Client) VMs(ctx context.Context) ([]VM, error) {
	var out []VM
	return out, c.call(ctx, http.MethodGet, "/v1/vms", nil, &out)
}

// VMPackages (on a VM socket) lists what the VM may install.
func (c *Client) VMPackages(ctx context.Context) ([]VMPackage, error) {
	var out []VMPackage
	return out, c.call(ctx, http.MethodGet, "/v1/packages", nil, &out)
}

// VMInstall (on a VM socket) asks for a package in the VM's own view.
func (c *Client) VMInstall(ctx context.Context, ref string, progress Progress) ([]VMPackage, error) {
	var out []VMPackage
	return out, c.stream(ctx, "/v1/install", map[string]string{"ref": ref}, progress, &out)
}

// VMInstalled (on a VM socket) lists the VM's own installs.
func (c *Client) VMInstalled(ctx context.Context) ([]VMPackage, error) {
	var out []VMPackage
	return out, c.call(ctx, http.MethodGet, "/v1/installed", nil, &out)
}

// Peers lists the daemon's connected peers with their latency.
func (c *Client) Peers(ctx context.Context) ([]PeerInfo, error) {
	var out []PeerInfo
	return out, c.call(ctx, http.MethodGet, "/v1/peers", nil, &out)
}
