package metadata

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Bounds on what ReadDebControl reads of a .deb.
const (
	// MaxControlSize bounds the control file.
	MaxControlSize = 1 << 20
	// maxControlTar bounds the decompressed control.tar read before the
	// control file is found.
	maxControlTar = 64 << 20
	// maxControlFields bounds the fields of a control paragraph.
	maxControlFields = 256
)

// DebControl is what a binary package's control file says about it.
type DebControl struct {
	Package, Version, Architecture string
	// Depends holds Pre-Depends then Depends in dependency syntax (see
	// ParseDependency): "libc6>=2.36", "debconf>=0.5 | debconf-2.0".
	// Relations on one name in several entries are joined into one
	// ("libc6>=2.34, <<2.40"); "<" and ">" (obsolete in control files,
	// meaning <= and >=) are written "<=" and ">=".
	Depends []string
	// Provides holds the Provides field: "awk", "awk=1:5.2.1-2" for
	// "awk (= 1:5.2.1-2)" (see ParseProvides).
	Provides []string
	// Notes says what was dropped on the way: architecture qualifiers
	// (":any", ":native", ":amd64": Stork has no architectures).
	Notes []string
}

// ReadDebControl reads the control file of the .deb at path (ar member
// control.tar, control.tar.gz, control.tar.xz or control.tar.zst, file
// "./control") and parses it (ParseDebControl).
func ReadDebControl(path string) (*DebControl, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("deb control: %w", err)
	}
	defer f.Close()
	c, err := readDebControl(newBufReader(f))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// readDebControl finds and parses the control file in a .deb stream.
func readDebControl(r io.Reader) (*DebControl, error) {
	ar := &arReader{r: r}
	if err := ar.start(); err != nil {
		return nil, err
	}
	for i := 0; ; i++ {
		name, size, err := ar.next()
		if err == io.EOF {
			return nil, fmt.Errorf("deb: %w: no control.tar member", ErrMalformed)
		}
		if err != nil {
			return nil, err
		}
		if i == 0 && name != "debian-binary" {
			return nil, fmt.Errorf("deb: %w: first member is %q, want debian-binary", ErrMalformed, name)
		}
		if !strings.HasPrefix(name, "control.tar") {
			if size > maxDebMember {
				return nil, fmt.Errorf("deb: %w: member %q is %d bytes, limit %d", ErrTooLarge, name, size, maxDebMember)
			}
			if err := ar.skip(size); err != nil {
				return nil, err
			}
			continue
		}
		data, err := controlFromTar(name, &exactReader{r: r, left: size})
		if err != nil {
			return nil, err
		}
		return ParseDebControl(data)
	}
}

// controlFromTar decompresses a control.tar member and returns its
// "control" file.
func controlFromTar(member string, r io.Reader) ([]byte, error) {
	var tr io.Reader
	switch member {
	case "control.tar":
		tr = r
	case "control.tar.gz":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("deb %s: %w: %v", member, ErrMalformed, err)
		}
		defer zr.Close()
		tr = zr
	case "control.tar.xz":
		xr, err := newXZReader(r)
		if err != nil {
			return nil, fmt.Errorf("deb %s: %w", member, err)
		}
		tr = xr
	case "control.tar.zst":
		zr, err := newZstdReader(r)
		if err != nil {
			return nil, fmt.Errorf("deb %s: %w", member, err)
		}
		defer zr.Close()
		tr = zr
	default:
		return nil, fmt.Errorf("deb: %w: control member %q (compression not supported)", ErrUnsupportedEntry, member)
	}
	t := tar.NewReader(&capReader{r: tr, left: maxControlTar})
	for {
		hdr, err := t.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("deb %s: %w: no control file", member, ErrMalformed)
		}
		if errors.Is(err, ErrTooLarge) {
			return nil, fmt.Errorf("deb %s: %w", member, err)
		}
		if err != nil {
			return nil, fmt.Errorf("deb %s: %w: %v", member, ErrMalformed, err)
		}
		if strings.TrimPrefix(hdr.Name, "./") != "control" {
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("deb %s: control: %w: not a regular file", member, ErrMalformed)
		}
		if hdr.Size > MaxControlSize {
			return nil, fmt.Errorf("deb %s: control: %w: %d bytes, limit %d", member, ErrTooLarge, hdr.Size, MaxControlSize)
		}
		b, err := io.ReadAll(t)
		if err != nil {
			return nil, fmt.Errorf("deb %s: control: %w: %v", member, ErrMalformed, err)
		}
		return b, nil
	}
}

