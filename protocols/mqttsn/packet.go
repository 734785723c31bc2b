package mqttsn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// Message types of MQTT-SN 1.2 (§5.2.2), and the forwarder encapsulation.
const (
	TypeAdvertise     byte = 0x00
	TypeSearchGW      byte = 0x01
	TypeGWInfo        byte = 0x02
	TypeConnect       byte = 0x04
	TypeConnack       byte = 0x05
	TypeWillTopicReq  byte = 0x06
	TypeWillTopic     byte = 0x07
	TypeWillMsgReq    byte = 0x08
	TypeWillMsg       byte = 0x09
	TypeRegister      byte = 0x0A
	TypeRegack        byte = 0x0B
	TypePublish       byte = 0x0C
	TypePuback        byte = 0x0D
	TypePubcomp       byte = 0x0E
	TypePubrec        byte = 0x0F
	TypePubrel        byte = 0x10
	TypeSubscribe     byte = 0x12
	TypeSuback        byte = 0x13
	TypeUnsubscribe   byte = 0x14
	TypeUnsuback      byte = 0x15
	TypePingreq       byte = 0x16
	TypePingresp      byte = 0x17
	TypeDisconnect    byte = 0x18
	TypeWillTopicUpd  byte = 0x1A
	TypeWillTopicResp byte = 0x1B
	TypeWillMsgUpd    byte = 0x1C
	TypeWillMsgResp   byte = 0x1D
	TypeEncapsulated  byte = 0xFE
)

// Return codes: 0x00–0x03 are the specification's, 0x80–0x84 EMQX's
// extensions, which edgeway sends where the README says.
const (
	RCAccepted         byte = 0x00
	RCCongestion       byte = 0x01
	RCInvalidTopicID   byte = 0x02
	RCNotSupported     byte = 0x03
	RCNotAuthorized    byte = 0x80
	RCFailedSession    byte = 0x81
	RCKeepaliveTimeout byte = 0x82
	RCExceedLimitation byte = 0x83
	RCReachedMaxRetry  byte = 0x84
)

// Flags bits (§5.3.4).
const (
	FlagDup          byte = 0x80
	FlagQoSMask      byte = 0x60
	FlagRetain       byte = 0x10
	FlagWill         byte = 0x08
	FlagCleanSession byte = 0x04
	FlagTopicIDMask  byte = 0x03
)

// Topic id types, the low two bits of Flags.
const (
	TopicNormal     byte = 0x00 // an id registered with REGISTER, or a topic name in SUBSCRIBE
	TopicPredefined byte = 0x01 // an id both sides know from configuration
	TopicShort      byte = 0x02 // a two-character topic name carried in the id field
	TopicReserved   byte = 0x03
)

// ProtocolID is the only protocol id of MQTT-SN 1.2 CONNECT.
const ProtocolID byte = 0x01

// MaxNodeIDLen is the longest forwarder Wireless Node Id: the
// encapsulation's one-octet length covers itself, the type, Ctrl and the id.
const MaxNodeIDLen = 255 - 3

// Errors wrapped by Unmarshal and Append; callers count by them.
var (
	ErrShort     = errors.New("mqttsn: message too short")
	ErrLength    = errors.New("mqttsn: bad length")
	ErrType      = errors.New("mqttsn: unknown message type")
	ErrMalformed = errors.New("mqttsn: malformed message")
	ErrTooLarge  = errors.New("mqttsn: message too large")
)

// Message is one MQTT-SN message of any type. Only the fields of its Type
// are encoded; the others must be zero for a table-driven round trip.
//
// Flags is kept raw so that decoding and encoding are byte-exact; QoS,
// TopicIDType and the other accessors read it. Data aliases the buffer
// given to Unmarshal: it is the PUBLISH payload, the will message of
// WILLMSG and WILLMSGUPD, and the gateway address of GWINFO.
type Message struct {
	Type        byte
	Flags       byte
	GwID        byte   // ADVERTISE, GWINFO
	Radius      byte   // SEARCHGW
	ProtocolID  byte   // CONNECT
	ReturnCode  byte   // CONNACK, REGACK, PUBACK, SUBACK, WILLTOPICRESP, WILLMSGRESP
	Duration    uint16 // ADVERTISE, CONNECT (keepalive), DISCONNECT (sleep)
	TopicID     uint16 // REGISTER, REGACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, UNSUBSCRIBE
	MsgID       uint16
	HasDuration bool   // DISCONNECT carries a Duration
	NoFlags     bool   // WILLTOPIC, WILLTOPICUPD: the empty form (delete the will)
	ClientID    string // CONNECT, PINGREQ ("" when absent)
	TopicName   string // REGISTER, SUBSCRIBE, UNSUBSCRIBE, WILLTOPIC, WILLTOPICUPD
	Data        []byte
}

