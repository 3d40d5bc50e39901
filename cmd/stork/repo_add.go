package main

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
)

func repoAddCommand() *cli.Command {
	return &cli.Command{
		Name: "add",
		Usage: "publish packages (directory, .tar, .tar.gz, .tar.zst, .deb or single file) as NAME@VERSION; " +
			"a .deb without --name/--version is published under its control file's Package, Version and Depends",
		UsageText: "stork repo add --dir REPO --key FILE --name NAME --version VER [--version-scheme semver|deb|rpm] [--depends 'NAME>=1.2' ...] PATH\n" +
			"stork repo add --dir REPO --key FILE FILE.deb...\n" +
			"stork repo add --dir REPO --key FILE --from LIST [FILE.deb...]   # LIST: one 'NAME VERSION PATH' a line",
		Description: "--key: the targets key, or the key of the publisher a delegation names (stork repo delegate), with the snapshot and timestamp keys.\n" +
			"Everything one command publishes is signed in one commit: each changed role, the snapshot\n" +
			"and the timestamp once, however many packages. Publishers take turns on the repository lock.",
		Flags: []cli.Flag{
			repoDirFlag(),
			keyFlag(),
			stringFlag("name", "package `NAME` (default for a .deb: its Package field)", catRepo, false),
			stringFlag("version", "package `VERSION`, published as given (default for a .deb: its Version field)", catRepo, false),
			stringFlag("version-scheme", "`SCHEME` ordering the version: semver, deb or rpm (default: deb for a .deb, else semver)", catRepo, false),
			stringSliceFlag("depends", "dependency `CONSTRAINT` such as 'libfoo>=1.2', 'libc6>= 2.36, << 3' or 'a | b' (repeat; replaces a .deb's Depends)", catRepo),
			stringFlag("from", "publish every package listed in `FILE` ('NAME VERSION PATH' a line, tab- or space-separated; # comments; - for stdin)", catRepo, false),
			stringFlag("chunk-size", "chunk `SIZE` (default 1M)", catLimits, false),
			jsonFlag(),
		},
		Action: repoAddAction,
	}
}

func repoAddAction(c *cli.Context) error {
	if c.NArg() == 0 && !c.IsSet("from") {
		return usageError(c, "want a PATH (a directory, archive or file), one or more .deb files, or --from LIST")
	}
	chunkSize, err := sizeValue(c, "chunk-size")
	if err != nil {
		return err
	}
	keys, err := loadKeys(c.StringSlice("key"))
	if err != nil {
		return err
	}
	log := newLogger(c)
	list, err := addOptionsFromArgs(c, log)
	if err != nil {
		return err
	}
	if c.IsSet("from") {
		more, err := addOptionsFromList(c)
		if err != nil {
			return err
		}
		list = append(list, more...)
	}
	for i := range list {
		list[i].Import.ChunkSize = chunkSize
	}
	repo, err := metadata.OpenRepo(c.String("dir"), keys, nil)
	if err != nil {
		return err
	}
	results, err := repo.AddMany(c.Context, list)
	if err != nil {
		return err
	}
	for _, res := range results {
		for _, d := range res.Missing {
			log.Warn("dependency not in the repository", "package", res.Name+"@"+res.Version, "dependency", d)
		}
		for _, n := range res.NotIndexed {
			log.Warn("provided name not indexed: no key for a role that may sign it, so no client takes this package as its provider",
				"package", res.Name+"@"+res.Version, "provides", n)
		}
	}
	return printAddResults(c, results)
}