// capReader reads at most left bytes from r; more is ErrTooLarge.
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("%w: decompressed control.tar passes %d bytes", ErrTooLarge, maxControlTar)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// ParseDebControl parses a binary package's control file: one deb822
// paragraph ("Field: value" lines, continuation lines starting with a
// space or tab, '#' comment lines, field names matched without regard to
// case, no field twice). Package must be a valid name (ValidateName),
// Version a valid Debian version; Depends and Pre-Depends are translated
// by debRelations, Provides by its provides method. Breaks, Conflicts,
// Replaces, Recommends and the other relation fields are not read: Stork
// installs each package as its own read-only tree, so nothing is
// unpacked over another package and nothing is removed to make room. Substitution variables ("${shlibs:Depends}"), build
// profiles and architecture restrictions are refused: a built binary
// package has none.
func ParseDebControl(data []byte) (*DebControl, error) {
	fields, err := parseDeb822(string(data))
	if err != nil {
		return nil, fmt.Errorf("deb control: %w", err)
	}
	c := &DebControl{Package: fields["package"], Version: fields["version"], Architecture: fields["architecture"]}
	if c.Package == "" || c.Version == "" {
		return nil, fmt.Errorf("deb control: %w: Package and Version are required", ErrMalformed)
	}
	if err := ValidateName(c.Package); err != nil {
		return nil, fmt.Errorf("deb control: %w", err)
	}
	if _, err := ParseVersion(SchemeDeb, c.Version); err != nil {
		return nil, fmt.Errorf("deb control %s: %w", c.Package, err)
	}
	rels := &debRelations{index: map[string]int{}}
	for _, f := range []string{"pre-depends", "depends"} {
		if err := rels.add(fields[f]); err != nil {
			return nil, fmt.Errorf("deb control %s: %s: %w", c.Package, f, err)
		}
	}
	c.Depends = rels.out
	if c.Provides, err = rels.provides(fields["provides"]); err != nil {
		return nil, fmt.Errorf("deb control %s: provides: %w", c.Package, err)
	}
	c.Notes = rels.notes
	return c, nil
}

// provides translates a Provides field: names separated by commas, each
// "name[:arch] [(= version)]" (Debian allows only "=" there); no
// alternatives.
func (d *debRelations) provides(field string) ([]string, error) {
	if strings.TrimSpace(field) == "" {
		return nil, nil
	}
	if strings.Contains(field, "${") {
		return nil, fmt.Errorf("%w: %q holds an unsubstituted variable ${...}", ErrMalformed, field)
	}
	entries := strings.Split(field, ",")
	if len(entries) > MaxProvides {
		return nil, fmt.Errorf("%w: %d names, limit %d", ErrTooLarge, len(entries), MaxProvides)
	}
	var out []string
	for _, e := range entries {
		if strings.Contains(e, "|") {
			return nil, fmt.Errorf("%w: %q: a package provides names, not alternatives", ErrMalformed, strings.TrimSpace(e))
		}
		name, rel, err := d.relation(e)
		if err != nil {
			return nil, err
		}
		if rel != "" && (!strings.HasPrefix(rel, "=") || strings.HasPrefix(rel, "==")) {
			return nil, fmt.Errorf("%w: %q: a provided version is given with =", ErrMalformed, strings.TrimSpace(e))
		}
		out = append(out, name+rel)
	}
	_, canon, err := ParseProvides(SchemeDeb, out)
	if err != nil {
		return nil, err
	}
	return canon, nil
}

// parseDeb822 reads one paragraph into lower-cased field names -> values
// (continuation lines joined with a space, surrounding space trimmed).
func parseDeb822(s string) (map[string]string, error) {
	if strings.ContainsRune(s, 0) {
		return nil, fmt.Errorf("%w: NUL byte", ErrMalformed)
	}
	fields := map[string]string{}
	last := ""
	ended := false
	for n, line := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n") {
		switch {
		case strings.TrimSpace(line) == "":
			if len(fields) > 0 {
				ended = true
			}
			continue
		case strings.HasPrefix(line, "#"):
			continue
		case ended:
			return nil, fmt.Errorf("%w: line %d: a second paragraph (a binary control file has one)", ErrMalformed, n+1)
		case line[0] == ' ' || line[0] == '\t':
			if last == "" {
				return nil, fmt.Errorf("%w: line %d: continuation line before any field", ErrMalformed, n+1)
			}
			fields[last] = strings.TrimSpace(fields[last] + " " + strings.TrimSpace(line))
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") || name[0] == '-' {
			return nil, fmt.Errorf("%w: line %d: want \"Field: value\"", ErrMalformed, n+1)
		}
		key := strings.ToLower(name)
		if _, dup := fields[key]; dup {
			return nil, fmt.Errorf("%w: line %d: field %s given twice", ErrMalformed, n+1, name)
		}
		if len(fields) == maxControlFields {
			return nil, fmt.Errorf("%w: more than %d fields", ErrTooLarge, maxControlFields)
		}
		fields[key] = strings.TrimSpace(value)
		last = key
	}
	return fields, nil
}

