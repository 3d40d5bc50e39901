package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"
)

// DefaultConfigFile is read when it exists and neither --config nor
// STORK_CONFIG names another file.
const DefaultConfigFile = "/etc/stork/stork.toml"

// configFile is a parsed configuration file: the value of each key it sets,
// written as on the command line, and the line that sets it.
type configFile struct {
	Path   string
	Values map[string]fileValue // by option key
}

type fileValue struct {
	Text  string   // every kind but kindStrings
	List  []string // kindStrings
	Line  int
	IsSet bool
}

// configPath finds the configuration file named by args (--config FILE or
// --config=FILE anywhere before "--") or by STORK_CONFIG; else the default
// file when it exists. explicit says whether the file was named.
func configPath(args []string, getenv func(string) (string, bool)) (path string, explicit bool) {
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		for _, p := range []string{"--config", "-config"} {
			if a == p && i+1 < len(args) {
				return args[i+1], true
			}
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return v, true
			}
		}
	}
	if v, ok := getenv("STORK_CONFIG"); ok && v != "" {
		return v, true
	}
	return DefaultConfigFile, false
}

// loadConfigFile parses path. A missing default file is no configuration;
// a missing named file, a syntax error, an unknown key, a value of the
// wrong type or an invalid value is an error naming the file, the line and
// the key.
func loadConfigFile(path string, explicit bool) (*configFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return parseConfig(path, string(b))
}

// parseConfig parses the text of a configuration file.
func parseConfig(path, text string) (*configFile, error) {
	var tree map[string]any
	if _, err := toml.Decode(text, &tree); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("config %s:%d: %s", path, pe.Position.Line, pe.Message)
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	lines := keyLines(text)
	cf := &configFile{Path: path, Values: map[string]fileValue{}}
	var errs []lineError
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			key := prefix + k
			sub, isTable := v.(map[string]any)
			o := findOption(key)
			switch {
			case o == nil && isTable:
				walk(key+".", sub)
			case o == nil:
				errs = append(errs, lineError{lines[key], fmt.Errorf("unknown key %s%s", key, suggestKey(key))})
			default:
				fv, err := o.fromTOML(v)
				if err != nil {
					errs = append(errs, lineError{lines[key], fmt.Errorf("%s: %w", key, err)})
					continue
				}
				fv.Line, fv.IsSet = lines[key], true
				cf.Values[key] = fv
			}
		}
	}
	walk("", tree)
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].line < errs[j].line })
		e := errs[0]
		more := ""
		if len(errs) > 1 {
			more = fmt.Sprintf(" (and %d more)", len(errs)-1)
		}
		return nil, fmt.Errorf("config %s:%d: %w%s", path, e.line, e.err, more)
	}
	return cf, nil
}

type lineError struct {
	line int
	err  error
}

func findOption(key string) *option {
	for i := range options {
		if options[i].Key == key {
			return &options[i]
		}
	}
	return nil
}

// suggestKey names a known key with the same last part, for a key put in
// the wrong section.
func suggestKey(key string) string {
	last := key[strings.LastIndex(key, ".")+1:]
	for _, o := range options {
		if strings.HasSuffix(o.Key, "."+last) || o.Flag == last {
			return " (did you mean " + o.Key + "?)"
		}
	}
	return ""
}

// fromTOML converts a decoded TOML value to the option's kind.
func (o *option) fromTOML(v any) (fileValue, error) {
	var fv fileValue
	switch o.Kind {
	case kindStrings:
		arr, ok := v.([]any)
		if !ok {
			return fv, fmt.Errorf("want an array of strings, got %s", tomlType(v))
		}
		for _, x := range arr {
			s, ok := x.(string)
			if !ok {
				return fv, fmt.Errorf("want an array of strings, got an array holding %s", tomlType(x))
			}
			fv.List = append(fv.List, s)
		}
		return fv, nil
	case kindInt:
		n, ok := v.(int64)
		if !ok {
			return fv, fmt.Errorf("want an integer, got %s", tomlType(v))
		}
		fv.Text = strconv.FormatInt(n, 10)
	case kindBool:
		b, ok := v.(bool)
		if !ok {
			return fv, fmt.Errorf("want true or false, got %s", tomlType(v))
		}
		fv.Text = strconv.FormatBool(b)
	case kindSize:
		switch x := v.(type) {
		case string:
			fv.Text = x
		case int64:
			fv.Text = strconv.FormatInt(x, 10)
		default:
			return fv, fmt.Errorf("want a size such as \"4M\" or a byte count, got %s", tomlType(v))
		}
	default:
		s, ok := v.(string)
		if !ok {
			return fv, fmt.Errorf("want a string, got %s", tomlType(v))
		}
		fv.Text = s
	}
	if err := o.check(fv.Text); err != nil {
		// check names the flag; in the file the key is named instead.
		return fv, errors.Unwrap(err)
	}
	return fv, nil
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

// keyLines maps every key the file sets (dotted, with its table) to the
// line that sets it. It reads only what a configuration file uses: tables,
// keys, and values that may span lines (arrays, multi-line strings).
func keyLines(text string) map[string]int {
	out := map[string]int{}
	table := ""
	depth, inLong := 0, ""
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if inLong != "" {
			if strings.Count(line, inLong)%2 == 1 {
				inLong = ""
			}
			continue
		}
		if depth > 0 {
			depth += bracketDepth(line)
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			name := strings.Trim(strings.SplitN(line, "#", 2)[0], " \t[]")
			table = dottedKey(name)
			if _, ok := out[table]; !ok {
				out[table] = i + 1
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		key := dottedKey(k)
		if table != "" {
			key = table + "." + key
		}
		if _, ok := out[key]; !ok {
			out[key] = i + 1
		}
		v = strings.TrimSpace(v)
		for _, q := range []string{`"""`, `'''`} {
			if strings.Count(v, q) == 1 {
				inLong = q
			}
		}
		depth = bracketDepth(v)
	}
	return out
}

// dottedKey normalises a TOML key: parts trimmed and unquoted.
func dottedKey(k string) string {
	parts := strings.Split(strings.TrimSpace(k), ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

// bracketDepth counts [ minus ] outside strings and comments.
func bracketDepth(s string) int {
	n := 0
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'':
			quote = r
		case r == '#':
			return n
		case r == '[':
			n++
		case r == ']':
			n--
		}
	}
	return n
}

// applyConfig makes the file's values the defaults of the flags they
// configure, found by their environment variable, in every command: a flag
// or the environment still wins.
func applyConfig(app *cli.App, cf *configFile) {
	if cf == nil {
		return
	}
	apply := func(flags []cli.Flag) {
		for _, f := range flags {
			df, ok := f.(cli.DocGenerationFlag)
			if !ok || len(df.GetEnvVars()) == 0 {
				continue
			}
			o := optionByEnv(df.GetEnvVars()[0])
			if o == nil {
				continue
			}
			fv, ok := cf.Values[o.Key]
			if !ok {
				continue
			}
			switch f := f.(type) {
			case *cli.StringFlag:
				f.Value = fv.Text
			case *cli.IntFlag:
				f.Value, _ = strconv.Atoi(fv.Text)
			case *cli.BoolFlag:
				f.Value = fv.Text == "true"
			case *cli.StringSliceFlag:
				f.Value = cli.NewStringSlice(fv.List...)
			}
		}
	}
	apply(app.Flags)
	var walk func([]*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			apply(c.Flags)
			walk(c.Subcommands)
		}
	}
	walk(app.Commands)
}