// addOptionsFromArgs builds one AddOptions per PATH. A .deb takes what the
// flags do not give from its control file; any other PATH needs --name
// and --version; several PATHs must all be .debs, and then take nothing
// from the flags but the scheme.
func addOptionsFromArgs(c *cli.Context, log *slog.Logger) ([]metadata.AddOptions, error) {
	paths := c.Args().Slice()
	flagged := c.IsSet("name") || c.IsSet("version") || c.IsSet("depends")
	if len(paths) > 1 && flagged {
		return nil, usageError(c, "--name, --version and --depends describe one package; with %d PATHs each .deb's control file is used", len(paths))
	}
	if c.IsSet("from") && flagged {
		return nil, usageError(c, "--name, --version and --depends describe one package; with --from each line names its package")
	}
	if c.IsSet("from") {
		for _, p := range paths {
			if deb, err := isDeb(p); err != nil || !deb {
				return nil, usageError(c, "%s is not a .deb: with --from, list it in the file with its name and version", p)
			}
		}
	}
	var list []metadata.AddOptions
	for _, p := range paths {
		deb, err := isDeb(p)
		if err != nil {
			return nil, err
		}
		var opts metadata.AddOptions
		switch {
		case deb && !(c.IsSet("name") && c.IsSet("version") && c.IsSet("depends")):
			o, ctl, err := metadata.DebAddOptions(p)
			if err != nil {
				return nil, err
			}
			for _, n := range ctl.Notes {
				log.Info("control file", "package", ctl.Package+"@"+ctl.Version, "note", n)
			}
			opts = o
		case deb:
			opts = metadata.AddOptions{Source: p, Scheme: metadata.SchemeDeb, Import: metadata.ImportOptions{Kind: metadata.KindDeb}}
		case len(paths) > 1:
			return nil, usageError(c, "%s is not a .deb: only .debs carry their own name and version (publish it alone with --name and --version)", p)
		case !c.IsSet("name") || !c.IsSet("version"):
			return nil, usageError(c, "--name and --version are required for %s (only a .deb carries its own)", p)
		default:
			opts = metadata.AddOptions{Source: p}
		}
		if c.IsSet("name") {
			opts.Name = c.String("name")
		}
		if c.IsSet("version") {
			opts.Version = c.String("version")
		}
		if c.IsSet("depends") {
			opts.Depends = c.StringSlice("depends")
		}
		if c.IsSet("version-scheme") {
			s, err := metadata.ParseScheme(c.String("version-scheme"))
			if err != nil {
				return nil, fmt.Errorf("--version-scheme: %w", err)
			}
			opts.Scheme = s
		}
		list = append(list, opts)
	}
	return list, nil
}

// addOptionsFromList reads --from: one package a line, "NAME VERSION
// PATH" (separated by tabs, or by spaces when the line has no tab), empty
// lines and lines starting with # skipped.
func addOptionsFromList(c *cli.Context) ([]metadata.AddOptions, error) {
	var in io.Reader = os.Stdin
	if f := c.String("from"); f != "-" {
		file, err := os.Open(f)
		if err != nil {
			return nil, fmt.Errorf("--from: %w", err)
		}
		defer file.Close()
		in = file
	}
	var scheme metadata.Scheme
	if c.IsSet("version-scheme") {
		s, err := metadata.ParseScheme(c.String("version-scheme"))
		if err != nil {
			return nil, fmt.Errorf("--version-scheme: %w", err)
		}
		scheme = s
	}
	var list []metadata.AddOptions
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var fields []string
		if strings.Contains(line, "\t") {
			fields = strings.Split(line, "\t")
		} else {
			fields = strings.Fields(line)
		}
		if len(fields) != 3 || fields[0] == "" || fields[1] == "" || fields[2] == "" {
			return nil, fmt.Errorf("--from %s line %d: want NAME VERSION PATH, got %q", c.String("from"), n, line)
		}
		list = append(list, metadata.AddOptions{Name: fields[0], Version: fields[1], Source: fields[2], Scheme: scheme})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--from %s: %w", c.String("from"), err)
	}
	return list, nil
}

// isDeb reports whether path is a .deb: named *.deb, or a regular file
// starting with the ar magic.
func isDeb(path string) (bool, error) {
	if strings.HasSuffix(path, ".deb") {
		return true, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return false, nil
	}
	var magic [8]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		return false, nil
	}
	return string(magic[:]) == "!<arch>\n", nil
}

func printAddResults(c *cli.Context, results []*metadata.AddResult) error {
	if c.Bool("json") {
		var out []map[string]any
		for _, res := range results {
			out = append(out, map[string]any{
				"name": res.Name, "version": res.Version, "scheme": res.Scheme, "manifest": res.ManifestCID.String(),
				"size": res.Size, "chunks": res.Chunks, "new_chunks": res.NewChunks, "unchanged": res.Unchanged,
				"depends": res.Depends, "missing": res.Missing,
			})
		}
		if len(out) == 1 {
			return printJSON(c, out[0])
		}
		return printJSON(c, out)
	}
	for _, res := range results {
		state := "added"
		if res.Unchanged {
			state = "unchanged"
		}
		fmt.Fprintf(c.App.Writer, "%s %s@%s manifest %s (%d bytes, %d chunks, %d new)\n",
			state, res.Name, res.Version, res.ManifestCID, res.Size, res.Chunks, res.NewChunks)
	}
	return nil
}
