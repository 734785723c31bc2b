// Package config is edgeway's TOML schema: the typed sections, their
// defaults, units ("30s", "256KB"), ${placeholder} templates and strict
// validation that reports every problem of a file at once, each with its
// full dotted key and line.
//
// Gateway kinds, listener types and authenticator types are not known here;
// they register their schemas (RegisterKind, RegisterListener,
// RegisterAuthn) from init functions, and this package decodes their
// sections into the structs they provide.
package config

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Security profiles.
const (
	// ProfileHardened denies every client of a gateway that has no
	// authenticator configured. It is the default.
	ProfileHardened = "hardened"
	// ProfileLegacy lets clients of a gateway without authenticators in.
	ProfileLegacy = "legacy"
)

// Config is a whole edgeway config file.
type Config struct {
	Agent         Agent         `toml:"agent"`
	API           API           `toml:"api"`
	Uplink        Uplink        `toml:"uplink"`
	Authorization Authorization `toml:"authorization"`
	Fleet         Fleet         `toml:"fleet"`
	Gateways      Gateways      `toml:"gateway"`

	// Extra holds sections owned by other components (e.g. [board], [fleet])
	// that registered with RegisterSection.
	Extra map[string]any `toml:"-"`
}

// Agent is [agent].
type Agent struct {
	// ID names this box upstream; usually "${board.serial}".
	ID      AgentTemplate `toml:"id"`
	DataDir string        `toml:"data_dir"`
	Log     Log           `toml:"log"`
	// SecurityProfile is "hardened" (default) or "legacy".
	SecurityProfile string `toml:"security_profile"`
	// ShutdownTimeout bounds a graceful stop.
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
}

// Log is [agent.log].
type Log struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // text or json
}

// Validate implements Validator.
func (a *Agent) Validate() error {
	var errs []error
	switch a.SecurityProfile {
	case ProfileHardened, ProfileLegacy:
	default:
		errs = append(errs, Field("security_profile", "must be %q or %q, got %q", ProfileHardened, ProfileLegacy, a.SecurityProfile))
	}
	switch a.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, Field("log.level", "must be one of debug, info, warn, error, got %q", a.Log.Level))
	}
	switch a.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, Field("log.format", "must be \"text\" or \"json\", got %q", a.Log.Format))
	}
	if a.DataDir == "" {
		errs = append(errs, Field("data_dir", "must not be empty"))
	}
	return errors.Join(errs...)
}

// API is [api]: the local HTTP API, the status page and what `edgeway
// ctl` talks to. Besides the token in <data_dir>/api.token, the users
// listed here may log in with basic auth.
type API struct {
	// Listen is host:port; "" turns the API and the status page off.
	Listen string `toml:"listen"`
	// MaxBodySize bounds a request body (a pushed config is the largest).
	MaxBodySize ByteSize `toml:"max_body_size"`
	// Users are [[api.users]].
	Users []APIUser `toml:"users"`
}

// APIUser is one [[api.users]] entry.
type APIUser struct {
	Username string `toml:"username"`
	// PasswordHash is what `edgeway passwd` prints ("pbkdf2-sha256$…").
	PasswordHash Secret `toml:"password_hash"`
	// Role is "viewer" (reads, status page) or "admin" (also kicks,
	// enables, disables and changes config).
	Role string `toml:"role"`
}

// API roles.
const (
	RoleViewer = "viewer"
	RoleAdmin  = "admin"
)

