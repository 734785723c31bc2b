package gateway

import (
	"crypto/x509"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/hooks"
)

// ClientInfo is who a client is. The listener fills the transport fields,
// the protocol the identity and its own fields, authentication the rest.
type ClientInfo struct {
	Gateway    string // kind name
	ListenerID string // "{kind}:{type}:{name}"
	Protocol   string // "mqttsn", "coap"… (usually the kind name)

	ClientID string
	Username string
	// Password is the credential the client presented. Never logged, never
	// returned by the API.
	Password []byte

	Peer     netip.AddrPort
	PeerCert *x509.Certificate
	CertCN   string
	CertDN   string

	// Mountpoint is the rendered prefix for this client ("" for none).
	Mountpoint string
	// IsSuperuser skips topic authorization (set by an authenticator).
	IsSuperuser bool
	// ClientAttrs are attributes set by authentication (${client_attrs.NAME}).
	ClientAttrs map[string]string
	// Fields are the protocol's own identity fields, readable as
	// placeholders: "endpoint_name", "lifetime" (LwM2M), "phone" (JT/T 808),
	// "gateway_id" (MQTT-SN)…
	Fields map[string]string
	// Packet holds fields of the connect packet (STOMP headers…) for
	// ${packet.NAME} in clientinfo_override.
	Packet map[string]string

	ConnectedAt time.Time
	// ExpireAt, when set by authentication, ends the connection then.
	ExpireAt time.Time

	agentVars config.Vars
}

// Lookup resolves placeholder names (implements config.Vars).
func (ci *ClientInfo) Lookup(name string) (string, bool) {
	switch name {
	case "clientid":
		return ci.ClientID, ci.ClientID != ""
	case "username":
		return ci.Username, ci.Username != ""
	case "password":
		return string(ci.Password), len(ci.Password) > 0
	case "peerhost":
		if ci.Peer.IsValid() {
			return ci.Peer.Addr().Unmap().String(), true
		}
		return "", false
	case "peerport":
		if ci.Peer.IsValid() {
			return strconv.Itoa(int(ci.Peer.Port())), true
		}
		return "", false
	case "protocol":
		return ci.Protocol, ci.Protocol != ""
	case "gateway":
		return ci.Gateway, ci.Gateway != ""
	case "listener":
		return ci.ListenerID, ci.ListenerID != ""
	case "cert_common_name":
		return ci.CertCN, ci.CertCN != ""
	case "cert_subject":
		return ci.CertDN, ci.CertDN != ""
	}
	if a, ok := strings.CutPrefix(name, "client_attrs."); ok {
		v, ok := ci.ClientAttrs[a]
		return v, ok
	}
	if p, ok := strings.CutPrefix(name, "packet."); ok {
		v, ok := ci.Packet[p]
		return v, ok
	}
	if v, ok := ci.Fields[name]; ok {
		return v, true
	}
	if ci.agentVars != nil {
		return ci.agentVars.Lookup(name)
	}
	return "", false
}

// SetField sets a protocol field (endpoint_name, phone…).
func (ci *ClientInfo) SetField(name, value string) {
	if ci.Fields == nil {
		ci.Fields = map[string]string{}
	}
	ci.Fields[name] = value
}

// PeerHost is the peer IP as text ("" for serial).
func (ci *ClientInfo) PeerHost() string {
	if !ci.Peer.IsValid() {
		return ""
	}
	return ci.Peer.Addr().Unmap().String()
}

// HookClient is the identity carried by hook events.
func (ci *ClientInfo) HookClient() hooks.Client {
	return hooks.Client{Gateway: ci.Gateway, Listener: ci.ListenerID, ClientID: ci.ClientID,
		Username: ci.Username, PeerHost: ci.PeerHost(), Protocol: ci.Protocol}
}

// Mount adds the mountpoint to a topic or filter from the device. A
// shared-subscription filter keeps its $share/group/ prefix in front.
func Mount(mp, topic string) string {
	if mp == "" {
		return topic
	}
	if rest, ok := strings.CutPrefix(topic, "$share/"); ok {
		if g, f, ok := strings.Cut(rest, "/"); ok {
			return "$share/" + g + "/" + mp + f
		}
	}
	return mp + topic
}

// Unmount removes the mountpoint from a topic delivered to a device.
func Unmount(mp, topic string) string {
	if mp == "" {
		return topic
	}
	if t, ok := strings.CutPrefix(topic, mp); ok {
		return t
	}
	return topic
}
