package lwm2m

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/edgeway/edgeway/agent/config"
)

// tlvCases is the one table of TLV encodings, shared by encode and decode
// (the vectors follow OMA-TS-LightweightM2M-V1_0 §6.4.3.2).
var tlvCases = []struct {
	name string
	b    []byte
	tlv  []TLV
}{
	{"resource 8-bit id short", mustHex("C800144F70656E204D6F62696C6520416C6C69616E6365"),
		[]TLV{{Kind: TLVResource, ID: 0, Value: []byte("Open Mobile Alliance")}}},
	{"resource integer", mustHex("C10955"), []TLV{{Kind: TLVResource, ID: 9, Value: []byte{0x55}}}},
	{"resource empty", mustHex("C004"), []TLV{{Kind: TLVResource, ID: 4, Value: []byte{}}}},
	{"16-bit id", mustHex("E416443FC00000"), []TLV{{Kind: TLVResource, ID: 5700, Value: mustHex("3FC00000")}}},
	{"multiple resource", mustHex("8606410001410102"),
		[]TLV{{Kind: TLVMultipleResource, ID: 6, Children: []TLV{
			{Kind: TLVResourceInstance, ID: 0, Value: []byte{1}},
			{Kind: TLVResourceInstance, ID: 1, Value: []byte{2}}}}}},
	{"object instance", mustHex("0500C10055C001"),
		[]TLV{{Kind: TLVObjectInstance, ID: 0, Children: []TLV{
			{Kind: TLVResource, ID: 0, Value: []byte{0x55}},
			{Kind: TLVResource, ID: 1, Value: []byte{}}}}}},
	{"16-bit length", append(mustHex("D0010100"), bytes.Repeat([]byte{'a'}, 256)...),
		[]TLV{{Kind: TLVResource, ID: 1, Value: bytes.Repeat([]byte{'a'}, 256)}}},
	{"empty object instance", mustHex("0001"), []TLV{{Kind: TLVObjectInstance, ID: 1, Children: []TLV{}}}},
}

func TestTLV(t *testing.T) {
	for _, tc := range tlvCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeTLV(tc.b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, tc.tlv) {
				t.Fatalf("decode:\n got %+v\nwant %+v", got, tc.tlv)
			}
			if enc := AppendTLV(nil, tc.tlv); !bytes.Equal(enc, tc.b) {
				t.Fatalf("encode: %X, want %X", enc, tc.b)
			}
		})
	}
	for _, bad := range []string{"C8", "C80A01", "C10A", "E1", "8601C10155", "20"} {
		if _, err := DecodeTLV(mustHex(bad)); err == nil {
			t.Errorf("DecodeTLV(%s) accepted", bad)
		}
	}
}

func FuzzTLV(f *testing.F) {
	for _, tc := range tlvCases {
		f.Add(tc.b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, err := DecodeTLV(b)
		if err != nil {
			return
		}
		again, err := DecodeTLV(AppendTLV(nil, ts))
		if err != nil || !reflect.DeepEqual(normTLV(again), normTLV(ts)) {
			t.Fatalf("re-encoding %X changed it: %v", b, err)
		}
		_, _ = decodeContent(cfTLV, b, path{3, 0}, builtinObjects())
	})
}

// normTLV clears the distinction between nil and empty values.
func normTLV(ts []TLV) []TLV {
	for i := range ts {
		if len(ts[i].Value) == 0 {
			ts[i].Value = nil
		}
		ts[i].Children = normTLV(ts[i].Children)
	}
	return ts
}

func f64(v float64) *float64 { return &v }
func sp(s string) *string    { return &s }
func bp(b bool) *bool        { return &b }

// senmlCBORCases is the table of SenML CBOR packs, shared by encode and
// decode.
var senmlCBORCases = []struct {
	name string
	b    []byte
	recs []SenML
}{
	{"base name and float", mustHex("81A321682F333330332F312F" + "006435373030" + "02FA41B40000"),
		[]SenML{{BaseName: "/3303/1/", Name: "5700", Value: f64(22.5)}}},
	{"integer, string, bool", mustHex("83A2006131021864A20061320363436F6CA2006133" + "04F5"),
		[]SenML{{Name: "1", Value: f64(100)}, {Name: "2", StringValue: sp("Col")}, {Name: "3", BoolValue: bp(true)}}},
	{"negative integer and data", mustHex("82A20061340220" + "A2006135" + "0842DEAD"),
		[]SenML{{Name: "4", Value: f64(-1)}, {Name: "5", DataValue: sp("3q0")}}},
	{"object link", mustHex("81A200613663766C6F63313A32"),
		[]SenML{{Name: "6", ObjLnk: sp("1:2")}}},
}

func TestSenMLCBOR(t *testing.T) {
	for _, tc := range senmlCBORCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeSenMLCBOR(tc.b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, tc.recs) {
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(tc.recs)
				t.Fatalf("decode:\n got %s\nwant %s", gj, wj)
			}
			enc, err := EncodeSenMLCBOR(tc.recs)
			if err != nil || !bytes.Equal(enc, tc.b) {
				t.Fatalf("encode: %X (%v), want %X", enc, err, tc.b)
			}
		})
	}
	for _, bad := range []string{"", "81", "81A1", "9F", "A1F6F6", "81A10063", "1C", "81A102F8"} {
		if _, err := DecodeSenMLCBOR(mustHex(bad)); err == nil {
			t.Errorf("DecodeSenMLCBOR(%s) accepted", bad)
		}
	}
	// float16 (RFC 8949 Appendix A)
	for hx, want := range map[string]float64{"F93C00": 1, "F9C400": -4, "F97BFF": 65504, "F90001": 5.960464477539063e-8} {
		v, err := cborDecode(mustHex(hx))
		if err != nil || v != want {
			t.Errorf("%s: %v %v, want %v", hx, v, err, want)
		}
	}
}