// debRelations gathers control relation fields as dependency entries.
type debRelations struct {
	out   []string
	index map[string]int // name of a one-relation entry -> its position in out
	notes []string
}

// add translates a relation field: entries separated by commas, each
// alternatives separated by '|', each "name[:arch] [(op version)]".
func (d *debRelations) add(field string) error {
	if strings.TrimSpace(field) == "" {
		return nil
	}
	if strings.Contains(field, "${") {
		return fmt.Errorf("%w: %q holds an unsubstituted variable ${...}", ErrMalformed, field)
	}
	for _, entry := range strings.Split(field, ",") {
		var alts []string
		var name, rel string
		for _, alt := range strings.Split(entry, "|") {
			n, r, err := d.relation(alt)
			if err != nil {
				return err
			}
			name, rel = n, r
			alts = append(alts, n+r)
		}
		if len(alts) > 1 {
			d.out = append(d.out, strings.Join(alts, " | "))
			continue
		}
		if i, ok := d.index[name]; ok {
			switch {
			case rel == "":
			case d.out[i] == name:
				d.out[i] = name + rel
			default:
				d.out[i] += ", " + rel
			}
			continue
		}
		d.index[name] = len(d.out)
		d.out = append(d.out, name+rel)
	}
	return nil
}

// debOps maps control file operators to constraint operators.
var debOps = map[string]string{"<<": "<<", "<=": "<=", "=": "=", ">=": ">=", ">>": ">>", "<": "<=", ">": ">="}

// relation translates "name[:arch] [(op version)]" into a name and a
// constraint text ("" for any version).
func (d *debRelations) relation(s string) (name, rel string, err error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return "", "", fmt.Errorf("%w: empty relation", ErrMalformed)
	}
	name, rest, hasRel := strings.Cut(t, "(")
	inner, after, closed := strings.Cut(rest, ")")
	if strings.ContainsAny(name+after, "[]<>!") {
		return "", "", fmt.Errorf("%w: %q: architecture restrictions and build profiles belong to source packages", ErrMalformed, t)
	}
	if hasRel && (!closed || strings.TrimSpace(after) != "") {
		return "", "", fmt.Errorf("%w: %q: want name (op version)", ErrMalformed, t)
	}
	name = strings.TrimSpace(name)
	if n, arch, ok := strings.Cut(name, ":"); ok {
		d.notes = append(d.notes, fmt.Sprintf("%s: architecture qualifier :%s dropped", n, arch))
		name = n
	}
	if err := ValidateName(name); err != nil {
		return "", "", err
	}
	if !hasRel {
		return name, "", nil
	}
	inner = strings.TrimSpace(inner)
	i := 0
	for i < len(inner) && strings.IndexByte("<=>", inner[i]) >= 0 {
		i++
	}
	op, ok := debOps[inner[:i]]
	if !ok {
		return "", "", fmt.Errorf("%w: %q: operator %q (want <<, <=, =, >=, >>)", ErrMalformed, t, inner[:i])
	}
	version := strings.TrimSpace(inner[i:])
	if _, err := ParseVersion(SchemeDeb, version); err != nil {
		return "", "", fmt.Errorf("%q: %w", t, err)
	}
	return name, op + version, nil
}

// DebAddOptions reads the control file of the .deb at path and returns
// the AddOptions that publish it under its own Package, Version (scheme
// deb) and dependencies, with the control file's notes.
func DebAddOptions(path string) (AddOptions, *DebControl, error) {
	c, err := ReadDebControl(path)
	if err != nil {
		return AddOptions{}, nil, err
	}
	return AddOptions{
		Name: c.Package, Version: c.Version, Scheme: SchemeDeb, Depends: c.Depends, Provides: c.Provides, Source: path,
		Import: ImportOptions{Kind: KindDeb},
	}, c, nil
}
