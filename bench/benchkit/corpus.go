package benchkit

import (
	"bufio"
	"context"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// ReadFuzzCorpus reads every `go test fuzz v1` file under dir (a
// testdata/fuzz/FuzzXxx directory) and returns the []byte and string
// values in them. A missing dir is no error: corpora are optional.
func ReadFuzzCorpus(dir string) [][]byte {
	var out [][]byte
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			l = strings.TrimSpace(l)
			var lit string
			switch {
			case strings.HasPrefix(l, "[]byte(") && strings.HasSuffix(l, ")"):
				lit = l[len("[]byte(") : len(l)-1]
			case strings.HasPrefix(l, "string(") && strings.HasSuffix(l, ")"):
				lit = l[len("string(") : len(l)-1]
			default:
				continue
			}
			if s, err := strconv.Unquote(lit); err == nil {
				out = append(out, []byte(s))
			}
		}
	}
	return out
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// MQTTSNSeeds are wire cases of the MQTT-SN codec tests (valid frames, to
// be mutated) and known-bad frames.
var MQTTSNSeeds = [][]byte{
	unhex("05 00 01 0384"), unhex("03 01 01"), unhex("0a 04 04 01 001e 64657631"),
	unhex("09 0c 20 0001 0005 c0db"), unhex("05 fe 00 aabb 02 16"), unhex("02 16"), unhex("02 18"),
	unhex("00"), unhex("01"), unhex("01 00 03 0c"), unhex("01 ff ff 0c 00"), unhex("ff 0c"),
	unhex("03 fe 00"), unhex("04 ff 00 00"), unhex("07 0c 60 0001"), unhex("05 04 04 02 00"),
}

// STOMPSeeds are frames of the STOMP codec tests, most malformed.
var STOMPSeeds = [][]byte{
	[]byte("SEND\ndestination:a\nx:\\t\n\n\x00"), []byte("SEND\ndestination\n\n\x00"),
	[]byte("PUBLISH\n\n\x00"), []byte("MESSAGE\n\n\x00"), []byte("SEND\ndestination:a\nqos:3\n\n\x00"),
	[]byte("SUBSCRIBE\nid:1\ndestination:a\nack:sometimes\n\n\x00"), []byte("SUBSCRIBE\ndestination:a\n\n\x00"),
	[]byte("SEND\ndestination:a\ncontent-length:99999999\n\nx\x00"), []byte("SEND\ndestination:#\n\nx\x00"),
	[]byte("CONNECT\naccept-version:9.9\n\n\x00"), []byte("\x00\x00\x00"), []byte("SEND\n" + strings.Repeat("h:v\n", 2000) + "\n\x00"),
}

// Mutate returns a corrupted copy of seed: truncated, bit-flipped,
// length-mangled or with random bytes inserted.
func Mutate(r *rand.Rand, seed []byte) []byte {
	b := append([]byte(nil), seed...)
	if len(b) == 0 {
		b = []byte{0}
	}
	switch r.IntN(5) {
	case 0:
		b = b[:r.IntN(len(b))+1]
	case 1:
		for range r.IntN(4) + 1 {
			b[r.IntN(len(b))] ^= byte(1 << r.IntN(8))
		}
	case 2:
		b[0] = byte(r.IntN(256))
	case 3:
		i := r.IntN(len(b))
		junk := make([]byte, r.IntN(16)+1)
		for j := range junk {
			junk[j] = byte(r.IntN(256))
		}
		b = append(b[:i], append(junk, b[i:]...)...)
	case 4:
		// unchanged: seeds are mostly malformed already
	}
	return b
}

// Flood sends malformed frames until ctx ends: MQTT-SN datagrams from a
// few sockets to snAddr, and STOMP connections to stompAddr that send a
// bad frame after CONNECT (or none) and read until the server closes.
// rate caps datagrams per second (0 = unlimited). Returns frames sent.
func Flood(ctx context.Context, snAddr, stompAddr string, snSeeds, stompSeeds [][]byte, rate int) (sentSN, sentSTOMP *atomic.Int64) {
	sentSN, sentSTOMP = new(atomic.Int64), new(atomic.Int64)
	if snAddr != "" && len(snSeeds) > 0 {
		for w := 0; w < 4; w++ {
			go func(w int) {
				r := rand.New(rand.NewPCG(uint64(w), 1))
				c, err := net.Dial("udp", snAddr)
				if err != nil {
					return
				}
				defer c.Close()
				var tick *time.Ticker
				if rate > 0 {
					tick = time.NewTicker(time.Second / time.Duration(max(rate/400, 1))) // bursts of 100 from 4 sockets
					defer tick.Stop()
				}
				for ctx.Err() == nil {
					if tick != nil {
						select {
						case <-tick.C:
						case <-ctx.Done():
							return
						}
					}
					burst := 100
					if tick == nil {
						burst = 1
					}
					for range burst {
						_, _ = c.Write(Mutate(r, snSeeds[r.IntN(len(snSeeds))]))
						sentSN.Add(1)
					}
				}
			}(w)
		}
	}
	if stompAddr != "" && len(stompSeeds) > 0 {
		for w := 0; w < 4; w++ {
			go func(w int) {
				r := rand.New(rand.NewPCG(uint64(w), 2))
				for ctx.Err() == nil {
					c, err := net.DialTimeout("tcp", stompAddr, time.Second)
					if err != nil {
						time.Sleep(10 * time.Millisecond)
						continue
					}
					_ = c.SetDeadline(time.Now().Add(2 * time.Second))
					w := bufio.NewWriter(c)
					if r.IntN(3) > 0 {
						w.WriteString("CONNECT\naccept-version:1.2\nhost:x\n\n\x00")
					}
					w.Write(Mutate(r, stompSeeds[r.IntN(len(stompSeeds))]))
					_ = w.Flush()
					sentSTOMP.Add(1)
					_, _ = io.Copy(io.Discard, c)
					c.Close()
				}
			}(w)
		}
	}
	return sentSN, sentSTOMP
}
