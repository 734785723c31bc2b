package stomp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Version is a STOMP protocol version.
type Version uint8

// The versions edgeway speaks.
const (
	V10 Version = iota + 1
	V11
	V12
)

// String returns "1.0", "1.1" or "1.2".
func (v Version) String() string {
	switch v {
	case V10:
		return "1.0"
	case V11:
		return "1.1"
	case V12:
		return "1.2"
	}
	return "unknown"
}

// supportedVersions is what an ERROR frame lists when negotiation fails.
const supportedVersions = "1.0,1.1,1.2"

// Frame commands, client and server.
const (
	CmdConnect     = "CONNECT"
	CmdStomp       = "STOMP"
	CmdSend        = "SEND"
	CmdSubscribe   = "SUBSCRIBE"
	CmdUnsubscribe = "UNSUBSCRIBE"
	CmdAck         = "ACK"
	CmdNack        = "NACK"
	CmdBegin       = "BEGIN"
	CmdCommit      = "COMMIT"
	CmdAbort       = "ABORT"
	CmdDisconnect  = "DISCONNECT"
	CmdConnected   = "CONNECTED"
	CmdMessage     = "MESSAGE"
	CmdReceipt     = "RECEIPT"
	CmdError       = "ERROR"
)

// Header names the gateway reads or writes.
const (
	hdrAcceptVersion = "accept-version"
	hdrAck           = "ack"
	hdrContentLength = "content-length"
	hdrContentType   = "content-type"
	hdrDestination   = "destination"
	hdrHeartBeat     = "heart-beat"
	hdrHost          = "host"
	hdrID            = "id"
	hdrLogin         = "login"
	hdrMessage       = "message"
	hdrMessageID     = "message-id"
	hdrPasscode      = "passcode"
	hdrQoS           = "qos"
	hdrReceipt       = "receipt"
	hdrReceiptID     = "receipt-id"
	hdrRedelivered   = "redelivered"
	hdrServer        = "server"
	hdrSession       = "session"
	hdrSubscription  = "subscription"
	hdrTransaction   = "transaction"
	hdrVersion       = "version"
)

// Header is one header line. A frame keeps repeated headers in order;
// the first occurrence is the one that counts.
type Header struct {
	Key, Value string
}

// Frame is one STOMP frame. A nil *Frame stands for a heart-beat EOL.
type Frame struct {
	Command string
	Headers []Header
	Body    []byte
}

// Lookup returns the first value of key.
func (f *Frame) Lookup(key string) (string, bool) {
	for _, h := range f.Headers {
		if h.Key == key {
			return h.Value, true
		}
	}
	return "", false
}

// Get returns the first value of key, or "".
func (f *Frame) Get(key string) string {
	v, _ := f.Lookup(key)
	return v
}

// Add appends a header.
func (f *Frame) Add(key, value string) { f.Headers = append(f.Headers, Header{key, value}) }

// Clone returns a deep copy that does not share the Reader's buffers.
func (f *Frame) Clone() *Frame {
	return &Frame{Command: f.Command, Headers: append([]Header(nil), f.Headers...), Body: f.Body}
}

// Limits bound what a Reader accepts. They are checked while reading, so
// a hostile peer never makes the Reader hold more than about
// MaxHeaderLength + MaxBodyLength bytes.
type Limits struct {
	// MaxHeaders is the number of header lines a frame may carry.
	MaxHeaders int
	// MaxHeaderLength bounds one header line (name, colon and value as
	// sent, escapes included, EOL excluded).
	MaxHeaderLength int
	// MaxBodyLength bounds the body, with or without content-length.
	MaxBodyLength int
}

// DefaultLimits are EMQX's frame defaults.
var DefaultLimits = Limits{MaxHeaders: 10, MaxHeaderLength: 1024, MaxBodyLength: 65536}

