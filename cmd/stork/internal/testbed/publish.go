package testbed

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// publish makes the repository (in the root namespace: no network needed)
// with one package of about cfg.Size bytes: whole .deb files from
// cfg.Debs, in name order, while they fit, or random bytes.
func (b *bed) publish(ctx context.Context) error {
	b.repo = filepath.Join(b.work, "repo")
	key := filepath.Join(b.work, "repo.key")
	src := filepath.Join(b.work, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	defer os.RemoveAll(src)
	var err error
	if b.cfg.Debs != "" {
		b.pkg, err = debPackage(b.cfg.Debs, src, b.cfg.Size)
	} else {
		b.pkg, err = randomPackage(filepath.Join(src, "blob.bin"), b.cfg.Size)
	}
	if err != nil {
		return err
	}
	pkgPath := src // a directory of .deb files
	if b.cfg.Debs == "" {
		pkgPath = filepath.Join(src, "blob.bin")
	}
	b.say("repository: package %s, %s, %d bytes in %d files", b.pkg.Name, b.pkg.Source, b.pkg.Bytes, b.pkg.Files)
	steps := [][]string{
		{"keys", "gen", "--out", key},
		{"repo", "init", "--dir", b.repo, "--key", key},
		{"repo", "add", "--dir", b.repo, "--key", key, "--name", b.pkg.Name, "--version", "1.0.0", "--chunk-size", strconv.Itoa(chunkSize), pkgPath},
	}
	for _, s := range steps {
		if err := run(ctx, b.cfg.Stork, s...); err != nil {
			return fmt.Errorf("testbed: publish: %w", err)
		}
	}
	b.root = filepath.Join(b.repo, "metadata", "1.root.json")
	return nil
}

// chunkSize is the package's chunk size (`repo add --chunk-size`).
const chunkSize = 1 << 20

// randomPackage writes size random bytes to path.
func randomPackage(path string, size int64) (PackageInfo, error) {
	f, err := os.Create(path)
	if err != nil {
		return PackageInfo{}, fmt.Errorf("testbed: %w", err)
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		_ = f.Close()
		return PackageInfo{}, fmt.Errorf("testbed: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return PackageInfo{}, fmt.Errorf("testbed: write %s: %w", path, err)
	}
	return PackageInfo{Name: "blob", Source: "random bytes", Bytes: size, Files: 1, Chunks: int((size + chunkSize - 1) / chunkSize)}, nil
}

// debPackage links (or copies) whole .deb files of dir into dst, in name
// order, while their sum stays within size.
func debPackage(dir, dst string, size int64) (PackageInfo, error) {
	debs, err := filepath.Glob(filepath.Join(dir, "*.deb"))
	if err != nil || len(debs) == 0 {
		return PackageInfo{}, fmt.Errorf("testbed: --debs %s: no .deb files", dir)
	}
	sort.Strings(debs)
	info := PackageInfo{Name: "debs", Source: fmt.Sprintf("whole .deb files from %s", dir)}
	for _, d := range debs {
		st, err := os.Stat(d)
		if err != nil || !st.Mode().IsRegular() || info.Bytes+st.Size() > size {
			continue
		}
		to := filepath.Join(dst, filepath.Base(d))
		if err := os.Link(d, to); err != nil {
			if err := copyFile(d, to); err != nil {
				return info, err
			}
		}
		info.Bytes += st.Size()
		info.Files++
		info.Chunks += int((st.Size() + chunkSize - 1) / chunkSize)
	}
	if info.Files == 0 {
		return info, fmt.Errorf("testbed: --debs %s: no .deb file fits in %d bytes", dir, size)
	}
	info.Source = fmt.Sprintf("%d %s", info.Files, strings.TrimPrefix(info.Source, "whole "))
	return info, nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return fmt.Errorf("testbed: copy %s: %w", from, err)
	}
	return out.Close()
}