func FuzzSenMLCBOR(f *testing.F) {
	for _, tc := range senmlCBORCases {
		f.Add(tc.b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := DecodeSenMLCBOR(b)
		if err != nil {
			return
		}
		enc, err := EncodeSenMLCBOR(rs)
		if err != nil {
			return // e.g. a vd that is not base64url after all
		}
		again, err := DecodeSenMLCBOR(enc)
		if err != nil || len(again) != len(rs) {
			t.Fatalf("re-encoding %X: %v", b, err)
		}
		_, _ = resolveSenML(rs)
	})
}

func TestSenMLJSON(t *testing.T) {
	rs, err := DecodeSenMLJSON([]byte(`[{"bn":"/3/0/","n":"0","vs":"Edge"},{"n":"9","v":87},{"n":"3","vb":false},{"n":"5","vd":"3q0"},{"bn":"/6/0/","n":"0","v":43.5}]`))
	if err != nil {
		t.Fatal(err)
	}
	items, err := resolveSenML(rs)
	if err != nil {
		t.Fatal(err)
	}
	want := []item{{"/3/0/0", "Edge"}, {"/3/0/9", 87.0}, {"/3/0/3", false}, {"/3/0/5", "3q0="}, {"/6/0/0", 43.5}}
	if !reflect.DeepEqual(items, want) {
		t.Fatalf("got %v\nwant %v", items, want)
	}
	if _, err := DecodeSenMLJSON([]byte(`{"n":1}`)); err == nil {
		t.Fatal("object accepted as a pack")
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		keys, err string
	}{
		{`lifetime_min = "10s"` + "\n" + `lifetime_max = "5s"`, "lifetime_max: must be at least 1s and lifetime_min"},
		{`update_msg_publish_condition = "never"`, `update_msg_publish_condition: must be always or contains_object_list, got "never"`},
		{`max_mqueue_len = 0`, "max_mqueue_len: must be 1..65536, got 0"},
		{`auto_observe = 3`, "auto_observe: expected true, false or a list of paths"},
		{`auto_observe = ["/3/x"]`, `auto_observe: bad path "/3/x"`},
		{`xml_dir = "/nonexistent"`, `xml_dir: "/nonexistent" is not a readable directory`},
		{"[gateway.lwm2m.translators.notify]\ntopic = \"up/#\"", `translators.notify.topic: must not contain wildcards`},
		{"[gateway.lwm2m.translators.register]\nqos = 3", "translators.register.qos: must be 0, 1 or 2, got 3"},
		{"[gateway.lwm2m.blockwise]\nmax_block_size = 1000", "blockwise.max_block_size: must be a power of two from 16 to 1024, got 1000"},
		{`auto_observe = "/3/0,/3303"`, ""},
		{`auto_observe = true`, ""},
	} {
		_, err := config.Parse([]byte("[gateway.lwm2m]\n"+tc.keys+"\n"), "t.toml")
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.keys, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: got %v, want %q", tc.keys, err, tc.err)
		}
	}
}

func TestObjectXML(t *testing.T) {
	dir := t.TempDir()
	x := `<?xml version="1.0" encoding="utf-8"?>
<LWM2M><Object ObjectType="MODefinition"><Name>Demo</Name><ObjectID>3442</ObjectID>
<Resources><Item ID="110"><Name>s</Name><Type>String</Type></Item><Item ID="120"><Name>i</Name><Type>Integer</Type></Item>
<Item ID="130"><Name>b</Name><Type>Boolean</Type></Item></Resources></Object></LWM2M>`
	if err := os.WriteFile(filepath.Join(dir, "3442.xml"), []byte(x), 0o644); err != nil {
		t.Fatal(err)
	}
	db, err := loadObjects(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeContent(cfTLV, mustHex("C86E0568656C6C6FC8780102C8820101"), path{3442, 0}, db)
	if err != nil {
		t.Fatal(err)
	}
	want := []item{{"/3442/0/110", "hello"}, {"/3442/0/120", int64(2)}, {"/3442/0/130", true}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if db.typeOf(3, 9) != typeInteger {
		t.Fatal("built-in definitions lost")
	}
}

// FuzzContent runs every response decoder on any payload.
func FuzzContent(f *testing.F) {
	for _, tc := range tlvCases {
		f.Add(uint16(cfTLV), tc.b)
	}
	for _, tc := range senmlCBORCases {
		f.Add(uint16(cfSenMLCBOR), tc.b)
	}
	f.Add(uint16(cfOMAJSON), []byte(`{"bn":"/6/0/","e":[{"n":"0","v":43.1}]}`))
	f.Add(uint16(cfSenMLJSON), []byte(`[{"bn":"/3/0/","n":"0","vs":"x"}]`))
	f.Add(uint16(cfText), []byte("87"))
	f.Add(uint16(cfCBOR), []byte{0x18, 0x64})
	db := builtinObjects()
	f.Fuzz(func(t *testing.T, cf uint16, b []byte) {
		for _, p := range []path{{3}, {3, 0}, {3, 0, 9}, {3, 0, 11, 0}} {
			_, _ = decodeContent(int(cf), b, p, db)
		}
	})
}