// Errors of the Reader. A frame error is fatal for the connection: the
// stream cannot be resynchronised, so the channel sends ERROR and closes.
var (
	ErrTooManyHeaders = errors.New("stomp: too many headers")
	ErrHeaderTooLong  = errors.New("stomp: header too long")
	ErrBodyTooLong    = errors.New("stomp: body too long")
	ErrMalformed      = errors.New("stomp: malformed frame")
	ErrUnknownCommand = errors.New("stomp: unknown command")
	ErrBadEscape      = errors.New("stomp: undefined escape sequence")
)

// maxCommandLine bounds the command line ("UNSUBSCRIBE" is the longest).
const maxCommandLine = 32

// Reader parses STOMP frames from a byte stream: frames split across
// reads and several frames in one read are both handled by the buffered
// reader underneath.
type Reader struct {
	br   *bufio.Reader
	lim  Limits
	ver  Version // escaping rules for frames other than CONNECT/CONNECTED; 0: none
	f    Frame   // reused by Read
	line []byte  // assembles lines longer than the bufio buffer
}

// NewReader reads frames from r through a buffer of bufSize bytes (lines
// longer than that are assembled, up to the limits). Zero limits take
// DefaultLimits' values.
func NewReader(r io.Reader, bufSize int, lim Limits) *Reader {
	if lim.MaxHeaders <= 0 {
		lim.MaxHeaders = DefaultLimits.MaxHeaders
	}
	if lim.MaxHeaderLength <= 0 {
		lim.MaxHeaderLength = DefaultLimits.MaxHeaderLength
	}
	if lim.MaxBodyLength <= 0 {
		lim.MaxBodyLength = DefaultLimits.MaxBodyLength
	}
	return &Reader{br: bufio.NewReaderSize(r, bufSize), lim: lim}
}

// SetVersion sets the header escaping of frames that follow: none for
// 1.0 (and before CONNECTED), \n \c \\ for 1.1, and also \r for 1.2.
// CONNECT and STOMP frames are never unescaped, as the spec says.
func (r *Reader) SetVersion(v Version) { r.ver = v }

// Read returns the next frame, or nil for a heart-beat EOL. The frame and
// its header slice are reused by the next Read (Clone to keep them); its
// Body and strings are fresh and may be kept. At the clean end of the
// stream it returns io.EOF; in the middle of a frame io.ErrUnexpectedEOF.
func (r *Reader) Read() (*Frame, error) {
	line, err := r.readLine(maxCommandLine, ErrUnknownCommand)
	if err != nil {
		return nil, err
	}
	if len(line) == 0 {
		return nil, nil
	}
	cmd := command(line)
	if cmd == "" {
		return nil, fmt.Errorf("%w %q", ErrUnknownCommand, line)
	}
	f := &r.f
	clear(f.Headers)
	f.Command, f.Headers, f.Body = cmd, f.Headers[:0], nil
	esc := r.ver
	if cmd == CmdConnect || cmd == CmdStomp || cmd == CmdConnected {
		esc = 0
	}
	clen := -1
	for {
		line, err := r.readLine(r.lim.MaxHeaderLength, ErrHeaderTooLong)
		if err != nil {
			return nil, unexpected(err)
		}
		if len(line) == 0 {
			break
		}
		if len(f.Headers) >= r.lim.MaxHeaders {
			return nil, ErrTooManyHeaders
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			return nil, fmt.Errorf("%w: header line without a name and colon", ErrMalformed)
		}
		key, err := unescape(line[:i], esc, true)
		if err != nil {
			return nil, err
		}
		val, err := unescape(line[i+1:], esc, false)
		if err != nil {
			return nil, err
		}
		f.Headers = append(f.Headers, Header{key, val})
		if key == hdrContentLength && clen < 0 {
			if clen, err = parseContentLength(val, r.lim.MaxBodyLength); err != nil {
				return nil, err
			}
		}
	}
	if clen >= 0 {
		f.Body, err = r.readSized(clen)
	} else {
		f.Body, err = r.readToNUL()
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func parseContentLength(v string, max int) (int, error) {
	if v == "" || len(v) > 12 {
		return 0, fmt.Errorf("%w: bad content-length %q", ErrMalformed, v)
	}
	n := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: bad content-length %q", ErrMalformed, v)
		}
		n = n*10 + int(c-'0')
	}
	if n > max {
		return 0, fmt.Errorf("%w: content-length %d exceeds %d", ErrBodyTooLong, n, max)
	}
	return n, nil
}

