package metadata

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sigstore/sigstore/pkg/signature"
	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// PrivateKey is an ed25519 signing key for repository metadata.
//
// On disk it is a JSON key file in the securesystemslib layout, written 0600:
//
//	{"keytype":"ed25519","scheme":"ed25519","keyid":"<hex>",
//	 "keyval":{"public":"<hex 32 bytes>","private":"<hex 32-byte seed>"}}
//
// LoadKey also accepts a 64-byte private value (seed followed by the public
// key, Go's ed25519.PrivateKey form) and a file without "keyid".
type PrivateKey struct {
	priv ed25519.PrivateKey
	pub  *tufmeta.Key
	id   string
}

type keyFile struct {
	KeyType string     `json:"keytype"`
	Scheme  string     `json:"scheme"`
	KeyID   string     `json:"keyid,omitempty"`
	KeyVal  keyFileVal `json:"keyval"`
}

type keyFileVal struct {
	Public  string `json:"public"`
	Private string `json:"private"`
}

// GenerateKey returns a new random ed25519 key.
func GenerateKey() (*PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return newPrivateKey(priv)
}

// NewPrivateKey wraps an existing ed25519 private key.
func NewPrivateKey(priv ed25519.PrivateKey) (*PrivateKey, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("ed25519 key: %w: private key is %d bytes, want %d", ErrMalformed, len(priv), ed25519.PrivateKeySize)
	}
	return newPrivateKey(append(ed25519.PrivateKey(nil), priv...))
}

func newPrivateKey(priv ed25519.PrivateKey) (*PrivateKey, error) {
	pub, err := tufmeta.KeyFromPublicKey(priv.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("ed25519 key: %w", err)
	}
	id, err := pub.ID()
	if err != nil {
		return nil, fmt.Errorf("ed25519 key id: %w", err)
	}
	return &PrivateKey{priv: priv, pub: pub, id: id}, nil
}

// LoadKey reads a key file written by Save (or securesystemslib).
func LoadKey(path string) (*PrivateKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("key file %s: %w: no such file", path, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	k, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// ParseKey decodes the bytes of a key file.
func ParseKey(data []byte) (*PrivateKey, error) {
	var kf keyFile
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&kf); err != nil {
		return nil, fmt.Errorf("%w: not a JSON key file: %v", ErrMalformed, err)
	}
	if kf.KeyType != tufmeta.KeyTypeEd25519 || kf.Scheme != tufmeta.KeySchemeEd25519 {
		return nil, fmt.Errorf("%w: key type %q scheme %q, want ed25519/ed25519", ErrMalformed, kf.KeyType, kf.Scheme)
	}
	if kf.KeyVal.Private == "" {
		return nil, fmt.Errorf("%w: no private key (is this a public key file?)", ErrMalformed)
	}
	raw, err := hex.DecodeString(kf.KeyVal.Private)
	if err != nil {
		return nil, fmt.Errorf("%w: private key is not hex", ErrMalformed)
	}
	var priv ed25519.PrivateKey
	switch len(raw) {
	case ed25519.SeedSize:
		priv = ed25519.NewKeyFromSeed(raw)
	case ed25519.PrivateKeySize:
		priv = ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
		if !bytes.Equal(priv, raw) {
			return nil, fmt.Errorf("%w: private key halves do not match", ErrMalformed)
		}
	default:
		return nil, fmt.Errorf("%w: private key is %d bytes, want %d or %d", ErrMalformed, len(raw), ed25519.SeedSize, ed25519.PrivateKeySize)
	}
	k, err := newPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	if kf.KeyVal.Public != "" && kf.KeyVal.Public != k.pub.Value.PublicKey {
		return nil, fmt.Errorf("%w: public key does not match private key", ErrMalformed)
	}
	if kf.KeyID != "" && kf.KeyID != k.id {
		return nil, fmt.Errorf("%w: keyid %s does not match key (want %s)", ErrMalformed, kf.KeyID, k.id)
	}
	return k, nil
}

// Marshal returns the key file bytes (containing the private key).
func (k *PrivateKey) Marshal() ([]byte, error) {
	kf := keyFile{
		KeyType: tufmeta.KeyTypeEd25519,
		Scheme:  tufmeta.KeySchemeEd25519,
		KeyID:   k.id,
		KeyVal: keyFileVal{
			Public:  k.pub.Value.PublicKey,
			Private: hex.EncodeToString(k.priv.Seed()),
		},
	}
	b, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return append(b, '\n'), nil
}

// Save writes the key file at path with mode 0600. It refuses to overwrite an
// existing file (ErrExists).
func (k *PrivateKey) Save(path string) error {
	data, err := k.Marshal()
	if err != nil {
		return err
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("save key %s: %w", path, err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("save key %s: %w: refusing to overwrite", path, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("save key %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("save key %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("save key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("save key %s: %w", path, err)
	}
	return nil
}

// Public returns the public half as a TUF key (a fresh copy each call).
func (k *PrivateKey) Public() *tufmeta.Key {
	return &tufmeta.Key{
		Type:   k.pub.Type,
		Scheme: k.pub.Scheme,
		Value:  tufmeta.KeyVal{PublicKey: k.pub.Value.PublicKey},
	}
}

// ID returns the TUF key ID: hex sha256 of the canonical public key JSON.
func (k *PrivateKey) ID() string { return k.id }

// signer returns a go-tuf compatible signer.
func (k *PrivateKey) signer() (signature.Signer, error) {
	s, err := signature.LoadED25519Signer(k.priv)
	if err != nil {
		return nil, fmt.Errorf("load ed25519 signer: %w", err)
	}
	return s, nil
}

// MarshalPublic returns the on-disk form of a public key (no private value); it
// is what a publisher hands the repository owner for Delegate.
func (k *PrivateKey) MarshalPublic() ([]byte, error) {
	b, err := json.MarshalIndent(k.Public(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return append(b, '\n'), nil
}

// ParsePublicKey decodes a TUF public key JSON object (as MarshalPublic
// writes; a full key file is accepted too, its private half ignored).
func ParsePublicKey(data []byte) (*tufmeta.Key, error) {
	var kf keyFile
	if err := json.Unmarshal(data, &kf); err != nil {
		return nil, fmt.Errorf("%w: not a JSON key: %v", ErrMalformed, err)
	}
	if kf.KeyType != tufmeta.KeyTypeEd25519 || kf.Scheme != tufmeta.KeySchemeEd25519 {
		return nil, fmt.Errorf("%w: key type %q scheme %q, want ed25519/ed25519", ErrMalformed, kf.KeyType, kf.Scheme)
	}
	raw, err := hex.DecodeString(kf.KeyVal.Public)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: public key is not %d hex bytes", ErrMalformed, ed25519.PublicKeySize)
	}
	key, err := tufmeta.KeyFromPublicKey(ed25519.PublicKey(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return key, nil
}