// Validate implements Validator.
func (a *API) Validate() error {
	var errs []error
	if a.Listen != "" {
		if err := checkHostPort(a.Listen); err != nil {
			errs = append(errs, Field("listen", "%v", err))
		}
	}
	if a.MaxBodySize < 1<<10 || a.MaxBodySize > 64<<20 {
		errs = append(errs, Field("max_body_size", "must be between 1KB and 64MB, got %s", a.MaxBodySize))
	}
	first := map[string]int{}
	for i, u := range a.Users {
		key := fmt.Sprintf("users[%d]", i)
		switch {
		case u.Username == "":
			errs = append(errs, Field(key+".username", "must not be empty"))
		case strings.ContainsAny(u.Username, ": \t"):
			errs = append(errs, Field(key+".username", "must not contain ':' or blanks, got %q", u.Username))
		default:
			if j, dup := first[u.Username]; dup {
				errs = append(errs, Field(key+".username", "duplicate user %q (also users[%d])", u.Username, j))
			} else {
				first[u.Username] = i
			}
		}
		// The scheme is checked here; the API checks the whole hash when
		// it starts (config does not import auth). The hash itself is
		// never quoted, in case a plain password was pasted there.
		h := u.PasswordHash.Reveal()
		if !strings.HasPrefix(h, "pbkdf2-sha256$") && !strings.HasPrefix(h, "sha256$") {
			errs = append(errs, Field(key+".password_hash", "user %q: want a hash from `edgeway passwd` (pbkdf2-sha256$… or sha256$…)", u.Username))
		}
		if u.Role != RoleViewer && u.Role != RoleAdmin {
			errs = append(errs, Field(key+".role", "must be %q or %q, got %q", RoleViewer, RoleAdmin, u.Role))
		}
	}
	return errors.Join(errs...)
}

// Uplink is [uplink]: the cloud MQTT connection and its store.
type Uplink struct {
	Enable         bool          `toml:"enable"`
	Server         string        `toml:"server"`
	ClientID       AgentTemplate `toml:"client_id"`
	Username       string        `toml:"username"`
	Password       Secret        `toml:"password"`
	CleanSession   bool          `toml:"clean_session"`
	Keepalive      string        `toml:"keepalive"` // a duration, or "auto"
	PingTimeout    Duration      `toml:"ping_timeout"`
	ConnectTimeout Duration      `toml:"connect_timeout"`
	MaxInflight    int           `toml:"max_inflight"`
	TopicPrefix    AgentTemplate `toml:"topic_prefix"`
	StoreQoS0      bool          `toml:"store_qos0"`
	DrainRate      int           `toml:"drain_rate"` // messages/s, 0 = as fast as the broker accepts
	StatusTopic    AgentTemplate `toml:"status_topic"`
	EventsTopic    AgentTemplate `toml:"events_topic"`
	Forward        []string      `toml:"forward"`     // local filters relayed upstream
	Downlink       []string      `toml:"downlink"`    // local subscriptions inside these are mirrored upstream
	Envelope       string        `toml:"envelope"`    // "none" (payload as is) or "json" (with the message id)
	EchoWindow     Duration      `toml:"echo_window"` // drop own messages coming back down within this; 0 = off
	// QuarantineAfter moves a stored message out of the queue after the
	// cloud broker closed the connection this many times in a row while it
	// was the oldest unacknowledged PUBLISH (the last time sent alone), so
	// one message the broker refuses cannot block every message behind
	// it; 0 turns it off.
	QuarantineAfter int `toml:"quarantine_after"`
	// QuarantineMaxBytes bounds the quarantine file
	// (<data_dir>/quarantine/uplink.jsonl).
	QuarantineMaxBytes ByteSize  `toml:"quarantine_max_bytes"`
	TLS                UplinkTLS `toml:"tls"`
	Backoff            Backoff   `toml:"backoff"`
	Store              Store     `toml:"store"`
}

// UplinkTLS is [uplink.tls].
type UplinkTLS struct {
	CAFile             string `toml:"cacertfile"`
	CertFile           string `toml:"certfile"`
	KeyFile            string `toml:"keyfile"`
	ServerName         string `toml:"server_name"`
	InsecureSkipVerify bool   `toml:"insecure_skip_verify"`
}

// Backoff is [uplink.backoff].
type Backoff struct {
	Initial Duration `toml:"initial"`
	Max     Duration `toml:"max"`
	Jitter  float64  `toml:"jitter"`
}

// Store is [uplink.store].
type Store struct {
	Dir      string   `toml:"dir"` // default <data_dir>/queue
	MaxBytes ByteSize `toml:"max_bytes"`
	MaxAge   Duration `toml:"max_age"`
	OnFull   string   `toml:"on_full"` // drop_oldest, drop_new, block
	Sync     string   `toml:"sync"`    // always, batch, none
	// MinFree is the free space the store's filesystem must keep; below
	// it new messages are refused (store.Options.MinFreeBytes). Unset: the
	// store's default (48MB). There is no "off": badger on a full
	// filesystem dies of SIGBUS.
	MinFree ByteSize `toml:"min_free"`
}