// QoS is the QoS of Flags: 0, 1, 2, or -1 for the bits 0b11.
func (m *Message) QoS() int8 {
	q := int8(m.Flags&FlagQoSMask) >> 5
	if q == 3 {
		return -1
	}
	return q
}

// Dup reports the DUP flag.
func (m *Message) Dup() bool { return m.Flags&FlagDup != 0 }

// Retain reports the RETAIN flag.
func (m *Message) Retain() bool { return m.Flags&FlagRetain != 0 }

// Will reports the WILL flag of CONNECT.
func (m *Message) Will() bool { return m.Flags&FlagWill != 0 }

// CleanSession reports the CLEANSESSION flag of CONNECT.
func (m *Message) CleanSession() bool { return m.Flags&FlagCleanSession != 0 }

// TopicIDType is the topic id type of Flags.
func (m *Message) TopicIDType() byte { return m.Flags & FlagTopicIDMask }

// QoSFlags returns the Flags bits of qos (0, 1, 2, or -1).
func QoSFlags(qos int8) byte {
	if qos < 0 {
		return 0x60
	}
	return byte(qos&3) << 5
}

// ShortTopic returns the two-character topic name a short topic id carries.
func ShortTopic(id uint16) string { return string([]byte{byte(id >> 8), byte(id)}) }

// ShortID returns the topic id field carrying a two-character name.
func ShortID(name string) uint16 { return uint16(name[0])<<8 | uint16(name[1]) }

// TypeName names a message type for logs and errors.
func TypeName(t byte) string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	if t == TypeEncapsulated {
		return "ENCAPSULATED"
	}
	return "0x" + strconv.FormatUint(uint64(t), 16)
}

var typeNames = [...]string{
	TypeAdvertise: "ADVERTISE", TypeSearchGW: "SEARCHGW", TypeGWInfo: "GWINFO",
	TypeConnect: "CONNECT", TypeConnack: "CONNACK",
	TypeWillTopicReq: "WILLTOPICREQ", TypeWillTopic: "WILLTOPIC",
	TypeWillMsgReq: "WILLMSGREQ", TypeWillMsg: "WILLMSG",
	TypeRegister: "REGISTER", TypeRegack: "REGACK",
	TypePublish: "PUBLISH", TypePuback: "PUBACK", TypePubcomp: "PUBCOMP",
	TypePubrec: "PUBREC", TypePubrel: "PUBREL",
	TypeSubscribe: "SUBSCRIBE", TypeSuback: "SUBACK",
	TypeUnsubscribe: "UNSUBSCRIBE", TypeUnsuback: "UNSUBACK",
	TypePingreq: "PINGREQ", TypePingresp: "PINGRESP", TypeDisconnect: "DISCONNECT",
	TypeWillTopicUpd: "WILLTOPICUPD", TypeWillTopicResp: "WILLTOPICRESP",
	TypeWillMsgUpd: "WILLMSGUPD", TypeWillMsgResp: "WILLMSGRESP",
}

// FrameLen reads the length header at the start of b: the whole message's
// length (header included) and the header's size, 1 or 3. It returns
// ErrShort if b does not hold the header yet and ErrLength for a length
// that cannot be (0, or below the header's own size).
func FrameLen(b []byte) (total, hdr int, err error) {
	if len(b) < 1 {
		return 0, 0, ErrShort
	}
	if b[0] != 0x01 {
		if b[0] < 2 {
			return 0, 0, fmt.Errorf("%w: %d", ErrLength, b[0])
		}
		return int(b[0]), 1, nil
	}
	if len(b) < 3 {
		return 0, 0, ErrShort
	}
	total = int(binary.BigEndian.Uint16(b[1:3]))
	if total < 4 {
		return 0, 0, fmt.Errorf("%w: %d in a 3-octet header", ErrLength, total)
	}
	return total, 3, nil
}

