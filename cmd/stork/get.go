package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
	httporigin "github.com/storkpm/stork/transfer/origin"
)

func getCommand() *cli.Command {
	return &cli.Command{
		Name:  "get",
		Usage: "download and verify a package over HTTP, without a daemon",
		Description: "The tree is written as the archive has it. Symlinks are written with their targets as they are, " +
			"absolute ones included: such a target points wherever it is resolved (in a chroot or container that uses DIR as its root, " +
			"into that root; read on the host, into the host's file system); stork get never follows one. " +
			"Run as root, every entry gets the archive's owner and full mode (setuid, setgid, sticky); " +
			"run as another user, entries belong to that user and files lose setuid and setgid (which would otherwise run as that user), " +
			"and the summary counts them.",
		UsageText: "stork get --repo URL --root ROOT.json NAME[@VERSION] --out DIR",
		Flags: []cli.Flag{
			lookupOption("repo.url").flag(),
			lookupOption("repo.root").flag(),
			stringFlag("out", "write the package tree to `DIR` (must not exist yet)", catOutput, true),
			stringFlag("state", "keep trusted metadata in `DIR` (default: a per-repository directory in the user cache)", catStore, false),
			lookupOption("transfer.parallel").flag(),
			&cli.StringFlag{Name: "stall-timeout", Usage: "abandon a request that sends nothing for `DURATION`", Category: catNetwork, EnvVars: env("stall-timeout"), Value: "15s"},
			boolFlag("with-deps", "write the whole dependency closure, each package at DIR/NAME", catOutput),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError(c, "want exactly one NAME[@VERSION], got %d arguments", c.NArg())
			}
			if err := requireOptions(c, "repo.url", "repo.root"); err != nil {
				return err
			}
			ref := c.Args().First()
			stall, err := parseDuration(c.String("stall-timeout"))
			if err != nil {
				return fmt.Errorf("--stall-timeout: %w", err)
			}
			root, err := os.ReadFile(c.String("root"))
			if err != nil {
				return fmt.Errorf("read root metadata: %w", err)
			}
			state := c.String("state")
			if state == "" {
				if state, err = defaultStateDir(c.String("repo")); err != nil {
					return err
				}
			}
			origin, err := httporigin.NewClient(httporigin.Config{URL: c.String("repo"), StallTimeout: stall, UserAgent: "stork/" + version})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()

			start := time.Now()
			if err := os.MkdirAll(filepath.Dir(filepath.Clean(c.String("out"))), 0o755); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			client, err := metadata.NewClient(metadata.ClientConfig{Dir: state, Root: root, Fetcher: origin})
			if err != nil {
				return err
			}
			if err := client.Refresh(ctx); err != nil {
				return fmt.Errorf("update repository metadata from %s: %w", c.String("repo"), err)
			}
			// The whole closure is resolved even without --with-deps, so that
			// an unsatisfiable dependency is reported here.
			closure, err := client.ResolveClosure(ctx, ref)
			if err != nil {
				return err
			}
			n, err := getClosure(ctx, c, origin, closure)
			if err != nil {
				return err
			}
			return printGetResult(c, closure, n, time.Since(start))
		},
	}
}

// getClosure writes the package (closure[0]) at --out, or with --with-deps
// every package of the closure at --out/NAME.
func getClosure(ctx context.Context, c *cli.Context, origin *httporigin.Client, closure []*metadata.Resolved) (getTotals, error) {
	type job struct {
		pkg *metadata.Resolved
		out string
	}
	jobs := []job{{closure[0], c.String("out")}}
	if c.Bool("with-deps") {
		jobs = jobs[:0]
		if err := os.Mkdir(c.String("out"), 0o755); err != nil {
			return getTotals{}, fmt.Errorf("get --with-deps: %w", err)
		}
		for _, p := range closure {
			jobs = append(jobs, job{p, filepath.Join(c.String("out"), p.Name)})
		}
	}
	var n getTotals
	var total int64
	for _, j := range jobs {
		total += j.pkg.Manifest.TotalSize()
	}
	bar := newProgress(c, c.Args().First(), total)
	defer bar.Finish()
	for _, j := range jobs {
		base := n.bytes
		res, err := httporigin.Get(ctx, httporigin.GetOptions{
			Manifest: j.pkg.Manifest,
			Source:   origin,
			OutDir:   j.out,
			Parallel: c.Int("parallel"),
			Progress: func(done, _ int64) { bar.Set(base+done, total) },
		})
		if err != nil {
			if c.Bool("with-deps") {
				_ = os.RemoveAll(c.String("out"))
			}
			return n, fmt.Errorf("get %s@%s: %w", j.pkg.Name, j.pkg.Version, err)
		}
		n.bytes += res.Bytes
		n.files += res.Files
		n.chunks += res.Chunks
		n.setuidDropped += res.SetuidDropped
	}
	return n, nil
}

// getTotals is what a get moved.
type getTotals struct {
	bytes         int64
	files, chunks int
	setuidDropped int // files written without setuid/setgid (not run as root)
}

// printGetResult prints one line, or JSON with --json, about the package
// got (closure[0]) and its dependencies.
func printGetResult(c *cli.Context, closure []*metadata.Resolved, n getTotals, elapsed time.Duration) error {
	pkg := closure[0]
	deps := make([]string, 0, len(closure)-1)
	for _, p := range closure[1:] {
		deps = append(deps, p.Name+"@"+p.Version)
	}
	if c.Bool("json") {
		return printJSON(c, map[string]any{
			"name": pkg.Name, "version": pkg.Version, "manifest": pkg.ManifestCID.String(),
			"out": c.String("out"), "repo": c.String("repo"), "bytes": n.bytes, "files": n.files, "chunks": n.chunks,
			"depends": pkg.Depends, "closure": deps, "seconds": elapsed.Seconds(), "setuid_dropped": n.setuidDropped,
			"mb_per_s": float64(n.bytes) / 1e6 / elapsed.Seconds(),
		})
	}
	if n.setuidDropped > 0 {
		fmt.Fprintf(c.App.ErrWriter, "%d files written without their setuid or setgid bit (not run as root)\n", n.setuidDropped)
	}
	with := ""
	if len(deps) > 0 && c.Bool("with-deps") {
		with = fmt.Sprintf(" with %d dependencies", len(deps))
	}
	fmt.Fprintf(c.App.Writer, "%s@%s%s: %d files, %d bytes verified into %s from %s in %.1fs\n",
		pkg.Name, pkg.Version, with, n.files, n.bytes, c.String("out"), c.String("repo"), elapsed.Seconds())
	return nil
}

// defaultStateDir is where `stork get` keeps the trusted metadata of one
// repository between runs, so a rollback is refused across invocations.
func defaultStateDir(repoURL string) (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find a cache directory for trusted metadata (use --state): %w", err)
	}
	sum := sha256.Sum256([]byte(repoURL))
	return filepath.Join(base, "stork", "get", hex.EncodeToString(sum[:8])), nil
}
