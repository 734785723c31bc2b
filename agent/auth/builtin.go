package auth

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/gateway"
)

func init() {
	gateway.RegisterAuthn(gateway.AuthnType{
		Name:    "built_in",
		NewSpec: func() any { return &BuiltinSpec{UserIDType: "username"} },
		New: func(spec any, _ gateway.AuthnEnv) (gateway.Authenticator, error) {
			s, ok := spec.(*BuiltinSpec)
			if !ok {
				return nil, fmt.Errorf("built_in: spec is %T, want *auth.BuiltinSpec", spec)
			}
			return NewBuiltin(s)
		},
	})
}

// BuiltinSpec is the settings of a `type = "built_in"` authenticator.
type BuiltinSpec struct {
	// UserIDType says which identity is looked up: "username" (default) or "clientid".
	UserIDType string     `toml:"user_id_type"`
	Users      []UserSpec `toml:"users"`
}

// UserSpec is one user as configured, or as given to AddUser and UpdateUser.
type UserSpec struct {
	UserID string `toml:"user_id"`
	// PasswordHash is "pbkdf2-sha256$…" or "sha256$…" (see HashPassword).
	PasswordHash config.Secret `toml:"password_hash"`
	IsSuperuser  bool          `toml:"is_superuser"`
}

// User is a built-in user as listed by Users: no secret in it.
type User struct {
	UserID      string `json:"user_id"`
	IsSuperuser bool   `json:"is_superuser"`
}

// Errors of the runtime user API, for the HTTP API to map to 409 and 404.
var (
	ErrUserExists   = errors.New("built_in: user already exists")
	ErrUserNotFound = errors.New("built_in: user not found")
)

// Validate implements config.Validator.
func (s *BuiltinSpec) Validate() error {
	var errs []error
	if s.UserIDType != "username" && s.UserIDType != "clientid" {
		errs = append(errs, config.Field("user_id_type", "must be \"username\" or \"clientid\", got %q", s.UserIDType))
	}
	first := make(map[string]int, len(s.Users))
	for i, u := range s.Users {
		key := fmt.Sprintf("users[%d]", i)
		if u.UserID == "" {
			errs = append(errs, config.Field(key+".user_id", "must not be empty"))
		} else if j, dup := first[u.UserID]; dup {
			errs = append(errs, config.Field(key+".user_id", "duplicate user %q (also users[%d])", u.UserID, j))
		} else {
			first[u.UserID] = i
		}
		if _, err := parseHash(u.PasswordHash.Reveal()); err != nil {
			errs = append(errs, config.Field(key+".password_hash", "user %q: %v", u.UserID, err))
		}
	}
	return errors.Join(errs...)
}

// Builtin is the "built_in" authenticator: a user database held in memory.
//
// Its user set starts as the configured list and may then be changed at
// runtime with AddUser, UpdateUser and DeleteUser (the HTTP API's user
// management). Lookups during Authenticate take no lock: writers copy the
// set and swap it in, so a login never waits for an API call. Changes live
// only as long as this authenticator: a config reload that rebuilds the
// chain starts again from the file.
type Builtin struct {
	byClientID bool

	mu    sync.Mutex // serialises writers
	users atomic.Pointer[map[string]userEntry]
}

type userEntry struct {
	hash      passwordHash
	superuser bool
}

// NewBuiltin builds a built_in authenticator from its settings.
func NewBuiltin(spec *BuiltinSpec) (*Builtin, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	m := make(map[string]userEntry, len(spec.Users))
	for _, u := range spec.Users {
		h, _ := parseHash(u.PasswordHash.Reveal()) // checked by Validate
		m[u.UserID] = userEntry{hash: h, superuser: u.IsSuperuser}
	}
	b := &Builtin{byClientID: spec.UserIDType == "clientid"}
	b.users.Store(&m)
	return b, nil
}

// Authenticate implements gateway.Authenticator: Ignore for an unknown (or
// empty) user id, Deny for a wrong password, Allow otherwise.
func (b *Builtin) Authenticate(_ context.Context, ci *gateway.ClientInfo) gateway.AuthResult {
	id := ci.Username
	if b.byClientID {
		id = ci.ClientID
	}
	if id == "" {
		return gateway.AuthResult{Decision: gateway.Ignore}
	}
	u, ok := (*b.users.Load())[id]
	if !ok {
		return gateway.AuthResult{Decision: gateway.Ignore}
	}
	if !u.hash.verify(ci.Password) {
		return gateway.AuthResult{Decision: gateway.Deny, Reason: fmt.Sprintf("built_in: bad password for user %q", id)}
	}
	return gateway.AuthResult{Decision: gateway.Allow, IsSuperuser: u.superuser}
}

// Users lists the users, sorted by id.
func (b *Builtin) Users() []User {
	m := *b.users.Load()
	out := make([]User, 0, len(m))
	for id, u := range m {
		out = append(out, User{UserID: id, IsSuperuser: u.superuser})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UserID < out[j].UserID })
	return out
}

// AddUser adds a user; the password must already be hashed (HashPassword).
// It fails with ErrUserExists for a known id.
func (b *Builtin) AddUser(u UserSpec) error {
	if u.UserID == "" {
		return errors.New("built_in: empty user id")
	}
	h, err := parseHash(u.PasswordHash.Reveal())
	if err != nil {
		return fmt.Errorf("built_in: user %q: %w", u.UserID, err)
	}
	return b.modify(func(m map[string]userEntry) error {
		if _, ok := m[u.UserID]; ok {
			return fmt.Errorf("%w: %q", ErrUserExists, u.UserID)
		}
		m[u.UserID] = userEntry{hash: h, superuser: u.IsSuperuser}
		return nil
	})
}

// UpdateUser replaces a user's superuser flag and, when PasswordHash is
// not empty, its password hash. It fails with ErrUserNotFound for an
// unknown id.
func (b *Builtin) UpdateUser(u UserSpec) error {
	var h passwordHash
	if u.PasswordHash != "" {
		var err error
		if h, err = parseHash(u.PasswordHash.Reveal()); err != nil {
			return fmt.Errorf("built_in: user %q: %w", u.UserID, err)
		}
	}
	return b.modify(func(m map[string]userEntry) error {
		old, ok := m[u.UserID]
		if !ok {
			return fmt.Errorf("%w: %q", ErrUserNotFound, u.UserID)
		}
		if u.PasswordHash == "" {
			h = old.hash
		}
		m[u.UserID] = userEntry{hash: h, superuser: u.IsSuperuser}
		return nil
	})
}

// DeleteUser removes a user. Clients already connected stay connected. It
// fails with ErrUserNotFound for an unknown id.
func (b *Builtin) DeleteUser(userID string) error {
	return b.modify(func(m map[string]userEntry) error {
		if _, ok := m[userID]; !ok {
			return fmt.Errorf("%w: %q", ErrUserNotFound, userID)
		}
		delete(m, userID)
		return nil
	})
}

// modify applies f to a copy of the user set and publishes the copy.
func (b *Builtin) modify(f func(map[string]userEntry) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := *b.users.Load()
	m := make(map[string]userEntry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	if err := f(m); err != nil {
		return err
	}
	b.users.Store(&m)
	return nil
}
