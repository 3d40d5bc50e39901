package testbed

import "errors"

// ErrNotRoot and ErrMissingTool: the testbed cannot run on this machine.
var (
	ErrNotRoot     = errors.New("testbed: needs root (network namespaces, tc)")
	ErrMissingTool = errors.New("testbed: missing")
)
