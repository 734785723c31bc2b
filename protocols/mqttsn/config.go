package mqttsn

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/agent/config"
)

// Defaults of [gateway.mqttsn].
const (
	DefaultGatewayID         = 1
	DefaultBroadcastAddress  = "255.255.255.255:1884"
	DefaultAdvertiseInterval = 15 * time.Minute
	DefaultSessionExpiry     = 2 * time.Hour
	DefaultMaxInflight       = 32
	DefaultMqueueLen         = 1000
	DefaultRetryInterval     = 10 * time.Second
	DefaultMaxRetry          = 3
	DefaultMaxAwaitingRel    = 100
)

// Config is the kind's own part of [gateway.mqttsn]; the keys every kind
// shares (mountpoint, clientinfo_override, idle_timeout, authentication,
// listeners) are the framework's.
type Config struct {
	// GatewayID is sent in ADVERTISE and GWINFO.
	GatewayID int `toml:"gateway_id"`
	// Broadcast turns on ADVERTISE every AdvertiseInterval, to
	// BroadcastAddress from every udp listener and to every node of every
	// serial bus.
	Broadcast         bool            `toml:"broadcast"`
	BroadcastAddress  string          `toml:"broadcast_address"`
	AdvertiseInterval config.Duration `toml:"advertise_interval"`
	// EnableQoS3 accepts QoS -1 publishes from peers that never connected.
	EnableQoS3 bool `toml:"enable_qos3"`
	// SubsResume re-REGISTERs the topics of a resumed session's
	// subscriptions before anything is delivered.
	SubsResume bool `toml:"subs_resume"`
	// Predefined topic ids, 1..65535, known to the devices from firmware.
	Predefined []Predefined `toml:"predefined"`
	// SessionExpiry keeps a CleanSession=0 session (subscriptions, topic
	// ids, queued messages, will) after its client went.
	SessionExpiry config.Duration `toml:"session_expiry"`
	// MaxInflight is the QoS 1/2 window towards one device.
	MaxInflight int `toml:"max_inflight"`
	// MqueueLen bounds the messages kept for one device while it sleeps
	// or is away; the oldest goes first, counted.
	MqueueLen int `toml:"mqueue_len"`
	// RetryInterval and MaxRetry govern retransmission of PUBLISH, PUBREL
	// and REGISTER to a device; after MaxRetry the device is lost.
	RetryInterval config.Duration `toml:"retry_interval"`
	MaxRetry      int             `toml:"max_retry"`
	// MaxAwaitingRel bounds QoS 2 publishes received and not yet released
	// by PUBREL; beyond it a PUBLISH gets PUBACK "congestion".
	MaxAwaitingRel int `toml:"max_awaiting_rel"`
}

// Predefined is one entry of `predefined = [{ id = 1, topic = "…" }]`.
type Predefined struct {
	ID    int    `toml:"id"`
	Topic string `toml:"topic"`
}

