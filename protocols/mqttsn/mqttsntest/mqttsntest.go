// Package mqttsntest is an MQTT-SN device for tests and load generators,
// and an observer standing in for the cloud on the local broker.
//
// The device encodes and decodes with its own few lines per message type,
// written from the MQTT-SN 1.2 specification and independent of package
// mqttsn's codec, so that a codec bug cannot cancel itself out in a test
// that uses both ends.
package mqttsntest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/broker"
)

// Message types, flags and return codes, as the specification numbers them.
const (
	ADVERTISE     = 0x00
	SEARCHGW      = 0x01
	GWINFO        = 0x02
	CONNECT       = 0x04
	CONNACK       = 0x05
	WILLTOPICREQ  = 0x06
	WILLTOPIC     = 0x07
	WILLMSGREQ    = 0x08
	WILLMSG       = 0x09
	REGISTER      = 0x0A
	REGACK        = 0x0B
	PUBLISH       = 0x0C
	PUBACK        = 0x0D
	PUBCOMP       = 0x0E
	PUBREC        = 0x0F
	PUBREL        = 0x10
	SUBSCRIBE     = 0x12
	SUBACK        = 0x13
	UNSUBSCRIBE   = 0x14
	UNSUBACK      = 0x15
	PINGREQ       = 0x16
	PINGRESP      = 0x17
	DISCONNECT    = 0x18
	WILLTOPICUPD  = 0x1A
	WILLTOPICRESP = 0x1B
	WILLMSGUPD    = 0x1C
	WILLMSGRESP   = 0x1D

	Dup        = 0x80
	QoS0       = 0x00
	QoS1       = 0x20
	QoS2       = 0x40
	QoSMinus1  = 0x60
	Retain     = 0x10
	Will       = 0x08
	Clean      = 0x04
	Normal     = 0x00
	Predefined = 0x01
	ShortTopic = 0x02
)

// Frame builds one message: length header (1 octet, or 0x01 and 2 octets
// above 255), type, then the fields in order.
func Frame(typ byte, fields ...[]byte) []byte {
	n := 2
	for _, f := range fields {
		n += len(f)
	}
	var b []byte
	if n <= 255 {
		b = append(b, byte(n))
	} else {
		n += 2
		b = append(b, 0x01, byte(n>>8), byte(n))
	}
	b = append(b, typ)
	for _, f := range fields {
		b = append(b, f...)
	}
	return b
}

// U16 is a big-endian 16-bit field.
func U16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

// B is a one-octet field.
func B(v byte) []byte { return []byte{v} }

// ConnectMsg is CONNECT (protocol id 1).
func ConnectMsg(clientID string, flags byte, keepalive uint16) []byte {
	return Frame(CONNECT, B(flags), B(0x01), U16(keepalive), []byte(clientID))
}

// WillTopicMsg is WILLTOPIC.
func WillTopicMsg(flags byte, topic string) []byte { return Frame(WILLTOPIC, B(flags), []byte(topic)) }

// WillMsgMsg is WILLMSG.
func WillMsgMsg(msg string) []byte { return Frame(WILLMSG, []byte(msg)) }

// RegisterMsg is REGISTER from a client (topic id 0).
func RegisterMsg(msgID uint16, topic string) []byte {
	return Frame(REGISTER, U16(0), U16(msgID), []byte(topic))
}

// RegackMsg is REGACK.
func RegackMsg(topicID, msgID uint16, rc byte) []byte {
	return Frame(REGACK, U16(topicID), U16(msgID), B(rc))
}

// PublishMsg is PUBLISH.
func PublishMsg(flags byte, topicID, msgID uint16, payload []byte) []byte {
	return Frame(PUBLISH, B(flags), U16(topicID), U16(msgID), payload)
}

// PubackMsg is PUBACK.
func PubackMsg(topicID, msgID uint16, rc byte) []byte {
	return Frame(PUBACK, U16(topicID), U16(msgID), B(rc))
}

// PubrecMsg is PUBREC.
func PubrecMsg(msgID uint16) []byte { return Frame(PUBREC, U16(msgID)) }

// PubrelMsg is PUBREL.
func PubrelMsg(msgID uint16) []byte { return Frame(PUBREL, U16(msgID)) }

// PubcompMsg is PUBCOMP.
func PubcompMsg(msgID uint16) []byte { return Frame(PUBCOMP, U16(msgID)) }

// SubscribeMsg is SUBSCRIBE to a topic name or filter.
func SubscribeMsg(flags byte, msgID uint16, topic string) []byte {
	return Frame(SUBSCRIBE, B(flags), U16(msgID), []byte(topic))
}

// SubscribeIDMsg is SUBSCRIBE to a predefined or short topic id.
func SubscribeIDMsg(flags byte, msgID, topicID uint16) []byte {
	return Frame(SUBSCRIBE, B(flags), U16(msgID), U16(topicID))
}

