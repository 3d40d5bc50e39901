package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

// Reading a host's state: from its daemon through the admin socket, or,
// with the daemon stopped, from the data directory opened read-only.

// hostStatus returns the host's status.
func hostStatus(c *cli.Context) (*node.Status, error) {
	data := c.String("data")
	st, err := node.NewClient(data).Status(c.Context)
	if !errors.Is(err, node.ErrNotRunning) {
		return st, err
	}
	var out *node.Status
	oerr := withOffline(data, func(o *node.Offline) error {
		var err error
		out, err = o.Status()
		return err
	})
	if oerr != nil {
		return nil, offlineError(data, err, oerr)
	}
	return out, nil
}

// hostInstalls returns the installs of vm with the state of each view.
func hostInstalls(c *cli.Context, vm string) ([]node.Installed, error) {
	data := c.String("data")
	insts, err := node.NewClient(data).Installs(c.Context, vm)
	if !errors.Is(err, node.ErrNotRunning) {
		return insts, err
	}
	oerr := withOffline(data, func(o *node.Offline) error {
		var err error
		insts, err = o.Installs(vm)
		return err
	})
	if oerr != nil {
		return nil, offlineError(data, err, oerr)
	}
	return insts, nil
}

func withOffline(data string, fn func(*node.Offline) error) error {
	o, err := node.OpenOffline(data)
	if err != nil {
		return err
	}
	defer o.Close()
	return fn(o)
}

// offlineError says that neither the daemon nor the directory answered.
func offlineError(data string, daemonErr, dirErr error) error {
	return fmt.Errorf("%w; reading %s directly: %v", daemonErr, data, dirErr)
}
