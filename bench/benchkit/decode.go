package benchkit

import (
	"bytes"
	"encoding/base64"
	"strings"
)

// A PayloadDecoder finds the bench payload (the 22-byte stamp and its
// padding) inside what a gateway published for one device message. MQTT-SN,
// STOMP and CoAP forward the payload as it is and need none; gateways that
// translate frames into JSON (LwM2M, JT/T 808, GB/T 32960) carry it in a
// field, and their generator registers a decoder that digs it out.
//
// Decode is called by the subscriber for every message whose payload does
// not start with the stamp, from paho's callback goroutines, concurrently:
// it must be safe for that and should be cheap (no full JSON decoding per
// message when a scan will do). ok is false for a message that carries no
// bench payload (a registration, an update, another device's traffic);
// the subscriber counts those as foreign.
type PayloadDecoder interface {
	Decode(topic string, msg []byte) (payload []byte, ok bool)
}

var decoders = map[string]PayloadDecoder{}

// RegisterDecoder makes d the decoder of protocol name's cloud messages.
// The subscriber picks it by the topic's second level
// (bench/<name>/…) and falls back to trying every decoder, so a gateway
// that maps topics differently still has its messages read. Call it from
// init; a duplicate panics.
func RegisterDecoder(name string, d PayloadDecoder) {
	if _, dup := decoders[name]; dup {
		panic("benchkit: decoder registered twice: " + name)
	}
	decoders[name] = d
}

// decodePayload returns the bench payload of a cloud message: the message
// itself when it starts with the stamp, else what a decoder finds.
func decodePayload(topic string, msg []byte) ([]byte, bool) {
	if len(msg) >= 2 && msg[0] == magic0 && msg[1] == magic1 {
		return msg, true
	}
	if len(decoders) == 0 {
		return nil, false
	}
	if _, rest, ok := strings.Cut(topic, "/"); ok {
		name, _, _ := strings.Cut(rest, "/")
		if d := decoders[name]; d != nil {
			if p, ok := d.Decode(topic, msg); ok {
				return p, true
			}
		}
	}
	for _, d := range decoders {
		if p, ok := d.Decode(topic, msg); ok {
			return p, true
		}
	}
	return nil, false
}

// jsonString returns the value of the first "key" in msg whose value is a
// string without escapes (base64 and hex never have any). It scans rather
// than decodes: the gateways' JSON is compact and machine-written, and a
// key whose value is an object (GB/T 32960's outer "Data") is skipped.
func jsonString(msg []byte, key string) ([]byte, bool) {
	k := make([]byte, 0, len(key)+2)
	k = append(append(append(k, '"'), key...), '"')
	for {
		i := bytes.Index(msg, k)
		if i < 0 {
			return nil, false
		}
		msg = skipSpace(msg[i+len(k):])
		if len(msg) == 0 || msg[0] != ':' {
			continue
		}
		msg = skipSpace(msg[1:])
		if len(msg) == 0 || msg[0] != '"' {
			continue
		}
		end := bytes.IndexByte(msg[1:], '"')
		if end < 0 {
			return nil, false
		}
		v := msg[1 : 1+end]
		if bytes.IndexByte(v, '\\') >= 0 {
			msg = msg[1+end:]
			continue
		}
		return v, true
	}
}

func skipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}

// b64 decodes standard base64 (padded or not).
func b64(s []byte) ([]byte, bool) {
	enc := base64.StdEncoding
	if len(s)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	out := make([]byte, enc.DecodedLen(len(s)))
	n, err := enc.Decode(out, s)
	if err != nil {
		return nil, false
	}
	return out[:n], true
}
