package share

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// TestBeginPackageOthersGoOn: while one package's BeginPackage is held
// (here: reading its names file, made a FIFO no one writes to yet), the
// BeginPackage of another package completes. An upgrade begins hundreds
// of packages at once, each with several syncs; they do not queue behind
// one another.
func TestBeginPackageOthersGoOn(t *testing.T) {
	t.Parallel()
	s, err := Open(Config{Dir: t.TempDir(), UnsafeNoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := makePkg(t, testChunk, file("a", 0o644, []byte("package a")))
	b := makePkg(t, testChunk, file("b", 0o644, []byte("package b")))
	fifo := s.namesPath(a.cid.String())
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	aDone := make(chan error, 1)
	go func() {
		d, err := s.BeginPackage("a", "1", a.cid, a.bytes)
		if err == nil {
			d.Close()
		}
		aDone <- err
	}()
	// Once a reads the FIFO, a writer can open it (without blocking): a
	// then waits for the writer's bytes, or its close, holding its
	// BeginPackage.
	var w *os.File
	for deadline := time.Now().Add(10 * time.Second); w == nil; {
		w, err = os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil && time.Now().After(deadline) {
			t.Fatalf("BeginPackage(a) never read its names file: %v", err)
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	bDone := make(chan error, 1)
	go func() {
		d, err := s.BeginPackage("b", "1", b.cid, b.bytes)
		if err == nil {
			d.Close()
		}
		bDone <- err
	}()
	bWaited := false
	select {
	case err := <-bDone:
		if err != nil {
			t.Errorf("BeginPackage(b) = %v", err)
		}
	case <-time.After(10 * time.Second):
		bWaited = true
		t.Errorf("BeginPackage(b) still waits while BeginPackage(a) is held")
	}
	// Release a: the writer closes (an empty names file, which a
	// rewrites).
	w.Close()
	if err := <-aDone; err != nil {
		t.Logf("BeginPackage(a) after its names file was a FIFO: %v", err)
	}
	if bWaited {
		<-bDone
	}
}