// Validate implements Validator.
func (u *Uplink) Validate() error {
	var errs []error
	if u.Server != "" {
		scheme, rest, ok := strings.Cut(u.Server, "://")
		switch {
		case !ok:
			errs = append(errs, Field("server", "want scheme://host:port, got %q", u.Server))
		case scheme != "mqtt" && scheme != "mqtts" && scheme != "tcp" && scheme != "ssl" && scheme != "tls" && scheme != "ws" && scheme != "wss":
			errs = append(errs, Field("server", "unsupported scheme %q (mqtt, mqtts, ws, wss)", scheme))
		default:
			host, _, _ := strings.Cut(rest, "/")
			if err := checkHostPort(host); err != nil {
				errs = append(errs, Field("server", "%v", err))
			}
		}
	}
	if u.Keepalive != "auto" {
		if k, err := ParseDuration(u.Keepalive); err != nil {
			errs = append(errs, Field("keepalive", "%v (or \"auto\")", err))
		} else if k < time.Second || k > 65535*time.Second {
			errs = append(errs, Field("keepalive", "must be between 1s and 65535s (or \"auto\"), got %q", u.Keepalive))
		}
	}
	if u.PingTimeout <= 0 {
		errs = append(errs, Field("ping_timeout", "must be positive"))
	}
	if u.ConnectTimeout <= 0 {
		errs = append(errs, Field("connect_timeout", "must be positive"))
	}
	if strings.ContainsAny(u.TopicPrefix.String(), "+#") {
		errs = append(errs, Field("topic_prefix", "must not contain wildcards, got %q", u.TopicPrefix.String()))
	}
	switch u.Envelope {
	case "none", "json":
	default:
		errs = append(errs, Field("envelope", "must be \"none\" or \"json\", got %q", u.Envelope))
	}
	if u.MaxInflight < 1 || u.MaxInflight > 65535 {
		errs = append(errs, Field("max_inflight", "must be 1..65535, got %d", u.MaxInflight))
	}
	if u.DrainRate < 0 {
		errs = append(errs, Field("drain_rate", "must not be negative"))
	}
	if u.QuarantineAfter < 0 || u.QuarantineAfter == 1 || u.QuarantineAfter > 100 {
		errs = append(errs, Field("quarantine_after", "must be 0 (off) or 2..100, got %d", u.QuarantineAfter))
	}
	if u.Backoff.Jitter < 0 || u.Backoff.Jitter > 1 {
		errs = append(errs, Field("backoff.jitter", "must be between 0 and 1, got %v", u.Backoff.Jitter))
	}
	if u.Backoff.Max < u.Backoff.Initial {
		errs = append(errs, Field("backoff.max", "%s is below backoff.initial %s", u.Backoff.Max, u.Backoff.Initial))
	}
	switch u.Store.OnFull {
	case "drop_oldest", "drop_new", "block":
	default:
		errs = append(errs, Field("store.on_full", "must be drop_oldest, drop_new or block, got %q", u.Store.OnFull))
	}
	switch u.Store.Sync {
	case "always", "batch", "none":
	default:
		errs = append(errs, Field("store.sync", "must be always, batch or none, got %q", u.Store.Sync))
	}
	if u.Store.MinFree != 0 && u.Store.MinFree < 4<<20 {
		errs = append(errs, Field("store.min_free", "%s is below the 4MB minimum (a memtable flush needs room)", u.Store.MinFree))
	}
	if u.Store.MaxBytes < 1<<20 {
		errs = append(errs, Field("store.max_bytes", "%s is below the 1MB minimum", u.Store.MaxBytes))
	}
	for i, f := range u.Forward {
		if err := checkFilter(f); err != nil {
			errs = append(errs, Field(fmt.Sprintf("forward[%d]", i), "%v", err))
		}
	}
	for i, f := range u.Downlink {
		if err := checkFilter(f); err != nil {
			errs = append(errs, Field(fmt.Sprintf("downlink[%d]", i), "%v", err))
		}
	}
	return errors.Join(errs...)
}