// Decode parses one message that fills b exactly.
func Decode(b []byte) (*Message, error) {
	m := new(Message)
	if err := m.Unmarshal(b); err != nil {
		return nil, err
	}
	return m, nil
}

// Unmarshal parses one message that fills b exactly (a datagram carries
// one message). Data aliases b. A forwarder-encapsulated message is an
// error here: Unwrap it first.
func (m *Message) Unmarshal(b []byte) error {
	*m = Message{}
	total, hdr, err := FrameLen(b)
	if err != nil {
		return err
	}
	if total != len(b) {
		return fmt.Errorf("%w: header says %d, have %d", ErrLength, total, len(b))
	}
	if len(b) < hdr+1 {
		return ErrShort
	}
	m.Type = b[hdr]
	p := b[hdr+1:]
	if err := checkBody(m.Type, p); err != nil {
		return err
	}
	switch m.Type {
	case TypeAdvertise:
		m.GwID, m.Duration = p[0], be16(p[1:])
	case TypeSearchGW:
		m.Radius = p[0]
	case TypeGWInfo:
		m.GwID = p[0]
		if len(p) > 1 {
			m.Data = p[1:]
		}
	case TypeConnect:
		m.Flags, m.ProtocolID, m.Duration, m.ClientID = p[0], p[1], be16(p[2:]), string(p[4:])
	case TypeConnack, TypeWillTopicResp, TypeWillMsgResp:
		m.ReturnCode = p[0]
	case TypeWillTopic, TypeWillTopicUpd:
		if len(p) == 0 {
			m.NoFlags = true
			break
		}
		m.Flags, m.TopicName = p[0], string(p[1:])
	case TypeWillMsg, TypeWillMsgUpd:
		if len(p) > 0 {
			m.Data = p
		}
	case TypeRegister:
		m.TopicID, m.MsgID, m.TopicName = be16(p), be16(p[2:]), string(p[4:])
	case TypeRegack, TypePuback:
		m.TopicID, m.MsgID, m.ReturnCode = be16(p), be16(p[2:]), p[4]
	case TypePublish:
		m.Flags, m.TopicID, m.MsgID = p[0], be16(p[1:]), be16(p[3:])
		if len(p) > 5 {
			m.Data = p[5:]
		}
	case TypePubcomp, TypePubrec, TypePubrel, TypeUnsuback:
		m.MsgID = be16(p)
	case TypeSubscribe, TypeUnsubscribe:
		m.Flags, m.MsgID = p[0], be16(p[1:])
		switch m.TopicIDType() {
		case TopicPredefined, TopicShort:
			m.TopicID = be16(p[3:])
		default:
			m.TopicName = string(p[3:])
		}
	case TypeSuback:
		m.Flags, m.TopicID, m.MsgID, m.ReturnCode = p[0], be16(p[1:]), be16(p[3:]), p[5]
	case TypePingreq:
		m.ClientID = string(p)
	case TypeDisconnect:
		if len(p) == 2 {
			m.HasDuration, m.Duration = true, be16(p)
		}
	}
	return nil
}

