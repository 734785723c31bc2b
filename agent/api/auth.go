package api

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/edgeway/edgeway/agent/auth"
	"github.com/edgeway/edgeway/agent/config"
)

// Roles, from least to most.
const (
	roleNone   = ""
	roleViewer = config.RoleViewer
	roleAdmin  = config.RoleAdmin
)

// TokenFile is the name of the API token file in the data directory.
const TokenFile = "api.token"

// principal is who made a request.
type principal struct {
	name string // "token", or a user name
	role string
}

func (p principal) can(role string) bool {
	switch role {
	case roleNone:
		return true
	case roleViewer:
		return p.role == roleViewer || p.role == roleAdmin
	}
	return p.role == roleAdmin
}

// authenticator checks the bearer token and basic-auth users.
//
// Users' password hashes are PBKDF2, which costs tens of milliseconds on
// an ARM box; a status page polling every two seconds must not pay that
// each time. A successful check is remembered for a while under an HMAC of
// (user, password, hash) with a key made at start, so the cache holds
// nothing a reader of memory could turn back into a password, and a
// changed hash in the config invalidates it. At most two hashes are
// computed at once, so a password-guessing client cannot take every core.
type authenticator struct {
	token string
	users func() []config.APIUser

	key   [32]byte
	mu    sync.Mutex
	cache map[[32]byte]cached
	slots chan struct{}
}

type cached struct {
	role    string
	expires time.Time
}

const (
	cacheTTL  = 10 * time.Minute
	cacheSize = 256
)

func newAuthenticator(token string, users func() []config.APIUser) *authenticator {
	a := &authenticator{token: token, users: users, cache: map[[32]byte]cached{}, slots: make(chan struct{}, 2)}
	_, _ = rand.Read(a.key[:])
	return a
}

// check returns the request's principal; ok is false when it presents no
// valid credentials.
func (a *authenticator) check(r *http.Request) (principal, bool) {
	h := r.Header.Get("Authorization")
	if tok, ok := cutPrefixFold(h, "Bearer "); ok {
		if a.tokenOK(strings.TrimSpace(tok)) {
			return principal{name: "token", role: roleAdmin}, true
		}
		return principal{}, false
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		return principal{}, false
	}
	if user == "admin" && a.tokenOK(pass) {
		return principal{name: "admin", role: roleAdmin}, true
	}
	for _, u := range a.users() {
		if u.Username != user {
			continue
		}
		if a.verify(u, pass) {
			return principal{name: u.Username, role: u.Role}, true
		}
		return principal{}, false
	}
	return principal{}, false
}

func (a *authenticator) tokenOK(t string) bool {
	return a.token != "" && subtle.ConstantTimeCompare([]byte(t), []byte(a.token)) == 1
}

func (a *authenticator) verify(u config.APIUser, pass string) bool {
	m := hmac.New(sha256.New, a.key[:])
	m.Write([]byte(u.Username))
	m.Write([]byte{0})
	m.Write([]byte(pass))
	m.Write([]byte{0})
	m.Write([]byte(u.PasswordHash.Reveal()))
	m.Write([]byte{0})
	m.Write([]byte(u.Role))
	var k [32]byte
	copy(k[:], m.Sum(nil))
	now := time.Now()
	a.mu.Lock()
	c, hit := a.cache[k]
	a.mu.Unlock()
	if hit && now.Before(c.expires) {
		return true
	}
	a.slots <- struct{}{}
	ok, err := auth.VerifyPassword(u.PasswordHash.Reveal(), pass)
	<-a.slots
	if err != nil || !ok {
		return false
	}
	a.mu.Lock()
	if len(a.cache) >= cacheSize {
		for k, c := range a.cache {
			if now.After(c.expires) || len(a.cache) >= cacheSize {
				delete(a.cache, k)
			}
		}
	}
	a.cache[k] = cached{role: u.Role, expires: now.Add(cacheTTL)}
	a.mu.Unlock()
	return true
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return "", false
}

// checkUsers reports [[api.users]] whose hash cannot be used, naming the
// user but never the hash.
func checkUsers(us []config.APIUser) error {
	var errs []error
	for i, u := range us {
		if _, err := auth.VerifyPassword(u.PasswordHash.Reveal(), ""); err != nil {
			errs = append(errs, fmt.Errorf("api.users[%d] (%s): password_hash: %w", i, u.Username, err))
		}
	}
	return errors.Join(errs...)
}

// loadToken reads <dir>/api.token, or creates it with a new random token
// (mode 0600). A token file readable by others is tightened.
func loadToken(dir string) (tok string, created bool, err error) {
	path := filepath.Join(dir, TokenFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		t := strings.TrimSpace(string(b))
		if len(t) >= 16 {
			if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
				if err := os.Chmod(path, 0o600); err != nil {
					return "", false, fmt.Errorf("api: %s: %w", path, err)
				}
			}
			return t, false, nil
		}
		// Empty or truncated: make a new one.
	case !errors.Is(err, fs.ErrNotExist):
		return "", false, fmt.Errorf("api: token: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", false, fmt.Errorf("api: token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", false, fmt.Errorf("api: token: %w", err)
	}
	t := hex.EncodeToString(raw)
	f, err := os.CreateTemp(dir, ".api.token-*")
	if err != nil {
		return "", false, fmt.Errorf("api: token: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return "", false, fmt.Errorf("api: token: %w", err)
	}
	if _, err := f.WriteString(t + "\n"); err != nil {
		f.Close()
		return "", false, fmt.Errorf("api: token: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", false, fmt.Errorf("api: token: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", false, fmt.Errorf("api: token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", false, fmt.Errorf("api: token: %w", err)
	}
	return t, true, nil
}
