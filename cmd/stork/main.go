// Command stork is the one Stork binary: repository tools, the verified HTTP
// download (stork get), the host daemon and its clients. Each command lives
// in its own file; actions parse flags, build components from the packages
// below, run them, and return an error that main prints on one line.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run executes the command line and returns the process exit code: 0 on
// success, 1 with a one-line error on stderr otherwise.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	path, explicit := configPath(args, os.LookupEnv)
	cf, err := loadConfigFile(path, explicit)
	if err != nil {
		fmt.Fprintf(stderr, "stork: %s\n", oneLine(err))
		return 1
	}
	applyConfig(app, cf)
	app.Metadata = map[string]any{metaConfig: cf, metaArgs: args}
	if err := app.Run(interspersed(app, args)); err != nil {
		fmt.Fprintf(stderr, "stork: %s\n", oneLine(err))
		return 1
	}
	return 0
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:                 "stork",
		Usage:                "peer-to-peer package distribution for hosts running many VMs",
		Version:              version,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		// Errors are printed once, by run; never let the library exit.
		ExitErrHandler: func(*cli.Context, error) {},
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "configuration `FILE` (TOML; default " + DefaultConfigFile + " when it exists; /dev/null for none)", Category: catGlobal, EnvVars: env("config")},
			&cli.BoolFlag{Name: "debug", Usage: "log at debug level (--log-level debug)", Category: catGlobal, EnvVars: env("debug")},
		}, optFlags("log.level", "log.format")...),
		Commands: []*cli.Command{
			keysCommand(),
			repoCommand(),
			getCommand(),
			daemonCommand(),
			fetchCommand(),
			installCommand(),
			uninstallCommand(),
			listCommand(),
			statusCommand(),
			gcCommand(),
			vmCommand(),
			groupCommand(),
			verifyCommand(),
			indexCommand(),
			peersCommand(),
			simCommand(),
			configCommand(),
			versionCommand(),
			completionCommand(),
			topCommand(),
			doctorCommand(),
			testbedCommand(),
		},
	}
}

// Keys of cli.App.Metadata.
const (
	metaConfig = "config" // *configFile, nil without one
	metaArgs   = "args"   // []string, the command line as given
)

// oneLine flattens an error message onto a single line.
func oneLine(err error) string {
	var exit cli.ExitCoder
	if errors.As(err, &exit) && exit.Error() == "" {
		return "failed"
	}
	s := strings.TrimSpace(err.Error())
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// usageError reports a missing or wrong argument.
func usageError(c *cli.Context, format string, args ...any) error {
	return fmt.Errorf("%s: %s", c.Command.FullName(), fmt.Sprintf(format, args...))
}