// UnsubscribeMsg is UNSUBSCRIBE from a topic name or filter.
func UnsubscribeMsg(flags byte, msgID uint16, topic string) []byte {
	return Frame(UNSUBSCRIBE, B(flags), U16(msgID), []byte(topic))
}

// PingreqMsg is PINGREQ, with a clientid unless it is empty.
func PingreqMsg(clientID string) []byte { return Frame(PINGREQ, []byte(clientID)) }

// DisconnectMsg is DISCONNECT without a duration.
func DisconnectMsg() []byte { return Frame(DISCONNECT) }

// SleepMsg is DISCONNECT with a sleep duration.
func SleepMsg(seconds uint16) []byte { return Frame(DISCONNECT, U16(seconds)) }

// SearchGWMsg is SEARCHGW.
func SearchGWMsg(radius byte) []byte { return Frame(SEARCHGW, B(radius)) }

// WillTopicUpdMsg is WILLTOPICUPD; an empty topic deletes the will.
func WillTopicUpdMsg(flags byte, topic string) []byte {
	if topic == "" {
		return Frame(WILLTOPICUPD)
	}
	return Frame(WILLTOPICUPD, B(flags), []byte(topic))
}

// WillMsgUpdMsg is WILLMSGUPD.
func WillMsgUpdMsg(msg string) []byte { return Frame(WILLMSGUPD, []byte(msg)) }

// Encapsulate wraps msg as a forwarder does for the node nodeID.
func Encapsulate(nodeID []byte, msg []byte) []byte {
	return append(append([]byte{byte(3 + len(nodeID)), 0xFE, 0x00}, nodeID...), msg...)
}

// Short returns the topic id field carrying a two-character topic name.
func Short(name string) uint16 { return binary.BigEndian.Uint16([]byte(name)) }

// Packet is one decoded message: its type and the octets after it.
type Packet struct {
	Type byte
	Body []byte
	// Node is the Wireless Node Id of an encapsulated message, else nil.
	Node []byte
}

// Parse decodes the header of one message (possibly encapsulated).
func Parse(b []byte) (Packet, error) {
	var p Packet
	if len(b) >= 3 && b[1] == 0xFE {
		h := int(b[0])
		if h < 4 || h > len(b) {
			return p, fmt.Errorf("bad encapsulation % x", b)
		}
		p.Node = append([]byte(nil), b[3:h]...)
		b = b[h:]
	}
	if len(b) < 2 {
		return p, fmt.Errorf("short message % x", b)
	}
	n, h := int(b[0]), 1
	if b[0] == 0x01 {
		if len(b) < 4 {
			return p, fmt.Errorf("short message % x", b)
		}
		n, h = int(binary.BigEndian.Uint16(b[1:3])), 3
	}
	if n != len(b) {
		return p, fmt.Errorf("length %d but %d octets: % x", n, len(b), b)
	}
	p.Type = b[h]
	p.Body = append([]byte(nil), b[h+1:]...)
	return p, nil
}

func (p Packet) u16(i int) uint16 {
	if len(p.Body) < i+2 {
		return 0
	}
	return binary.BigEndian.Uint16(p.Body[i:])
}

// Flags of PUBLISH, SUBACK, WILLTOPIC…: the first body octet.
func (p Packet) Flags() byte {
	if len(p.Body) == 0 {
		return 0
	}
	return p.Body[0]
}

// TopicID of PUBLISH, SUBACK, REGISTER, REGACK, PUBACK.
func (p Packet) TopicID() uint16 {
	switch p.Type {
	case PUBLISH, SUBACK:
		return p.u16(1)
	}
	return p.u16(0)
}

// MsgID of any message that has one.
func (p Packet) MsgID() uint16 {
	switch p.Type {
	case PUBLISH, SUBACK:
		return p.u16(3)
	case REGISTER, REGACK, PUBACK:
		return p.u16(2)
	}
	return p.u16(0)
}

// RC is the return code of CONNACK, REGACK, PUBACK, SUBACK, WILL…RESP.
func (p Packet) RC() byte {
	if len(p.Body) == 0 {
		return 0xFF
	}
	return p.Body[len(p.Body)-1]
}

// Payload of PUBLISH.
func (p Packet) Payload() []byte {
	if p.Type != PUBLISH || len(p.Body) < 5 {
		return nil
	}
	return p.Body[5:]
}

// TopicName of REGISTER.
func (p Packet) TopicName() string {
	if p.Type != REGISTER || len(p.Body) < 4 {
		return ""
	}
	return string(p.Body[4:])
}

// QoS of a PUBLISH or SUBACK: 0, 1, 2 or -1.
func (p Packet) QoS() int {
	q := int(p.Flags()>>5) & 3
	if q == 3 {
		return -1
	}
	return q
}

