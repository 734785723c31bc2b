package benchkit

import (
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// CoAPSeeds are wire cases of the CoAP codec tests (valid and refused)
// and requests at the CoAP gateway's paths.
var CoAPSeeds = [][]byte{
	unhex("60000001"), unhex("70001234"), unhex("4201abcd7470b270730161"),
	unhex("5102000778b2707346633d64657631ff6869"), unhex("410100016160d10903"), unhex("40020001d1f500"),
	unhex("40020001e00001"), unhex("40020001e000"), unhex("40010001bd02" + strings.Repeat("61", 15)),
	unhex("4001"), unhex("80010001"), unhex("49010001"), unhex("44010001aabb"), unhex("40010001b37073"),
	unhex("40010001f0"), unhex("40010001bf"), unhex("40020001ff"), unhex("41000001aa"), unhex("40000001ff01"),
	unhex("4001000190"), unhex("4001000131610161"), unhex("400100015101"),
	// CON POST /mqtt/connection?clientid=f&username=u&password=p (EMQX's connect)
	unhex("40020002 b46d717474 0a636f6e6e656374696f6e 4a636c69656e7469643d66 0a757365726e616d653d75 0a70617373776f72643d70"),
	// CON POST /ps/t?c=f&q=1, payload "x"
	unhex("41020003aa b27073 0174 43633d66 03713d31 ff78"),
}

// LwM2MSeeds are CoAP requests at a LwM2M server's paths: a 1.1
// registration (CON POST /rd?ep=flood&lt=60&lwm2m=1.1, link format), an
// update, a Send, a de-registration; plus every CoAP seed.
var LwM2MSeeds = append([][]byte{
	unhex("42020010aaaa b27264 1128 38 65703d666c6f6f64 05 6c743d3630 09 6c776d326d3d312e31 ff 3c2f312f303e2c3c2f332f303e"),
	unhex("42020011aaab b27264 0161 ff 3c2f332f303e"),
	unhex("42020012aaac b26470 1170 ff 81a32165 2f332f302f 00613002 1857"),
	unhex("42040013aaad b27264 0161"),
}, CoAPSeeds...)

// LwM2MContentSeeds are SenML CBOR packs (and SenML JSON) for the body of
// a LwM2M Send.
var LwM2MContentSeeds = [][]byte{
	unhex("81a3 21 652f332f302f 00 6130 02 1857"),                        // [{bn:"/3/0/", n:"0", v:87}]
	unhex("82a3 21 652f332f302f 00 6130 03 6445646765 a2 00 6139 04 f4"), // vs "Edge", then vb false
	unhex("81a3 21 662f31392f302f 00 6130 08 43010203"),                  // vd h'010203'
	unhex("81a2 00 662f362f302f30 02 fb4045c00000000000"),                // v 43.5 (float64)
	unhex("81a2 21 652f332f302f 06 1a5f5e1000"),                          // bt only
	[]byte(`[{"bn":"/19/0/","n":"0","vd":"AAEC"}]`), []byte(`[{"bn":"/3/0/","n":"0","vs":"x"},{"n":"9","v":87}]`),
	unhex("9f a1 00 6130 ff"), unhex("81 bf 00 6130 ff"), unhex("81a1 20 1b7fffffffffffffff"),
}

// JT808Seeds are 2013 frames from the generator's encoder: registration,
// authentication, heartbeat, location report (with and without extras),
// terminal answer, and a 2019 header.
var JT808Seeds = func() [][]byte {
	ph := [6]byte{0x01, 0x39, 0x12, 0x34, 0x56, 0x78}
	loc := unhex("00000000 00000003 01da9c20 06f31500 0028 0000 005a 250101120000 0104 00000064 e003 656201")
	reg := append(unhex("000b0001 4245 4e4348"), make([]byte, 20)...)
	reg = append(reg, "1234567\x01B12345"...)
	out := [][]byte{
		jtAppendFrame(nil, jtRegister, ph, 1, reg), jtAppendFrame(nil, jtAuth, ph, 2, []byte("code")),
		jtAppendFrame(nil, 0x0002, ph, 3, nil), jtAppendFrame(nil, jtLocation, ph, 4, loc),
		jtAppendFrame(nil, jtLocation, ph, 5, loc[:28]), jtAppendFrame(nil, jtTermAck, ph, 6, unhex("0001 8103 00")),
		jtAppendFrame(nil, 0x0704, ph, 7, append(unhex("0002 01 001c"), loc[:28]...)), jtAppendFrame(nil, 0x0003, ph, 8, nil),
		jtAppendFrame(nil, 0x0900, ph, 9, unhex("f0 68656c6c6f")), jtAppendFrame(nil, 0x0f00, ph, 10, unhex("aa")),
		// 2019: version flag, protocol version 1, BCD[10] phone
		unhex("7e 0002 4000 01 00000000013912345678 000b 7f 7e"),
	}
	return out
}()

// GBT32960Seeds are 2016 frames from the generator's encoder: vehicle
// login, real-time reports (vehicle data, location, a user-defined unit),
// reissue, heartbeat, time calibration, logout, a platform login.
var GBT32960Seeds = func() [][]byte {
	vin := "LSVNV2182E2100001"
	t := unhex("190101120000")
	cat := func(b ...[]byte) []byte {
		var o []byte
		for _, x := range b {
			o = append(o, x...)
		}
		return o
	}
	vehicle := unhex("01 01 03 01 0064 000186a0 1770 03e8 63 01 0f 2710 00 00")
	location := unhex("05 00 06f31500 01da9c20")
	return [][]byte{
		gbtAppendFrame(nil, gbtLogin, gbtCommand, vin, cat(t, unhex("0001"), []byte("89860000000000000000"), unhex("01 01 01"))),
		gbtAppendFrame(nil, gbtRealtime, gbtCommand, vin, cat(t, vehicle, location)),
		gbtAppendFrame(nil, gbtRealtime, gbtCommand, vin, cat(t, []byte{gbtBenchInfo}, []byte("payload"))),
		gbtAppendFrame(nil, 0x03, gbtCommand, vin, cat(t, location)),
		gbtAppendFrame(nil, gbtHeartbeat, gbtCommand, vin, nil), gbtAppendFrame(nil, 0x08, gbtCommand, vin, nil),
		gbtAppendFrame(nil, gbtLogout, gbtCommand, vin, cat(t, unhex("0001"))),
		gbtAppendFrame(nil, 0x05, gbtCommand, vin, cat(t, unhex("0001"), []byte("user\x00\x00\x00\x00\x00\x00\x00\x00\x00password\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), []byte{1})),
		gbtAppendFrame(nil, 0x82, 0x01, vin, cat(t, unhex("01 0000"))),
	}
}()
