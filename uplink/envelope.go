package uplink

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/edgeway/edgeway/agent/hooks"
	"github.com/edgeway/edgeway/store"
)

// appendEnvelope appends the JSON envelope of m (envelope = "json"):
//
//	{"id":"…","ts":"2026-01-02T03:04:05.123Z","agent":"gw-1","gateway":"mqttsn",
//	 "clientid":"dev1","topic":"sensors/t","qos":1,"retain":false,"payload":"21.5"}
//
// id is the store's unique message id, the key for de-duplication in the
// cloud. payload is the device's payload as a string when it is valid
// UTF-8; otherwise "payload_b64" holds it base64-encoded. topic is the
// local topic (the upstream one without topic_prefix). Hand-written, as
// it runs once per message.
func appendEnvelope(b []byte, m *store.Message, agent string) []byte {
	b = append(b, '{')
	if m.ID != "" { // a QoS 0 message sent without being stored has none
		b = append(b, `"id":`...)
		b = appendJSONString(b, m.ID)
		b = append(b, ',')
	}
	b = append(b, `"ts":"`...)
	b = m.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","agent":`...)
	b = appendJSONString(b, agent)
	if m.Gateway != "" && m.Gateway != eventsGateway {
		b = append(b, `,"gateway":`...)
		b = appendJSONString(b, m.Gateway)
	}
	if m.ClientID != "" {
		b = append(b, `,"clientid":`...)
		b = appendJSONString(b, m.ClientID)
	}
	b = append(b, `,"topic":`...)
	b = appendJSONString(b, m.Topic)
	b = append(b, `,"qos":`...)
	b = strconv.AppendUint(b, uint64(m.QoS), 10)
	b = append(b, `,"retain":`...)
	b = strconv.AppendBool(b, m.Retain)
	if utf8.Valid(m.Payload) {
		b = append(b, `,"payload":`...)
		b = appendJSONString(b, m.Payload)
	} else {
		b = append(b, `,"payload_b64":"`...)
		b = base64.StdEncoding.AppendEncode(b, m.Payload)
		b = append(b, '"')
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s quoted for JSON; s must be valid UTF-8
// (topics and client ids are; payloads are checked first).
func appendJSONString[T string | []byte](b []byte, s T) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default: // other control characters, and <>& as encoding/json does
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// event is the JSON published on events_topic for a device coming or
// going.
type event struct {
	Event    string    `json:"event"` // client.connected | client.disconnected
	TS       time.Time `json:"ts"`
	Agent    string    `json:"agent"`
	Gateway  string    `json:"gateway,omitempty"`
	Listener string    `json:"listener,omitempty"`
	ClientID string    `json:"clientid"`
	Username string    `json:"username,omitempty"`
	PeerHost string    `json:"peerhost,omitempty"`
	Protocol string    `json:"protocol,omitempty"`
	Reason   string    `json:"reason,omitempty"`
}

// onEvent is the hooks consumer: presence events go through the queue
// like device messages, so they survive an outage and reach the cloud in
// order with the data around them.
func (u *Uplink) onEvent(e hooks.Event) {
	ts := e.Time
	if ts.IsZero() {
		ts = u.now()
	}
	payload, err := json.Marshal(event{
		Event: string(e.Name), TS: ts.UTC(), Agent: u.agentID,
		Gateway: e.Client.Gateway, Listener: e.Client.Listener, ClientID: e.Client.ClientID,
		Username: e.Client.Username, PeerHost: e.Client.PeerHost, Protocol: e.Client.Protocol,
		Reason: e.Reason,
	})
	if err != nil {
		u.drop(1)
		return
	}
	m := &store.Message{
		Topic: u.s.eventsTopic, Payload: payload, QoS: 1,
		Gateway: eventsGateway, ClientID: e.Client.ClientID, Time: ts,
	}
	if err := u.q.Append(context.Background(), m); err != nil {
		u.drop(1)
		u.log.Debug("presence event not stored", "event", e.Name, "clientid", e.Client.ClientID, "error", err)
	}
}
