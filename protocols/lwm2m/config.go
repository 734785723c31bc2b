package lwm2m

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/edgeway/edgeway/agent/config"
)

// Defaults of [gateway.lwm2m]; the lifetimes and window are EMQX's.
const (
	DefaultLifetimeMin     = 15 * time.Second
	DefaultLifetimeMax     = 86400 * time.Second
	DefaultQmodeTimeWindow = 22 * time.Second
	DefaultMaxMqueueLen    = 100
	DefaultCommandTTL      = 7200 * time.Second
	maxMqueueLenCap        = 1 << 16
)

// Config is the kind's own part of [gateway.lwm2m].
type Config struct {
	// XMLDir holds OMA object definition files (*.xml) that add to or
	// replace the built-in core and IPSO definitions. Optional.
	XMLDir      string          `toml:"xml_dir"`
	LifetimeMin config.Duration `toml:"lifetime_min"`
	LifetimeMax config.Duration `toml:"lifetime_max"`
	// QmodeTimeWindow is how long a queue-mode device is taken to be awake
	// after the gateway last heard from it.
	QmodeTimeWindow config.Duration `toml:"qmode_time_window"`
	// AutoObserve is false, true, or a list of paths.
	AutoObserve AutoObserve `toml:"auto_observe"`
	// UpdateMsgPublishCondition is "always" or "contains_object_list".
	UpdateMsgPublishCondition string `toml:"update_msg_publish_condition"`
	// MaxMqueueLen bounds the downlink commands waiting for one device;
	// a command beyond it is answered at once and counted as dropped.
	MaxMqueueLen int         `toml:"max_mqueue_len"`
	Translators  Translators `toml:"translators"`
	Blockwise    Blockwise   `toml:"blockwise"`
}

// Blockwise is EMQX's `blockwise` table. Responses in Block2 blocks are
// reassembled up to MaxBodySize; the other keys are accepted for EMQX
// compatibility.
type Blockwise struct {
	Enable           bool            `toml:"enable"`
	MaxBlockSize     int             `toml:"max_block_size"`
	MaxBodySize      config.ByteSize `toml:"max_body_size"`
	ExchangeLifetime config.Duration `toml:"exchange_lifetime"`
}

// Translators are the topics (under the mountpoint) of each message type.
type Translators struct {
	Command  Translator `toml:"command"`
	Response Translator `toml:"response"`
	Notify   Translator `toml:"notify"`
	Register Translator `toml:"register"`
	Update   Translator `toml:"update"`
}

// Translator is one topic and its QoS.
type Translator struct {
	Topic string `toml:"topic"`
	QoS   int    `toml:"qos"`
}

// AutoObserve is `auto_observe`: a boolean, "on"/"off", a comma separated
// string of paths, or a list of paths.
type AutoObserve struct {
	All   bool
	Paths []string
}

// UnmarshalConfig implements config.Unmarshaler.
func (a *AutoObserve) UnmarshalConfig(v any) error {
	*a = AutoObserve{}
	switch t := v.(type) {
	case bool:
		a.All = t
	case string:
		switch strings.TrimSpace(t) {
		case "on", "true":
			a.All = true
		case "off", "false", "":
		default:
			for _, p := range strings.Split(t, ",") {
				if p = strings.TrimSpace(p); p != "" {
					a.Paths = append(a.Paths, normPath(p))
				}
			}
		}
	case []any:
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("auto_observe: list entries are paths such as \"/3/0\", got %v", e)
			}
			a.Paths = append(a.Paths, normPath(s))
		}
	default:
		return fmt.Errorf("auto_observe: expected true, false or a list of paths, got %v", v)
	}
	for _, p := range a.Paths {
		if _, err := parsePath(p); err != nil {
			return fmt.Errorf("auto_observe: %w", err)
		}
	}
	return nil
}