// readLine returns one line without its LF or CRLF, valid until the next
// read. A line longer than limit fails with tooLong as soon as that is
// known, without buffering the rest of it.
func (r *Reader) readLine(limit int, tooLong error) ([]byte, error) {
	r.line = r.line[:0]
	for {
		chunk, err := r.br.ReadSlice('\n')
		switch err {
		case nil:
		case bufio.ErrBufferFull:
			if len(r.line)+len(chunk) > limit+1 { // +1: a CR may still precede the LF
				return nil, tooLong
			}
			r.line = append(r.line, chunk...)
			continue
		case io.EOF:
			if len(chunk) == 0 && len(r.line) == 0 {
				return nil, io.EOF
			}
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
		line := chunk
		if len(r.line) > 0 {
			r.line = append(r.line, chunk...)
			line = r.line
		}
		line = line[:len(line)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) > limit {
			return nil, tooLong
		}
		return line, nil
	}
}

// readSized reads a content-length body and its NUL. The buffer grows as
// bytes arrive, so announcing a large body costs nothing until it is sent.
func (r *Reader) readSized(n int) ([]byte, error) {
	var body []byte
	if n > 0 {
		body = make([]byte, 0, min(n, 4096))
		for len(body) < n {
			if len(body) == cap(body) {
				nb := make([]byte, len(body), min(n, 2*cap(body)))
				copy(nb, body)
				body = nb
			}
			k, err := r.br.Read(body[len(body):min(cap(body), n)])
			body = body[:len(body)+k]
			if err != nil && len(body) < n {
				return nil, unexpected(err)
			}
		}
	}
	c, err := r.br.ReadByte()
	if err != nil {
		return nil, unexpected(err)
	}
	if c != 0 {
		return nil, fmt.Errorf("%w: no NUL after a content-length body", ErrMalformed)
	}
	return body, nil
}

// readToNUL reads a body that ends at the first NUL.
func (r *Reader) readToNUL() ([]byte, error) {
	var body []byte
	for {
		chunk, err := r.br.ReadSlice(0)
		switch err {
		case nil:
			if len(body)+len(chunk)-1 > r.lim.MaxBodyLength {
				return nil, ErrBodyTooLong
			}
			if len(body) == 0 {
				if len(chunk) == 1 {
					return nil, nil
				}
				return append([]byte(nil), chunk[:len(chunk)-1]...), nil
			}
			body = append(body, chunk...)
			return body[:len(body)-1], nil
		case bufio.ErrBufferFull:
			if len(body)+len(chunk) > r.lim.MaxBodyLength {
				return nil, ErrBodyTooLong
			}
			body = append(body, chunk...)
		default:
			return nil, unexpected(err)
		}
	}
}

// command interns the known commands; "" for anything else.
func command(b []byte) string {
	switch string(b) {
	case CmdConnect:
		return CmdConnect
	case CmdStomp:
		return CmdStomp
	case CmdSend:
		return CmdSend
	case CmdSubscribe:
		return CmdSubscribe
	case CmdUnsubscribe:
		return CmdUnsubscribe
	case CmdAck:
		return CmdAck
	case CmdNack:
		return CmdNack
	case CmdBegin:
		return CmdBegin
	case CmdCommit:
		return CmdCommit
	case CmdAbort:
		return CmdAbort
	case CmdDisconnect:
		return CmdDisconnect
	case CmdConnected:
		return CmdConnected
	case CmdMessage:
		return CmdMessage
	case CmdReceipt:
		return CmdReceipt
	case CmdError:
		return CmdError
	}
	return ""
}

// internKey avoids allocating the header names every frame carries.
func internKey(b []byte) (string, bool) {
	switch string(b) {
	case hdrDestination:
		return hdrDestination, true
	case hdrContentLength:
		return hdrContentLength, true
	case hdrContentType:
		return hdrContentType, true
	case hdrReceipt:
		return hdrReceipt, true
	case hdrID:
		return hdrID, true
	case hdrAck:
		return hdrAck, true
	case hdrTransaction:
		return hdrTransaction, true
	case hdrSubscription:
		return hdrSubscription, true
	case hdrMessageID:
		return hdrMessageID, true
	case hdrQoS:
		return hdrQoS, true
	case hdrLogin:
		return hdrLogin, true
	case hdrPasscode:
		return hdrPasscode, true
	case hdrHost:
		return hdrHost, true
	case hdrAcceptVersion:
		return hdrAcceptVersion, true
	case hdrHeartBeat:
		return hdrHeartBeat, true
	}
	return "", false
}

// unescape decodes a header name or value under version v's rules (none
// for v == 0 or 1.0).
func unescape(b []byte, v Version, key bool) (string, error) {
	if key {
		if s, ok := internKey(b); ok {
			return s, nil
		}
	}
	if v < V11 || bytes.IndexByte(b, '\\') < 0 {
		return string(b), nil
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i == len(b) {
			return "", fmt.Errorf("%w: trailing backslash", ErrBadEscape)
		}
		switch b[i] {
		case 'n':
			out = append(out, '\n')
		case 'c':
			out = append(out, ':')
		case '\\':
			out = append(out, '\\')
		case 'r':
			if v < V12 {
				return "", fmt.Errorf("%w \\r (STOMP 1.1)", ErrBadEscape)
			}
			out = append(out, '\r')
		default:
			return "", fmt.Errorf("%w \\%c", ErrBadEscape, b[i])
		}
	}
	return string(out), nil
}

// AppendFrame appends f's wire form under version v's escaping (none for
// 0 or 1.0; CONNECT, STOMP and CONNECTED are never escaped) and returns
// the extended buffer. It adds no header: a frame whose body may hold a
// NUL needs a content-length header from the caller. Under 1.0 a header
// holding a line break cannot be represented; see representable.
func AppendFrame(dst []byte, f *Frame, v Version) []byte {
	if f == nil {
		return append(dst, '\n')
	}
	if f.Command == CmdConnect || f.Command == CmdStomp || f.Command == CmdConnected {
		v = 0
	}
	dst = append(dst, f.Command...)
	dst = append(dst, '\n')
	for _, h := range f.Headers {
		dst = appendEscaped(dst, h.Key, v)
		dst = append(dst, ':')
		dst = appendEscaped(dst, h.Value, v)
		dst = append(dst, '\n')
	}
	dst = append(dst, '\n')
	dst = append(dst, f.Body...)
	return append(dst, 0)
}

func appendEscaped(dst []byte, s string, v Version) []byte {
	if v < V11 {
		return append(dst, s...)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\n':
			dst = append(dst, '\\', 'n')
		case ':':
			dst = append(dst, '\\', 'c')
		case '\r':
			if v >= V12 {
				dst = append(dst, '\\', 'r')
			} else {
				dst = append(dst, c)
			}
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// representable reports whether a header survives v's encoding intact:
// 1.0 has no escapes, so names must not hold a colon and nothing may hold
// a line break.
func representable(h Header, v Version) bool {
	if v >= V11 {
		return true
	}
	return !strings.ContainsAny(h.Key, ":\r\n") && !strings.ContainsAny(h.Value, "\r\n")
}

// appendUint is strconv.AppendUint for header values.
func appendUint(dst []byte, n uint64) []byte { return strconv.AppendUint(dst, n, 10) }
