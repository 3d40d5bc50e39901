package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestVMQuota: a VM's own requests are refused once the packages it would
// have installed exceed its quota, counting a closure's packages it does
// not have yet; two requests in flight together cannot pass it either.
func TestVMQuota(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "lib", "1.0.0", map[string]int{"lib.so": 1 << 20})
	o.publish(t, "app", "1.0.0", map[string]int{"app": 300 << 10}, "lib>=1")
	o.publish(t, "big", "1.0.0", map[string]int{"big": 1 << 20})
	o.publish(t, "x", "1.0.0", map[string]int{"x": 700 << 10})
	o.publish(t, "y", "1.0.0", map[string]int{"y": 700 << 10})
	c := startDaemon(t, o, "")
	ctx := context.Background()
	const quota = 2 << 20
	sock, err := c.AddVM(ctx, VM{ID: "small", Allow: []string{"*"}, Root: t.TempDir(), Mode: "link", Unprivileged: true, Quota: quota})
	if err != nil {
		t.Fatal(err)
	}
	vm := NewSocketClient(sock)
	steps := []struct {
		ref  string
		want error
	}{
		{"app", nil},          // app and lib: 1.3 MiB
		{"lib", nil},          // installed already: nothing new
		{"big", ErrForbidden}, // 1.3 + 1 MiB > 2 MiB
		{"app", nil},          // again: nothing new
	}
	for _, st := range steps {
		_, err := vm.VMInstall(ctx, st.ref, nil)
		if (st.want == nil) != (err == nil) || (err != nil && !errors.Is(err, st.want)) {
			t.Fatalf("VMInstall(%s) = %v, want %v", st.ref, err, st.want)
		}
		if err != nil && !strings.Contains(err.Error(), "quota") || err != nil && !strings.Contains(err.Error(), "vm small") {
			t.Errorf("VMInstall(%s) = %q, want the VM and its quota named", st.ref, err)
		}
	}
	// The admin is not held to the VM's quota.
	if _, err := c.Install(ctx, InstallRequest{VM: "small", Ref: "big", Mode: "link"}, nil); err != nil {
		t.Fatalf("admin install beyond the VM's quota = %v", err)
	}

	// Two requests at once, each alone within the quota, together over it.
	sock, err = c.AddVM(ctx, VM{ID: "pair", Allow: []string{"*"}, Root: t.TempDir(), Mode: "link", Unprivileged: true, Quota: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	pair := NewSocketClient(sock)
	o.delay.Store(int64(50 * time.Millisecond))
	errs := make(chan error, 2)
	for _, ref := range []string{"x", "y"} {
		go func() { _, err := pair.VMInstall(ctx, ref, nil); errs <- err }()
	}
	var ok, refused int
	for range 2 {
		switch err := <-errs; {
		case err == nil:
			ok++
		case errors.Is(err, ErrForbidden):
			refused++
		default:
			t.Errorf("VMInstall = %v", err)
		}
	}
	if ok != 1 || refused != 1 {
		t.Errorf("two concurrent installs of 700 KiB under a 1 MiB quota: %d succeeded, %d refused; want 1 and 1", ok, refused)
	}
}
