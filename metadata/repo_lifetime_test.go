package metadata

import (
	"context"
	"testing"
	"time"
)

func TestSetLifetime(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	if err := e.repo.SetLifetime("timestamp", 36*time.Hour); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRepo(e.dir, e.keys.all(), e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := e.state().timestamp.Signed.Expires, e.clock.Now().Add(36*time.Hour); !got.Equal(want) {
		t.Errorf("timestamp expires %v after SetLifetime(36h) and Refresh, want %v", got, want)
	}
	e.clock.Add(30 * time.Hour) // past the default lifetime (24h)
	if err := e.client("").Refresh(context.Background()); err != nil {
		t.Errorf("30h later, Refresh = %v, want the 36h timestamp still valid", err)
	}
	for _, tt := range []struct {
		role string
		d    time.Duration
	}{{"bogus", time.Hour}, {"timestamp", 0}, {"timestamp", -time.Hour}} {
		if err := e.repo.SetLifetime(tt.role, tt.d); err == nil {
			t.Errorf("SetLifetime(%q, %v) = %v, want an error", tt.role, tt.d, err)
		}
	}
}