func (p Packet) String() string {
	return fmt.Sprintf("type 0x%02x body % x", p.Type, p.Body)
}

// Device is an MQTT-SN device on a datagram connection.
type Device struct {
	tb testing.TB
	// Timeout bounds every receive (default 10s, generous for loaded CI).
	Timeout time.Duration
	// Node, when set, wraps every message sent in forwarder encapsulation.
	Node []byte

	mu   sync.Mutex
	conn net.Conn
	gw   *net.UDPAddr // for NewPort; nil when not plain UDP
}

// DialUDP opens a device on a new local UDP port talking to addr.
func DialUDP(tb testing.TB, addr string) *Device {
	tb.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	d := &Device{tb: tb, Timeout: 10 * time.Second, gw: ua}
	d.conn = d.dial()
	tb.Cleanup(func() { d.Conn().Close() })
	return d
}

// NewDevice runs a device over an established datagram conn (DTLS).
func NewDevice(tb testing.TB, c net.Conn) *Device {
	return &Device{tb: tb, Timeout: 10 * time.Second, conn: c}
}

func (d *Device) dial() net.Conn {
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, d.gw)
	if err != nil {
		d.tb.Fatal(err)
	}
	return c
}

// Conn is the device's current connection.
func (d *Device) Conn() net.Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn
}

// NewPort moves the device to a new source port, as a NAT rebinding
// does; the old socket is closed.
func (d *Device) NewPort() {
	d.tb.Helper()
	if d.gw == nil {
		d.tb.Fatal("NewPort needs a UDP device")
	}
	c := d.dial()
	d.mu.Lock()
	old := d.conn
	d.conn = c
	d.mu.Unlock()
	old.Close()
}

// LocalAddr is the device's source address.
func (d *Device) LocalAddr() string { return d.Conn().LocalAddr().String() }

// Send writes one message.
func (d *Device) Send(msg []byte) {
	d.tb.Helper()
	if d.Node != nil {
		msg = Encapsulate(d.Node, msg)
	}
	if _, err := d.Conn().Write(msg); err != nil {
		d.tb.Fatalf("send: %v", err)
	}
}

// Recv reads one message; it fails the test after Timeout.
func (d *Device) Recv() Packet {
	d.tb.Helper()
	p, err := d.TryRecv(d.Timeout)
	if err != nil {
		d.tb.Fatalf("recv: %v", err)
	}
	return p
}

// TryRecv reads one message within wait.
func (d *Device) TryRecv(wait time.Duration) (Packet, error) {
	c := d.Conn()
	buf := make([]byte, 65536)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	n, err := c.Read(buf)
	if err != nil {
		return Packet{}, err
	}
	return Parse(buf[:n])
}

// Expect reads one message and fails unless it has type typ.
func (d *Device) Expect(typ byte) Packet {
	d.tb.Helper()
	p := d.Recv()
	if p.Type != typ {
		d.tb.Fatalf("got %s, want type 0x%02x", p, typ)
	}
	return p
}

// Connect sends CONNECT and expects CONNACK accepted.
func (d *Device) Connect(clientID string, clean bool, keepalive uint16) {
	d.tb.Helper()
	flags := byte(0)
	if clean {
		flags = Clean
	}
	d.Send(ConnectMsg(clientID, flags, keepalive))
	if p := d.Expect(CONNACK); p.RC() != 0 {
		d.tb.Fatalf("CONNACK rc 0x%02x", p.RC())
	}
}

// Register registers topic and returns its id.
func (d *Device) Register(msgID uint16, topic string) uint16 {
	d.tb.Helper()
	d.Send(RegisterMsg(msgID, topic))
	p := d.Expect(REGACK)
	if p.RC() != 0 || p.MsgID() != msgID {
		d.tb.Fatalf("REGACK %s", p)
	}
	return p.TopicID()
}

// Subscribe subscribes to a topic name or filter and returns the SUBACK.
func (d *Device) Subscribe(qos byte, msgID uint16, topic string) Packet {
	d.tb.Helper()
	d.Send(SubscribeMsg(qos, msgID, topic))
	p := d.Expect(SUBACK)
	if p.MsgID() != msgID {
		d.tb.Fatalf("SUBACK %s for msg id %d", p, msgID)
	}
	return p
}

// Cloud is a session on the local broker standing in for the cloud: it
// records what devices publish and publishes what the cloud would send.
type Cloud struct {
	tb   testing.TB
	b    *broker.Broker
	s    *broker.Session
	ch   chan *broker.Message
	once sync.Once
	// Timeout bounds Next (default 10s).
	Timeout time.Duration
}

var cloudSeq struct {
	sync.Mutex
	n int
}