// NewConfig returns the kind's settings with every default set.
func NewConfig() *Config {
	return &Config{
		GatewayID:         DefaultGatewayID,
		BroadcastAddress:  DefaultBroadcastAddress,
		AdvertiseInterval: config.Duration(DefaultAdvertiseInterval),
		EnableQoS3:        true,
		SessionExpiry:     config.Duration(DefaultSessionExpiry),
		MaxInflight:       DefaultMaxInflight,
		MqueueLen:         DefaultMqueueLen,
		RetryInterval:     config.Duration(DefaultRetryInterval),
		MaxRetry:          DefaultMaxRetry,
		MaxAwaitingRel:    DefaultMaxAwaitingRel,
	}
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	var errs []error
	if c.GatewayID < 0 || c.GatewayID > 255 {
		errs = append(errs, config.Field("gateway_id", "must be 0..255, got %d", c.GatewayID))
	}
	if host, port, err := net.SplitHostPort(c.BroadcastAddress); err != nil || host == "" {
		errs = append(errs, config.Field("broadcast_address", "want host:port, got %q", c.BroadcastAddress))
	} else if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		errs = append(errs, config.Field("broadcast_address", "bad port in %q", c.BroadcastAddress))
	}
	if d := c.AdvertiseInterval.D(); d < time.Second || d > 65535*time.Second {
		errs = append(errs, config.Field("advertise_interval", "must be 1s..65535s (ADVERTISE carries seconds in 16 bits), got %s", c.AdvertiseInterval))
	}
	ids := map[int]int{}
	topics := map[string]int{}
	for i, p := range c.Predefined {
		key := fmt.Sprintf("predefined[%d]", i)
		if p.ID < 1 || p.ID > 65535 {
			errs = append(errs, config.Field(key+".id", "must be 1..65535, got %d", p.ID))
		} else if j, dup := ids[p.ID]; dup {
			errs = append(errs, config.Field(key+".id", "id %d already used by predefined[%d]", p.ID, j))
		} else {
			ids[p.ID] = i
		}
		if err := broker.ValidTopicName(p.Topic); err != nil {
			errs = append(errs, config.Field(key+".topic", "%q: %v", p.Topic, err))
		} else if j, dup := topics[p.Topic]; dup {
			errs = append(errs, config.Field(key+".topic", "topic %q already has id %d (predefined[%d])", p.Topic, c.Predefined[j].ID, j))
		} else {
			topics[p.Topic] = i
		}
	}
	// Message ids are 16 bits: leave room for REGISTER beside a full window.
	if c.MaxInflight < 1 || c.MaxInflight > 65000 {
		errs = append(errs, config.Field("max_inflight", "must be 1..65000, got %d", c.MaxInflight))
	}
	if c.MqueueLen < 1 {
		errs = append(errs, config.Field("mqueue_len", "must be at least 1, got %d", c.MqueueLen))
	}
	if c.RetryInterval.D() < 10*time.Millisecond {
		errs = append(errs, config.Field("retry_interval", "must be at least 10ms, got %s", c.RetryInterval))
	}
	if c.MaxRetry < 0 || c.MaxRetry > 100 {
		errs = append(errs, config.Field("max_retry", "must be 0..100, got %d", c.MaxRetry))
	}
	if c.MaxAwaitingRel < 1 || c.MaxAwaitingRel > 65535 {
		errs = append(errs, config.Field("max_awaiting_rel", "must be 1..65535, got %d", c.MaxAwaitingRel))
	}
	return errors.Join(errs...)
}

// Serial framings.
const (
	FramingSLIP   = "slip"
	FramingLength = "length"
)

// Defaults of a serial listener's MQTT-SN keys.
const (
	DefaultTurnaround = 100 * time.Millisecond
)

// SerialOptions are the MQTT-SN keys of a serial listener, next to the
// serial transport's own (device, baud, rs485 …):
//
//	[gateway.mqttsn.listeners.serial.rs485]
//	device = "/dev/ttyAMA0"
//	baud = 115200
//	framing = "slip"        # or "length"
//	half_duplex = true
//	turnaround = "100ms"
//	nodes = [1, 2, 3]       # node addresses allowed on the bus; [] = any
type SerialOptions struct {
	Framing    string          `toml:"framing"`
	HalfDuplex bool            `toml:"half_duplex"`
	Turnaround config.Duration `toml:"turnaround"`
	Nodes      []int           `toml:"nodes"`
}

// NewSerialOptions returns a serial listener's MQTT-SN keys with defaults.
func NewSerialOptions() *SerialOptions {
	return &SerialOptions{Framing: FramingSLIP, Turnaround: config.Duration(DefaultTurnaround)}
}

// Validate implements config.Validator.
func (o *SerialOptions) Validate() error {
	var errs []error
	switch o.Framing {
	case FramingSLIP, FramingLength:
	default:
		errs = append(errs, config.Field("framing", "must be %q or %q, got %q", FramingSLIP, FramingLength, o.Framing))
	}
	if d := o.Turnaround.D(); d < time.Millisecond || d > 10*time.Second {
		errs = append(errs, config.Field("turnaround", "must be 1ms..10s, got %s", o.Turnaround))
	}
	seen := map[int]bool{}
	for i, n := range o.Nodes {
		if n < minNode || n > maxNode {
			errs = append(errs, config.Field(fmt.Sprintf("nodes[%d]", i), "node address must be %d..%d, got %d", minNode, maxNode, n))
		} else if seen[n] {
			errs = append(errs, config.Field(fmt.Sprintf("nodes[%d]", i), "node address %d listed twice", n))
		}
		seen[n] = true
	}
	if o.Framing == FramingLength && len(o.Nodes) > 0 {
		errs = append(errs, config.Field("nodes", "length framing has no node addresses (point-to-point); use slip"))
	}
	return errors.Join(errs...)
}
