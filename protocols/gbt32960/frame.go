package gbt32960

import (
	"errors"
	"fmt"
	"io"
)

// Commands (GB/T 32960.3-2016 table 5; 2025 keeps them).
const (
	CmdVehicleLogin   = 0x01
	CmdRealtime       = 0x02
	CmdReissue        = 0x03
	CmdVehicleLogout  = 0x04
	CmdPlatformLogin  = 0x05
	CmdPlatformLogout = 0x06
	CmdHeartbeat      = 0x07
	CmdTimeCalibrate  = 0x08
	CmdParamQuery     = 0x80
	CmdParamSetting   = 0x81
	CmdTerminalCtrl   = 0x82
)

// Response flags.
const (
	AckSuccess   = 0x01
	AckError     = 0x02
	AckVINRepeat = 0x03
	AckCommand   = 0xFE
)

// EncryptNone is the encryption flag of a clear data unit.
const EncryptNone = 0x01

// Editions, told apart by the start bytes.
const (
	Edition2016 = 2016 // "##"
	Edition2025 = 2025 // "$$"
)

// Layout: start(2) cmd(1) ack(1) vin(17) encrypt(1) length(2) data(length) bcc(1).
const (
	headerLen = 24
	vinLen    = 17
	// MaxDataLength is what the 16-bit length field can say.
	MaxDataLength = 0xFFFF
)

// Errors a caller may branch on.
var (
	ErrChecksum = errors.New("gbt32960: bad BCC checksum")
	ErrTooLarge = errors.New("gbt32960: frame too large")
)

// Frame is one GB/T 32960 packet. Data aliases the Reader's buffer until
// the next Next call.
type Frame struct {
	Edition int
	Cmd     byte
	Ack     byte
	VIN     string
	Encrypt byte
	Data    []byte
}

// bcc is the XOR of b (the checksum covers cmd through the data unit).
func bcc(b []byte) byte {
	var x byte
	for _, c := range b {
		x ^= c
	}
	return x
}

// AppendFrame appends f's wire form to dst. A VIN shorter than 17 bytes
// is padded with NULs, a longer one cut.
func AppendFrame(dst []byte, f *Frame) []byte {
	if f.Edition == Edition2025 {
		dst = append(dst, '$', '$')
	} else {
		dst = append(dst, '#', '#')
	}
	start := len(dst)
	dst = append(dst, f.Cmd, f.Ack)
	vin := f.VIN
	if len(vin) > vinLen {
		vin = vin[:vinLen]
	}
	dst = append(dst, vin...)
	for i := len(vin); i < vinLen; i++ {
		dst = append(dst, 0)
	}
	dst = append(dst, f.Encrypt, byte(len(f.Data)>>8), byte(len(f.Data)))
	dst = append(dst, f.Data...)
	return append(dst, bcc(dst[start:]))
}

// Reader splits a byte stream into frames: bytes before a start mark are
// skipped (and counted), a frame may arrive in any number of reads, a
// declared length over the limit or a bad checksum is an error.
type Reader struct {
	r       io.Reader
	buf     []byte
	start   int // first unread byte
	end     int // end of buffered bytes
	max     int // data-unit limit
	lastVIN string
	// Skipped counts bytes dropped while looking for a start mark.
	Skipped uint64
}

// NewReader reads frames whose data unit is at most maxData bytes.
func NewReader(r io.Reader, maxData int) *Reader {
	if maxData <= 0 || maxData > MaxDataLength {
		maxData = MaxDataLength
	}
	return &Reader{r: r, buf: make([]byte, 512), max: maxData}
}

// fill reads more bytes, growing the buffer to hold need bytes from start.
func (rd *Reader) fill(need int) error {
	if rd.start > 0 && (rd.start == rd.end || need > len(rd.buf)-rd.start) {
		rd.end = copy(rd.buf, rd.buf[rd.start:rd.end])
		rd.start = 0
	}
	if need > len(rd.buf) {
		nb := make([]byte, max(need, 2*len(rd.buf)))
		rd.end = copy(nb, rd.buf[rd.start:rd.end])
		rd.start = 0
		rd.buf = nb
	}
	n, err := rd.r.Read(rd.buf[rd.end:])
	rd.end += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// Next returns the next frame. Errors other than io.EOF mean the stream
// cannot be trusted any more.
func (rd *Reader) Next(f *Frame) error {
	// Find a start mark. A third mark byte ("###") means the mark is one
	// later: command 0x23 (0x24) is reserved, so the first '#' is garbage.
	for {
		i, found, more := rd.start, false, false
		for ; i+1 < rd.end; i++ {
			c := rd.buf[i]
			if (c == '#' || c == '$') && rd.buf[i+1] == c {
				if i+2 >= rd.end {
					more = true
					break
				}
				if rd.buf[i+2] != c {
					found = true
					break
				}
			}
		}
		if !found && !more {
			// Keep a last byte that may be the first half of a mark.
			i = rd.end
			if rd.end > rd.start && (rd.buf[rd.end-1] == '#' || rd.buf[rd.end-1] == '$') {
				i = rd.end - 1
			}
		}
		rd.Skipped += uint64(i - rd.start)
		rd.start = i
		if found {
			break
		}
		if err := rd.fill(3); err != nil {
			if err == io.EOF && rd.start < rd.end {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	for rd.end-rd.start < headerLen {
		if err := rd.fill(headerLen); err != nil {
			return eofMid(err)
		}
	}
	h := rd.buf[rd.start : rd.start+headerLen]
	n := int(h[22])<<8 | int(h[23])
	if n > rd.max {
		return fmt.Errorf("%w: data unit of %d bytes, limit %d", ErrTooLarge, n, rd.max)
	}
	total := headerLen + n + 1
	for rd.end-rd.start < total {
		if err := rd.fill(total); err != nil {
			return eofMid(err)
		}
	}
	p := rd.buf[rd.start : rd.start+total]
	rd.start += total
	if bcc(p[2:total-1]) != p[total-1] {
		return fmt.Errorf("%w: command 0x%02x, got 0x%02x want 0x%02x", ErrChecksum, p[2], p[total-1], bcc(p[2:total-1]))
	}
	f.Edition = Edition2016
	if p[0] == '$' {
		f.Edition = Edition2025
	}
	f.Cmd, f.Ack = p[2], p[3]
	f.VIN = rd.vin(p[4 : 4+vinLen])
	f.Encrypt = p[21]
	f.Data = p[headerLen : total-1]
	return nil
}

func eofMid(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// vin trims NUL padding and reuses the previous frame's string when the
// VIN repeats, which on one connection it always does.
func (rd *Reader) vin(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == 0 || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	if string(b) == rd.lastVIN {
		return rd.lastVIN
	}
	rd.lastVIN = string(b)
	return rd.lastVIN
}