// DefaultConfig returns the settings with every default filled in.
func DefaultConfig() *Config {
	return &Config{
		LifetimeMin:               config.Duration(DefaultLifetimeMin),
		LifetimeMax:               config.Duration(DefaultLifetimeMax),
		QmodeTimeWindow:           config.Duration(DefaultQmodeTimeWindow),
		UpdateMsgPublishCondition: "always",
		MaxMqueueLen:              DefaultMaxMqueueLen,
		Blockwise: Blockwise{Enable: true, MaxBlockSize: 1024, MaxBodySize: 4 << 20,
			ExchangeLifetime: config.Duration(247 * time.Second)},
		Translators: Translators{
			Command:  Translator{Topic: "dn/#"},
			Response: Translator{Topic: "up/resp"},
			Notify:   Translator{Topic: "up/notify"},
			Register: Translator{Topic: "up/resp"},
			Update:   Translator{Topic: "up/update"},
		},
	}
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	var errs []error
	if c.LifetimeMin < 0 {
		errs = append(errs, config.Field("lifetime_min", "must not be negative, got %s", c.LifetimeMin))
	}
	if c.LifetimeMax < config.Duration(time.Second) || c.LifetimeMax < c.LifetimeMin {
		errs = append(errs, config.Field("lifetime_max", "must be at least 1s and lifetime_min (%s), got %s", c.LifetimeMin, c.LifetimeMax))
	}
	if c.QmodeTimeWindow < 0 {
		errs = append(errs, config.Field("qmode_time_window", "must not be negative, got %s", c.QmodeTimeWindow))
	}
	switch c.UpdateMsgPublishCondition {
	case "always", "contains_object_list":
	default:
		errs = append(errs, config.Field("update_msg_publish_condition", "must be always or contains_object_list, got %q", c.UpdateMsgPublishCondition))
	}
	if c.MaxMqueueLen < 1 || c.MaxMqueueLen > maxMqueueLenCap {
		errs = append(errs, config.Field("max_mqueue_len", "must be 1..%d, got %d", maxMqueueLenCap, c.MaxMqueueLen))
	}
	switch c.Blockwise.MaxBlockSize {
	case 16, 32, 64, 128, 256, 512, 1024:
	default:
		errs = append(errs, config.Field("blockwise.max_block_size", "must be a power of two from 16 to 1024, got %d", c.Blockwise.MaxBlockSize))
	}
	if c.Blockwise.MaxBodySize < 1 {
		errs = append(errs, config.Field("blockwise.max_body_size", "must be positive, got %s", c.Blockwise.MaxBodySize))
	}
	if c.XMLDir != "" {
		if st, err := os.Stat(c.XMLDir); err != nil || !st.IsDir() {
			errs = append(errs, config.Field("xml_dir", "%q is not a readable directory", c.XMLDir))
		}
	}
	for _, t := range []struct {
		name string
		t    Translator
	}{{"command", c.Translators.Command}, {"response", c.Translators.Response}, {"notify", c.Translators.Notify}, {"register", c.Translators.Register}, {"update", c.Translators.Update}} {
		if t.t.Topic == "" {
			errs = append(errs, config.Field("translators."+t.name+".topic", "is required"))
		}
		if t.name != "command" && strings.ContainsAny(t.t.Topic, "+#") {
			errs = append(errs, config.Field("translators."+t.name+".topic", "must not contain wildcards, got %q", t.t.Topic))
		}
		if t.t.QoS < 0 || t.t.QoS > 2 {
			errs = append(errs, config.Field("translators."+t.name+".qos", "must be 0, 1 or 2, got %d", t.t.QoS))
		}
	}
	return errors.Join(errs...)
}

// path is a parsed LwM2M path: 1 to 4 ids (object, instance, resource,
// resource instance).
type path []uint16

func normPath(s string) string {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "/") {
		s = "/" + s
	}
	return strings.TrimSuffix(s, "/")
}

func parsePath(s string) (path, error) {
	t := strings.Trim(s, "/")
	if t == "" {
		return nil, fmt.Errorf("empty path %q", s)
	}
	parts := strings.Split(t, "/")
	if len(parts) > 4 {
		return nil, fmt.Errorf("path %q has more than 4 levels", s)
	}
	p := make(path, len(parts))
	for i, s1 := range parts {
		n, err := strconv.ParseUint(s1, 10, 16)
		if err != nil || n == 65535 {
			return nil, fmt.Errorf("bad path %q", s)
		}
		p[i] = uint16(n)
	}
	return p, nil
}

func (p path) String() string {
	var b strings.Builder
	for _, n := range p {
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(int(n)))
	}
	return b.String()
}