// Fleet is [fleet]: configs pushed by fleet management over the uplink.
type Fleet struct {
	// ConfigTopic is the local topic a signed config arrives on (mirrored
	// upstream with the uplink's topic_prefix); "" turns pushes off.
	ConfigTopic AgentTemplate `toml:"config_topic"`
	// ConfigResultTopic receives the outcome of every push as JSON.
	ConfigResultTopic AgentTemplate `toml:"config_result_topic"`
	// TrustedKeys are base64 Ed25519 public keys; a push must be signed by
	// one of them.
	TrustedKeys []string `toml:"trusted_keys"`
	// RollbackAfter restores the previous config when a pushed one loses
	// the uplink and it is not back within this time; "0s" never.
	RollbackAfter Duration `toml:"rollback_after"`
}

// Validate implements Validator.
func (f *Fleet) Validate() error {
	var errs []error
	for i, k := range f.TrustedKeys {
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil || len(b) != ed25519.PublicKeySize {
			errs = append(errs, Field(fmt.Sprintf("trusted_keys[%d]", i), "not a base64 Ed25519 public key (%d bytes)", ed25519.PublicKeySize))
		}
	}
	if !f.ConfigTopic.IsZero() && len(f.TrustedKeys) == 0 {
		errs = append(errs, Field("trusted_keys", "config_topic is set but no key is trusted: every push would be rejected"))
	}
	for _, kt := range []struct {
		key string
		t   AgentTemplate
	}{{"config_topic", f.ConfigTopic}, {"config_result_topic", f.ConfigResultTopic}} {
		if strings.ContainsAny(kt.t.String(), "+#") {
			errs = append(errs, Field(kt.key, "must be a topic name, not a filter"))
		}
	}
	return errors.Join(errs...)
}

// Authorization is [authorization]: ordered ACL rules, first match wins.
type Authorization struct {
	// NoMatch is what happens when no rule matches: "allow" (default, as EMQX) or "deny".
	NoMatch string    `toml:"no_match"`
	Rules   []ACLRule `toml:"rules"`
}

// ACLRule is one [[authorization.rules]] entry.
type ACLRule struct {
	Permission string   `toml:"permission"` // allow | deny
	Action     string   `toml:"action"`     // publish | subscribe | all
	Topics     []string `toml:"topics"`     // filters; ${clientid} and ${username} allowed; "eq t" for a literal match
	ClientID   string   `toml:"clientid"`   // optional exact clientid (or "re:" regexp)
	Username   string   `toml:"username"`   // optional exact username (or "re:" regexp)
	IPAddress  string   `toml:"ipaddress"`  // optional IP or CIDR
	Gateway    string   `toml:"gateway"`    // optional gateway kind
}

// Validate implements Validator.
func (a *Authorization) Validate() error {
	if a.NoMatch != "allow" && a.NoMatch != "deny" {
		return Field("no_match", "must be \"allow\" or \"deny\", got %q", a.NoMatch)
	}
	return nil
}

// Validate implements Validator.
func (r *ACLRule) Validate() error {
	var errs []error
	if r.Permission != "allow" && r.Permission != "deny" {
		errs = append(errs, Field("permission", "must be \"allow\" or \"deny\", got %q", r.Permission))
	}
	switch r.Action {
	case "publish", "subscribe", "all":
	default:
		errs = append(errs, Field("action", "must be publish, subscribe or all, got %q", r.Action))
	}
	if len(r.Topics) == 0 {
		errs = append(errs, Field("topics", "must list at least one topic filter"))
	}
	for i, t := range r.Topics {
		f := strings.TrimPrefix(t, "eq ")
		if _, err := ParseTemplate(f, false); err != nil {
			errs = append(errs, Field(fmt.Sprintf("topics[%d]", i), "%v", err))
			continue
		}
		if err := checkFilter(f); err != nil {
			errs = append(errs, Field(fmt.Sprintf("topics[%d]", i), "%v", err))
		}
	}
	for _, kv := range [][2]string{{"clientid", r.ClientID}, {"username", r.Username}} {
		if re, ok := strings.CutPrefix(kv[1], "re:"); ok {
			if _, err := regexp.Compile(re); err != nil {
				errs = append(errs, Field(kv[0], "bad regexp %q: %v", re, err))
			}
		}
	}
	if r.IPAddress != "" {
		if err := checkIPOrCIDR(r.IPAddress); err != nil {
			errs = append(errs, Field("ipaddress", "%v", err))
		}
	}
	return errors.Join(errs...)
}

