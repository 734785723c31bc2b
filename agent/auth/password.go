package auth

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Password hash schemes, the first field of a stored hash.
const (
	// SchemePBKDF2 is "pbkdf2-sha256$<iterations>$<salt base64>$<key base64>":
	// PBKDF2 with HMAC-SHA-256; the key length is that of the stored key.
	SchemePBKDF2 = "pbkdf2-sha256"
	// SchemeSHA256 is "sha256$<salt>$<hex>": hex(SHA-256(salt || password)),
	// the salt taken as the literal text between the dollars. It is for
	// devices that reconnect often on boxes that cannot afford PBKDF2.
	SchemeSHA256 = "sha256"
)

// Limits on PBKDF2 iterations. The ceiling keeps a typo (an extra zero or
// three) from turning every login into seconds of CPU on an ARM box.
const (
	// DefaultIterations is what HashPassword uses when given 0. It costs
	// tens of milliseconds per login on a Cortex-A53.
	DefaultIterations = 100_000
	// MinIterations is the fewest HashPassword accepts for a new hash.
	MinIterations = 1_000
	// MaxIterations is the most any stored hash may ask for.
	MaxIterations = 10_000_000
)

const saltLen = 16

// errHashFormat is returned (wrapped) for any malformed stored hash. The
// messages never quote the hash: a plaintext password pasted into
// password_hash by mistake must not end up in `config check` output.
var errHashFormat = errors.New("malformed password hash")

// HashPassword hashes password with PBKDF2-HMAC-SHA-256, a random 16-byte
// salt and the given iterations (0 means DefaultIterations), in the
// self-describing form "pbkdf2-sha256$<iterations>$<salt>$<key>" (unpadded
// standard base64). It is what `edgeway passwd` prints for built_in users.
func HashPassword(password string, iterations int) (string, error) {
	if iterations == 0 {
		iterations = DefaultIterations
	}
	if iterations < MinIterations || iterations > MaxIterations {
		return "", fmt.Errorf("auth: iterations must be %d..%d, got %d", MinIterations, MaxIterations, iterations)
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: salt: %w", err)
	}
	key, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("auth: pbkdf2: %w", err)
	}
	enc := base64.RawStdEncoding
	return SchemePBKDF2 + "$" + strconv.Itoa(iterations) + "$" + enc.EncodeToString(salt) + "$" + enc.EncodeToString(key), nil
}

// HashPasswordSHA256 hashes password in the cheap salted form
// "sha256$<salt>$<hex>" with a random salt (32 hex digits). Prefer
// HashPassword unless login cost matters more than resistance to offline
// guessing.
func HashPasswordSHA256(password string) (string, error) {
	raw := make([]byte, saltLen)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("auth: salt: %w", err)
	}
	salt := hex.EncodeToString(raw)
	sum := sha256.Sum256([]byte(salt + password))
	return SchemeSHA256 + "$" + salt + "$" + hex.EncodeToString(sum[:]), nil
}

// VerifyPassword reports whether password matches a hash in one of the two
// forms above, comparing in constant time. The error is for a malformed
// hash only; a wrong password is (false, nil).
func VerifyPassword(hash, password string) (bool, error) {
	h, err := parseHash(hash)
	if err != nil {
		return false, err
	}
	return h.verify([]byte(password)), nil
}

// passwordHash is a stored hash parsed once, so a login does not re-parse.
type passwordHash struct {
	pbkdf2 bool
	iter   int
	salt   []byte
	sum    []byte
}

func parseHash(s string) (passwordHash, error) {
	scheme, rest, ok := strings.Cut(s, "$")
	if !ok {
		return passwordHash{}, fmt.Errorf("%w: want %s$<iterations>$<salt>$<key> or %s$<salt>$<hex>", errHashFormat, SchemePBKDF2, SchemeSHA256)
	}
	switch scheme {
	case SchemePBKDF2:
		f := strings.Split(rest, "$")
		if len(f) != 3 {
			return passwordHash{}, fmt.Errorf("%w: %s wants 4 fields separated by '$', got %d", errHashFormat, SchemePBKDF2, len(f)+1)
		}
		iter, err := parseIterations(f[0])
		if err != nil {
			return passwordHash{}, err
		}
		salt, err := decodeB64(f[1])
		if err != nil || len(salt) == 0 {
			return passwordHash{}, fmt.Errorf("%w: %s salt is not non-empty base64", errHashFormat, SchemePBKDF2)
		}
		key, err := decodeB64(f[2])
		if err != nil {
			return passwordHash{}, fmt.Errorf("%w: %s key is not base64", errHashFormat, SchemePBKDF2)
		}
		if len(key) < 16 || len(key) > 64 {
			return passwordHash{}, fmt.Errorf("%w: %s key is %d bytes, want 16..64", errHashFormat, SchemePBKDF2, len(key))
		}
		return passwordHash{pbkdf2: true, iter: iter, salt: salt, sum: key}, nil
	case SchemeSHA256:
		salt, sum, ok := strings.Cut(rest, "$")
		if !ok || strings.Contains(sum, "$") {
			return passwordHash{}, fmt.Errorf("%w: %s wants 3 fields separated by '$'", errHashFormat, SchemeSHA256)
		}
		if salt == "" {
			return passwordHash{}, fmt.Errorf("%w: %s salt is empty", errHashFormat, SchemeSHA256)
		}
		b, err := hex.DecodeString(sum)
		if err != nil || len(b) != sha256.Size {
			return passwordHash{}, fmt.Errorf("%w: %s digest is not 64 hex digits", errHashFormat, SchemeSHA256)
		}
		return passwordHash{salt: []byte(salt), sum: b}, nil
	}
	return passwordHash{}, fmt.Errorf("%w: unknown scheme (want %s or %s)", errHashFormat, SchemePBKDF2, SchemeSHA256)
}

func parseIterations(s string) (int, error) {
	if s == "" || len(s) > 9 || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("%w: %s iterations are not a number", errHashFormat, SchemePBKDF2)
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > MaxIterations {
		return 0, fmt.Errorf("%w: %s iterations must be 1..%d, got %d", errHashFormat, SchemePBKDF2, MaxIterations, n)
	}
	return n, nil
}

// decodeB64 accepts standard base64 with or without padding.
func decodeB64(s string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

func (h passwordHash) verify(password []byte) bool {
	var got []byte
	if h.pbkdf2 {
		k, err := pbkdf2.Key(sha256.New, string(password), h.salt, h.iter, len(h.sum))
		if err != nil {
			return false
		}
		got = k
	} else {
		d := sha256.New()
		d.Write(h.salt)
		d.Write(password)
		got = d.Sum(nil)
	}
	return subtle.ConstantTimeCompare(got, h.sum) == 1
}