// checkBody checks the length of a message's fields after the type octet
// (p) for its type t, without decoding them.
func checkBody(t byte, p []byte) error {
	bad := func(want string) error {
		return fmt.Errorf("%w: %s with %d octets after the type (want %s)", ErrMalformed, TypeName(t), len(p), want)
	}
	n := len(p)
	switch t {
	case TypeAdvertise:
		if n != 3 {
			return bad("3")
		}
	case TypeSearchGW, TypeConnack, TypeWillTopicResp, TypeWillMsgResp:
		if n != 1 {
			return bad("1")
		}
	case TypeGWInfo:
		if n < 1 {
			return bad("1 or more")
		}
	case TypeConnect, TypeRegister:
		if n < 4 {
			return bad("4 or more")
		}
	case TypeWillTopicReq, TypeWillMsgReq, TypePingresp:
		if n != 0 {
			return bad("0")
		}
	case TypeWillTopic, TypeWillTopicUpd, TypeWillMsg, TypeWillMsgUpd, TypePingreq:
	case TypeRegack, TypePuback:
		if n != 5 {
			return bad("5")
		}
	case TypePublish:
		if n < 5 {
			return bad("5 or more")
		}
	case TypePubcomp, TypePubrec, TypePubrel, TypeUnsuback:
		if n != 2 {
			return bad("2")
		}
	case TypeSubscribe, TypeUnsubscribe:
		if n < 3 {
			return bad("3 or more")
		}
		if tt := p[0] & FlagTopicIDMask; (tt == TopicPredefined || tt == TopicShort) && n != 5 {
			return bad("5 for a topic id")
		}
	case TypeSuback:
		if n != 6 {
			return bad("6")
		}
	case TypeDisconnect:
		if n != 0 && n != 2 {
			return bad("0 or 2")
		}
	case TypeEncapsulated:
		return fmt.Errorf("%w: encapsulated message where a plain one was expected", ErrMalformed)
	default:
		return fmt.Errorf("%w: 0x%02x", ErrType, t)
	}
	return nil
}

// bodyLen is the length of m's fields after the type octet.
func (m *Message) bodyLen() (int, error) {
	switch m.Type {
	case TypeAdvertise:
		return 3, nil
	case TypeSearchGW, TypeConnack, TypeWillTopicResp, TypeWillMsgResp:
		return 1, nil
	case TypeGWInfo:
		return 1 + len(m.Data), nil
	case TypeConnect:
		return 4 + len(m.ClientID), nil
	case TypeWillTopicReq, TypeWillMsgReq, TypePingresp:
		return 0, nil
	case TypeWillTopic, TypeWillTopicUpd:
		if m.NoFlags {
			return 0, nil
		}
		return 1 + len(m.TopicName), nil
	case TypeWillMsg, TypeWillMsgUpd:
		return len(m.Data), nil
	case TypeRegister:
		return 4 + len(m.TopicName), nil
	case TypeRegack, TypePuback:
		return 5, nil
	case TypePublish:
		return 5 + len(m.Data), nil
	case TypePubcomp, TypePubrec, TypePubrel, TypeUnsuback:
		return 2, nil
	case TypeSubscribe, TypeUnsubscribe:
		switch m.TopicIDType() {
		case TopicPredefined, TopicShort:
			return 5, nil
		}
		return 3 + len(m.TopicName), nil
	case TypeSuback:
		return 6, nil
	case TypePingreq:
		return len(m.ClientID), nil
	case TypeDisconnect:
		if m.HasDuration {
			return 2, nil
		}
		return 0, nil
	}
	return 0, fmt.Errorf("%w: 0x%02x", ErrType, m.Type)
}

// Len is the encoded length of m, header included.
func (m *Message) Len() (int, error) {
	n, err := m.bodyLen()
	if err != nil {
		return 0, err
	}
	if n+2 <= 255 {
		return n + 2, nil
	}
	if n+4 > 65535 {
		return 0, fmt.Errorf("%w: %s of %d octets", ErrTooLarge, TypeName(m.Type), n+4)
	}
	return n + 4, nil
}