// Default returns a config with every default filled in and no gateways.
func Default() *Config {
	return &Config{
		Agent: Agent{
			ID:              MustAgentTemplate("${board.serial}"),
			DataDir:         "/var/lib/edgeway",
			Log:             Log{Level: "info", Format: "text"},
			SecurityProfile: ProfileHardened,
			ShutdownTimeout: Duration(10e9),
		},
		API: API{Listen: "127.0.0.1:8080", MaxBodySize: 1 << 20},
		Uplink: Uplink{
			Enable:             true,
			ClientID:           MustAgentTemplate("edgeway-${agent.id}"),
			Keepalive:          "25s",
			PingTimeout:        Duration(10e9),
			ConnectTimeout:     Duration(15e9),
			MaxInflight:        64,
			StoreQoS0:          true,
			StatusTopic:        MustAgentTemplate("edgeway/${agent.id}/status"),
			EventsTopic:        MustAgentTemplate("edgeway/${agent.id}/events"),
			Forward:            []string{"#"},
			Downlink:           []string{"#"},
			Envelope:           "none",
			EchoWindow:         Duration(30e9),
			QuarantineAfter:    3,
			QuarantineMaxBytes: 16 << 20,
			Backoff:            Backoff{Initial: Duration(1e9), Max: Duration(60e9), Jitter: 0.2},
			Store:              Store{MaxBytes: 256 << 20, MaxAge: Duration(168 * 3600e9), OnFull: "drop_oldest", Sync: "batch"},
		},
		Authorization: Authorization{NoMatch: "allow"},
		Fleet: Fleet{
			ConfigResultTopic: MustAgentTemplate("edgeway/${agent.id}/config/result"),
			RollbackAfter:     Duration(120e9),
		},
		Gateways: Gateways{},
	}
}

// Load reads and checks a config file. On any problem it returns Errors
// listing all of them.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: err.Error()}}
	}
	return Parse(data, path)
}

// Parse checks TOML text; file is used in error messages.
func Parse(data []byte, file string) (*Config, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, Errors{{File: file, Line: pe.Position.Line, Msg: "syntax: " + pe.Message}}
		}
		return nil, Errors{{File: file, Msg: "syntax: " + err.Error()}}
	}
	d := &decoder{file: file, lines: keyLines(string(data))}
	c := Default()
	sections := extraSections()
	known := map[string]bool{}
	for _, s := range sections {
		known[s.Name] = true
	}
	// [section] tables owned by other components are cut out and decoded
	// into their own structs, so the core schema stays closed.
	core := map[string]any{}
	c.Extra = map[string]any{}
	for k, v := range raw {
		if known[k] {
			continue
		}
		core[k] = v
	}
	d.decodeTable("", core, c)
	for _, s := range sections {
		spec := s.New()
		if v, ok := raw[s.Name]; ok {
			if m, ok := v.(map[string]any); ok {
				d.decodeTable(s.Name, m, spec)
			} else {
				d.errorf(s.Name, "expected a table, got %s", describe(v))
			}
		} else {
			d.validate(s.Name, reflect.ValueOf(spec))
		}
		c.Extra[s.Name] = spec
	}
	if len(d.errs) > 0 {
		sort.SliceStable(d.errs, func(i, j int) bool { return d.errs[i].Line < d.errs[j].Line })
		return nil, d.errs
	}
	return c, nil
}

// SectionSchema is a top-level table owned by another component ([board], [fleet]).
type SectionSchema struct {
	Name string
	New  func() any // pointer to defaults
}

var sectionsReg []SectionSchema

// RegisterSection adds a top-level section. Call from init.
func RegisterSection(s SectionSchema) {
	reg.Lock()
	defer reg.Unlock()
	for _, x := range sectionsReg {
		if x.Name == s.Name {
			panic("config: section " + s.Name + " registered twice")
		}
	}
	sectionsReg = append(sectionsReg, s)
}

func extraSections() []SectionSchema {
	reg.RLock()
	defer reg.RUnlock()
	return append([]SectionSchema(nil), sectionsReg...)
}
