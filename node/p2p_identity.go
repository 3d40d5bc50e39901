package node

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// IdentityFile is the name, inside the data directory, of the host's libp2p
// private key (protobuf-encoded, as crypto.MarshalPrivateKey writes it).
const IdentityFile = "identity.key"

// loadOrCreateIdentity reads the host key from dir/identity.key, creating an
// Ed25519 key there (mode 0600, written atomically) on first start, so that
// the peer ID survives restarts.
func loadOrCreateIdentity(dir string, log *slog.Logger) (crypto.PrivKey, error) {
	path := filepath.Join(dir, IdentityFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		sk, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("identity key %s: %w", path, err)
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("identity key readable by others; restricting it to the owner", "path", path, "mode", fi.Mode().Perm())
			if err := os.Chmod(path, 0o600); err != nil {
				return nil, fmt.Errorf("identity key %s: %w", path, err)
			}
		}
		return sk, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("identity key %s: %w", path, err)
	}

	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate identity key: %w", err)
	}
	b, err = crypto.MarshalPrivateKey(sk)
	if err != nil {
		return nil, fmt.Errorf("encode identity key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("identity key directory %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".identity-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("write identity key: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write identity key: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write identity key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write identity key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write identity key: %w", err)
	}
	// Link rather than rename: two processes racing on a fresh directory
	// must not end up with different keys; the loser reads the winner's.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadOrCreateIdentity(dir, log)
		}
		return nil, fmt.Errorf("write identity key %s: %w", path, err)
	}
	log.Info("created identity key", "path", path)
	return sk, nil
}