// NewCloud subscribes a fresh session to filters at QoS 2.
func NewCloud(tb testing.TB, b *broker.Broker, filters ...string) *Cloud {
	tb.Helper()
	cloudSeq.Lock()
	cloudSeq.n++
	id := fmt.Sprintf("test-cloud/%d", cloudSeq.n)
	cloudSeq.Unlock()
	c := &Cloud{tb: tb, b: b, ch: make(chan *broker.Message, 100000), Timeout: 10 * time.Second}
	c.s, _ = b.OpenSession(id, cloudDeliverer{c}, true, broker.SessionOptions{MaxQueueLen: 1 << 20, MaxInflight: 65535})
	for _, f := range filters {
		if _, err := c.s.Subscribe(f, 2); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(func() { c.s.Close() })
	return c
}

type cloudDeliverer struct{ c *Cloud }

func (d cloudDeliverer) Deliver(bd broker.Delivery) {
	d.c.ch <- bd.Msg
	if bd.ID != 0 {
		d.c.s.Ack(bd.ID)
	}
}

// Next returns the next message a device published.
func (c *Cloud) Next() *broker.Message {
	c.tb.Helper()
	select {
	case m := <-c.ch:
		return m
	case <-time.After(c.Timeout):
		c.tb.Fatal("cloud: nothing arrived")
		return nil
	}
}

// Expect reads the next message and checks its topic and payload.
func (c *Cloud) Expect(topic, payload string) *broker.Message {
	c.tb.Helper()
	m := c.Next()
	if m.Topic != topic || string(m.Payload) != payload {
		c.tb.Fatalf("cloud got %q %q, want %q %q", m.Topic, m.Payload, topic, payload)
	}
	return m
}

// Pending is how many messages arrived and were not read yet.
func (c *Cloud) Pending() int { return len(c.ch) }

// Publish sends a message from the cloud side.
func (c *Cloud) Publish(topic, payload string, qos byte, retain bool) {
	c.tb.Helper()
	if _, err := c.b.Publish(&broker.Message{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain}); err != nil {
		c.tb.Fatal(err)
	}
}

// SLIPFrame frames msg for node as a firmware would: END, escaped node,
// message and CRC-16/CCITT-FALSE (high octet first), END.
func SLIPFrame(node byte, msg []byte) []byte {
	raw := append([]byte{node}, msg...)
	crc := uint16(0xFFFF)
	for _, c := range raw {
		crc ^= uint16(c) << 8
		for i := 0; i < 8; i++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	raw = append(raw, byte(crc>>8), byte(crc))
	out := []byte{0xC0}
	for _, c := range raw {
		switch c {
		case 0xC0:
			out = append(out, 0xDB, 0xDC)
		case 0xDB:
			out = append(out, 0xDB, 0xDD)
		default:
			out = append(out, c)
		}
	}
	return append(out, 0xC0)
}

// ErrBadFrame is a received SLIP frame with a bad CRC or escape.
var ErrBadFrame = errors.New("mqttsntest: bad slip frame")

// SLIPDecoder splits a byte stream from the gateway into frames.
type SLIPDecoder struct {
	buf []byte
	esc bool
}

// Feed consumes b and returns the (node, message) of each complete frame.
func (s *SLIPDecoder) Feed(b []byte) (nodes []byte, msgs [][]byte, err error) {
	for _, c := range b {
		switch {
		case c == 0xC0:
			f := s.buf
			s.buf = nil
			if len(f) == 0 {
				continue
			}
			if len(f) < 5 {
				err = ErrBadFrame
				continue
			}
			crc := uint16(0xFFFF)
			for _, x := range f[:len(f)-2] {
				crc ^= uint16(x) << 8
				for i := 0; i < 8; i++ {
					if crc&0x8000 != 0 {
						crc = crc<<1 ^ 0x1021
					} else {
						crc <<= 1
					}
				}
			}
			if crc != binary.BigEndian.Uint16(f[len(f)-2:]) {
				err = ErrBadFrame
				continue
			}
			nodes = append(nodes, f[0])
			msgs = append(msgs, f[1:len(f)-2])
		case s.esc:
			s.esc = false
			switch c {
			case 0xDC:
				s.buf = append(s.buf, 0xC0)
			case 0xDD:
				s.buf = append(s.buf, 0xDB)
			default:
				err = ErrBadFrame
			}
		case c == 0xDB:
			s.esc = true
		default:
			s.buf = append(s.buf, c)
		}
	}
	return nodes, msgs, err
}

// Hex writes b as hex for failure messages.
func Hex(b []byte) string {
	var s strings.Builder
	for i, c := range b {
		if i > 0 {
			s.WriteByte(' ')
		}
		fmt.Fprintf(&s, "%02x", c)
	}
	return s.String()
}
