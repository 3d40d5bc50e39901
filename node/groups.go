package node

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/storkpm/stork/metadata"
)

// validGroups checks a VM's group names.
func validGroups(vm string, groups []string) error {
	for _, g := range groups {
		if err := metadata.ValidateGroupName(g); err != nil {
			return fmt.Errorf("vm %s: %w: %w", vm, ErrBadRequest, err)
		}
	}
	return nil
}

// vmMayHave returns what VM v may request through its socket: a name its
// Allow patterns match or some group of its requires, unless some group of
// its forbids it. Policies that cannot be read (not published, or refused)
// allow nothing.
func (d *Daemon) vmMayHave(ctx context.Context, v VM) func(name string) bool {
	required, forbidden := map[string]bool{}, map[string]bool{}
	for _, g := range v.Groups {
		gi, err := d.meta.c.Group(ctx, g)
		if err != nil {
			continue
		}
		refs, err := gi.Policy.Refs()
		if err != nil {
			continue
		}
		for _, r := range refs {
			required[r.Name] = true
		}
		for _, n := range gi.Policy.Forbid {
			forbidden[n] = true
		}
	}
	return func(name string) bool {
		return !forbidden[name] && (required[name] || v.Allows(name))
	}
}

// GroupsRequest changes the groups of a registered VM.
type GroupsRequest struct {
	Add    []string `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

// SetVMGroups adds vm to the groups in add and takes it out of those in
// remove, and has the daemon converge it to its new groups at once. It
// returns the VM as registered now.
func (d *Daemon) SetVMGroups(id string, req GroupsRequest) (VM, error) {
	if err := validVMID(id); err != nil {
		return VM{}, err
	}
	if err := validGroups(id, append(slices.Clone(req.Add), req.Remove...)); err != nil {
		return VM{}, err
	}
	v, err := d.vms.update(id, func(v *VM) error {
		for _, g := range req.Add {
			if !slices.Contains(v.Groups, g) {
				v.Groups = append(v.Groups, g)
			}
		}
		v.Groups = slices.DeleteFunc(v.Groups, func(g string) bool { return slices.Contains(req.Remove, g) })
		slices.Sort(v.Groups)
		return v.validate()
	})
	if err != nil {
		return VM{}, err
	}
	d.conv.kick()
	return v, nil
}

// update changes the registered VM id with fn, under the registry's lock,
// and saves it if fn succeeds.
func (r *vmRegistry) update(id string, fn func(*VM) error) (VM, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.vms[id]
	if !ok {
		return VM{}, fmt.Errorf("vm %s: %w", id, ErrUnknownVM)
	}
	v.Allow, v.Groups = slices.Clone(v.Allow), slices.Clone(v.Groups)
	if err := fn(&v); err != nil {
		return VM{}, err
	}
	r.vms[id] = v
	return v, r.saveLocked()
}

// serveVMGroups is POST /v1/vms/{id}/groups.
func (d *Daemon) serveVMGroups(w http.ResponseWriter, r *http.Request) {
	var req GroupsRequest
	if err := decodeRequest(r, &req); err != nil {
		writeError(w, err)
		return
	}
	v, err := d.SetVMGroups(r.PathValue("id"), req)
	answer(w, v, err)
}

// SetVMGroups asks the daemon to change a VM's groups (see
// Daemon.SetVMGroups).
func (c *Client) SetVMGroups(ctx context.Context, id string, req GroupsRequest) (VM, error) {
	var v VM
	err := c.call(ctx, http.MethodPost, "/v1/vms/"+id+"/groups", req, &v)
	return v, err
}