// Append encodes m after dst. The 1-octet length header is used up to 255
// octets, the 3-octet one above.
func (m *Message) Append(dst []byte) ([]byte, error) {
	total, err := m.Len()
	if err != nil {
		return dst, err
	}
	if total <= 255 {
		dst = append(dst, byte(total))
	} else {
		dst = append(dst, 0x01, byte(total>>8), byte(total))
	}
	dst = append(dst, m.Type)
	switch m.Type {
	case TypeAdvertise:
		dst = append(dst, m.GwID, byte(m.Duration>>8), byte(m.Duration))
	case TypeSearchGW:
		dst = append(dst, m.Radius)
	case TypeGWInfo:
		dst = append(append(dst, m.GwID), m.Data...)
	case TypeConnect:
		dst = append(dst, m.Flags, m.ProtocolID, byte(m.Duration>>8), byte(m.Duration))
		dst = append(dst, m.ClientID...)
	case TypeConnack, TypeWillTopicResp, TypeWillMsgResp:
		dst = append(dst, m.ReturnCode)
	case TypeWillTopic, TypeWillTopicUpd:
		if !m.NoFlags {
			dst = append(append(dst, m.Flags), m.TopicName...)
		}
	case TypeWillMsg, TypeWillMsgUpd:
		dst = append(dst, m.Data...)
	case TypeRegister:
		dst = append(dst, byte(m.TopicID>>8), byte(m.TopicID), byte(m.MsgID>>8), byte(m.MsgID))
		dst = append(dst, m.TopicName...)
	case TypeRegack, TypePuback:
		dst = append(dst, byte(m.TopicID>>8), byte(m.TopicID), byte(m.MsgID>>8), byte(m.MsgID), m.ReturnCode)
	case TypePublish:
		dst = append(dst, m.Flags, byte(m.TopicID>>8), byte(m.TopicID), byte(m.MsgID>>8), byte(m.MsgID))
		dst = append(dst, m.Data...)
	case TypePubcomp, TypePubrec, TypePubrel, TypeUnsuback:
		dst = append(dst, byte(m.MsgID>>8), byte(m.MsgID))
	case TypeSubscribe, TypeUnsubscribe:
		dst = append(dst, m.Flags, byte(m.MsgID>>8), byte(m.MsgID))
		switch m.TopicIDType() {
		case TopicPredefined, TopicShort:
			dst = append(dst, byte(m.TopicID>>8), byte(m.TopicID))
		default:
			dst = append(dst, m.TopicName...)
		}
	case TypeSuback:
		dst = append(dst, m.Flags, byte(m.TopicID>>8), byte(m.TopicID), byte(m.MsgID>>8), byte(m.MsgID), m.ReturnCode)
	case TypePingreq:
		dst = append(dst, m.ClientID...)
	case TypeDisconnect:
		if m.HasDuration {
			dst = append(dst, byte(m.Duration>>8), byte(m.Duration))
		}
	}
	return dst, nil
}

// Encapsulated reports whether b starts a forwarder-encapsulated message.
func Encapsulated(b []byte) bool { return len(b) >= 2 && b[0] != 0x01 && b[1] == TypeEncapsulated }

// Unwrap splits a forwarder-encapsulated message (§5.5): the Ctrl octet,
// the Wireless Node Id and the MQTT-SN message it carries, which must fill
// the rest of b. node and inner alias b.
func Unwrap(b []byte) (ctrl byte, node, inner []byte, err error) {
	if len(b) < 2 {
		return 0, nil, nil, ErrShort
	}
	if b[1] != TypeEncapsulated || b[0] == 0x01 {
		return 0, nil, nil, fmt.Errorf("%w: not an encapsulated message", ErrMalformed)
	}
	n := int(b[0])
	if n < 4 {
		return 0, nil, nil, fmt.Errorf("%w: encapsulation length %d leaves no node id", ErrLength, n)
	}
	if n > len(b) {
		return 0, nil, nil, fmt.Errorf("%w: encapsulation length %d, have %d", ErrShort, n, len(b))
	}
	ctrl, node, inner = b[2], b[3:n], b[n:]
	if len(inner) < 2 {
		return 0, nil, nil, fmt.Errorf("%w: encapsulation carries no message", ErrShort)
	}
	if Encapsulated(inner) {
		return 0, nil, nil, fmt.Errorf("%w: nested encapsulation", ErrMalformed)
	}
	return ctrl, node, inner, nil
}

// AppendEncapsulated wraps the encoded message msg for the forwarder that
// serves node, after dst.
func AppendEncapsulated(dst []byte, ctrl byte, node, msg []byte) ([]byte, error) {
	if len(node) == 0 || len(node) > MaxNodeIDLen {
		return dst, fmt.Errorf("%w: wireless node id of %d octets (want 1..%d)", ErrMalformed, len(node), MaxNodeIDLen)
	}
	dst = append(dst, byte(3+len(node)), TypeEncapsulated, ctrl)
	dst = append(dst, node...)
	return append(dst, msg...), nil
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
