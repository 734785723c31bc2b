package lwm2m

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// command is one downlink command in EMQX's JSON.
type command struct {
	raw      map[string]any // the whole request; echoed in the reply
	msgType  string
	reqPath  string // data.path or data.basePath, query dropped
	code     codes.Code
	segs     []string // uri path without the alternate path
	query    []string
	cf       int // content format of the payload, -1 for none
	accept   int // -1 for none
	observe  int // -1 for none
	payload  []byte
	senml    []SenML // the write's values, for devices that take SenML, not TLV
	ttl      time.Duration
	queuedAt time.Time
}

// parseCommand reads a command; a bad one gives the error reply to send.
func parseCommand(b []byte) (*command, map[string]any) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var raw map[string]any
	if err := d.Decode(&raw); err != nil || raw == nil {
		return nil, map[string]any{"msgType": "unknown", "data": map[string]any{"code": "4.00", "codeMsg": "bad_request", "reqPath": nil}}
	}
	return newCommand(raw)
}

func errReply(raw map[string]any, code codes.Code) map[string]any {
	out := make(map[string]any, len(raw)+1)
	for k, v := range raw {
		out[k] = v
	}
	var rp any
	if data, ok := raw["data"].(map[string]any); ok {
		if p, ok := data["path"].(string); ok {
			rp = dropQuery(p)
		} else if p, ok := data["basePath"].(string); ok {
			rp = dropQuery(p)
		}
	}
	out["data"] = map[string]any{"reqPath": rp, "code": codeString(code), "codeMsg": codeMsg(code)}
	return out
}

func dropQuery(p string) string {
	p, _, _ = strings.Cut(p, "?")
	return p
}

func splitPath(p string) (segs, query []string, err error) {
	pth, q, _ := strings.Cut(p, "?")
	if _, err := parsePath(pth); err != nil {
		return nil, nil, err
	}
	segs = strings.Split(strings.Trim(pth, "/"), "/")
	if q != "" {
		query = strings.Split(q, "&")
	}
	return segs, query, nil
}

func newCommand(raw map[string]any) (*command, map[string]any) {
	mt, _ := raw["msgType"].(string)
	data, ok := raw["data"].(map[string]any)
	if !ok {
		return nil, errReply(raw, codes.BadRequest)
	}
	c := &command{raw: raw, msgType: mt, cf: -1, accept: -1, observe: -1, ttl: DefaultCommandTTL}
	if mh, ok := raw["mheaders"].(map[string]any); ok {
		if t, ok := mh["ttl"]; ok {
			n, err := strconv.ParseFloat(fmt.Sprint(t), 64)
			if err != nil || n < 0 {
				return nil, errReply(raw, codes.BadRequest)
			}
			c.ttl = time.Duration(n * float64(time.Second))
		}
	}
	pathKey := "path"
	switch mt {
	case "create":
		pathKey = "basePath"
	case "write":
		if _, ok := data["basePath"]; ok {
			pathKey = "basePath"
		}
	}
	p, _ := data[pathKey].(string)
	c.reqPath = dropQuery(p)
	var err error
	switch mt {
	case "read", "discover", "write", "write-attr", "execute", "create", "delete", "observe", "cancel-observe":
	default:
		out := errReply(raw, codes.BadRequest)
		out["data"].(map[string]any)["codeMsg"] = "unsupported_msg_type"
		return nil, out
	}
	if c.segs, c.query, err = splitPath(p); err != nil {
		return nil, errReply(raw, codes.BadRequest)
	}
	enc, _ := raw["encoding"].(string)
	if enc == "" {
		enc, _ = data["encoding"].(string)
	}
	switch mt {
	case "read":
		c.code = codes.GET
	case "discover":
		c.code, c.accept = codes.GET, cfLinkFormat
	case "observe":
		c.code, c.observe = codes.GET, 0
	case "cancel-observe":
		c.code, c.observe = codes.GET, 1
	case "delete":
		c.code = codes.DELETE
	case "execute":
		c.code, c.cf = codes.POST, cfText
		switch a := data["args"].(type) {
		case nil:
		case string:
			if a != "undefined" {
				c.payload = []byte(a)
			}
		default:
			c.payload = []byte(fmt.Sprint(a))
		}
	case "write-attr":
		c.code = codes.PUT
		for _, k := range []string{"pmin", "pmax", "gt", "lt", "st"} {
			if v, ok := data[k]; ok && v != nil {
				c.query = append(c.query, k+"="+fmt.Sprint(v))
			}
		}
	case "write":
		if pathKey == "path" {
			v, err := encodeValue(str(data["type"]), data["value"], enc)
			if err != nil || len(c.segs) < 3 {
				return nil, errReply(raw, codes.BadRequest)
			}
			pp, _ := parsePath(c.reqPath)
			t := TLV{Kind: TLVResource, ID: pp[2], Value: v}
			if len(pp) == 4 {
				t = TLV{Kind: TLVResourceInstance, ID: pp[3], Value: v}
			}
			c.code, c.cf, c.payload = codes.PUT, cfTLV, AppendTLV(nil, []TLV{t})
			c.senml = []SenML{senmlRecord(pp.String(), str(data["type"]), v)}
			break
		}
		fallthrough
	case "create":
		base, _ := parsePath(c.reqPath)
		ts, recs, err := contentTLV(base, data["content"], enc)
		if err != nil {
			return nil, errReply(raw, codes.BadRequest)
		}
		c.cf, c.payload, c.senml = cfTLV, AppendTLV(nil, ts), recs
		switch {
		case mt == "create":
			c.code = codes.POST
		case len(base) == 2:
			c.code = codes.POST
		case len(base) == 3:
			c.code = codes.PUT
		default:
			return nil, errReply(raw, codes.BadRequest)
		}
	default:
		out := errReply(raw, codes.BadRequest)
		out["data"].(map[string]any)["codeMsg"] = "unsupported_msg_type"
		return nil, out
	}
	return c, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// contentTLV builds the TLV of a batch write or create: entries
// {path, type, value}, grouped into object instances and multiple
// resources as their paths say. Paths are absolute or relative to base.
func contentTLV(base path, content any, enc string) ([]TLV, []SenML, error) {
	list, ok := content.([]any)
	if !ok || len(list) == 0 {
		return nil, nil, fmt.Errorf("content must be a non-empty list")
	}
	type leaf struct {
		p   path
		v   []byte
		typ string
	}
	var leaves []leaf
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, nil, fmt.Errorf("content entry is not an object")
		}
		ps := str(m["path"])
		pp, err := parsePath(ps)
		if err != nil {
			return nil, nil, err
		}
		if !strings.HasPrefix(ps, base.String()+"/") && len(base) > 0 {
			pp = append(append(path{}, base...), pp...)
		}
		if len(pp) < 3 || len(pp) > 4 {
			return nil, nil, fmt.Errorf("content path %s is not a resource", pp)
		}
		v, err := encodeValue(str(m["type"]), m["value"], enc)
		if err != nil {
			return nil, nil, err
		}
		leaves = append(leaves, leaf{pp, v, str(m["type"])})
	}
	sort.SliceStable(leaves, func(i, j int) bool {
		a, b := leaves[i].p, leaves[j].p
		for k := 0; k < len(a) && k < len(b); k++ {
			if a[k] != b[k] {
				return a[k] < b[k]
			}
		}
		return len(a) < len(b)
	})
	recs := make([]SenML, 0, len(leaves))
	for _, l := range leaves {
		recs = append(recs, senmlRecord(l.p.String(), l.typ, l.v))
	}
	// Build instance → resources → instances.
	var insts []TLV
	for _, l := range leaves {
		if len(insts) == 0 || insts[len(insts)-1].ID != l.p[1] {
			insts = append(insts, TLV{Kind: TLVObjectInstance, ID: l.p[1], Children: []TLV{}})
		}
		in := &insts[len(insts)-1]
		if len(l.p) == 3 {
			in.Children = append(in.Children, TLV{Kind: TLVResource, ID: l.p[2], Value: l.v})
			continue
		}
		n := len(in.Children)
		if n == 0 || in.Children[n-1].Kind != TLVMultipleResource || in.Children[n-1].ID != l.p[2] {
			in.Children = append(in.Children, TLV{Kind: TLVMultipleResource, ID: l.p[2], Children: []TLV{}})
			n++
		}
		mr := &in.Children[n-1]
		mr.Children = append(mr.Children, TLV{Kind: TLVResourceInstance, ID: l.p[3], Value: l.v})
	}
	switch len(base) {
	case 1: // create on an object: instances, or bare resources for a new instance
		return insts, recs, nil
	case 2:
		if len(insts) != 1 || insts[0].ID != base[1] {
			return nil, nil, fmt.Errorf("content outside %s", base)
		}
		return insts[0].Children, recs, nil
	case 3:
		if len(insts) != 1 {
			return nil, nil, fmt.Errorf("content outside %s", base)
		}
		var out []TLV
		for _, r := range insts[0].Children {
			if r.ID != base[2] {
				return nil, nil, fmt.Errorf("content outside %s", base)
			}
			out = append(out, r)
		}
		return out, recs, nil
	}
	return nil, nil, fmt.Errorf("bad base path %s", base)
}

// coapMessage builds the request; alt is the registration's alternate path.
func (c *command) coapMessage(alt string, token []byte, mid uint16, extra ...message.Option) *message.Message {
	m := &message.Message{Type: message.Confirmable, Code: c.code, MessageID: int32(mid), Token: token, Payload: c.payload}
	var opts message.Options
	for _, o := range extra {
		opts = opts.Add(o)
	}
	if c.observe >= 0 {
		opts = opts.Add(message.Option{ID: message.Observe, Value: uintBytes(uint32(c.observe))})
	}
	if a := strings.Trim(alt, "/"); a != "" {
		for _, s := range strings.Split(a, "/") {
			opts = opts.Add(message.Option{ID: message.URIPath, Value: []byte(s)})
		}
	}
	for _, s := range c.segs {
		opts = opts.Add(message.Option{ID: message.URIPath, Value: []byte(s)})
	}
	if c.cf >= 0 {
		opts = opts.Add(message.Option{ID: message.ContentFormat, Value: uintBytes(uint32(c.cf))})
	}
	for _, q := range c.query {
		opts = opts.Add(message.Option{ID: message.URIQuery, Value: []byte(q)})
	}
	if c.accept >= 0 {
		opts = opts.Add(message.Option{ID: message.Accept, Value: uintBytes(uint32(c.accept))})
	}
	m.Options = opts
	return m
}

func uintBytes(v uint32) []byte {
	switch {
	case v == 0:
		return nil
	case v < 1<<8:
		return []byte{byte(v)}
	case v < 1<<16:
		return []byte{byte(v >> 8), byte(v)}
	case v < 1<<24:
		return []byte{byte(v >> 16), byte(v >> 8), byte(v)}
	}
	return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

// failure is the reply when no CoAP response came: msgType replaced
// ("coap_timeout", "coap_reset", "ack"), the request otherwise as sent.
func (c *command) failure(msgType string) map[string]any {
	out := make(map[string]any, len(c.raw))
	for k, v := range c.raw {
		out[k] = v
	}
	out["msgType"] = msgType
	return out
}

// response is the reply to a CoAP response.
func (c *command) response(code codes.Code, content any, seq int64) map[string]any {
	out := make(map[string]any, len(c.raw)+1)
	for k, v := range c.raw {
		out[k] = v
	}
	data := map[string]any{"reqPath": c.reqPath, "code": codeString(code), "codeMsg": codeMsg(code)}
	if content != nil {
		data["content"] = content
	}
	if seq > 0 {
		out["seqNum"] = seq
	}
	out["data"] = data
	return out
}

func codeString(c codes.Code) string {
	return strconv.Itoa(int(c>>5)) + "." + fmt.Sprintf("%02d", int(c&0x1f))
}

var codeMsgs = map[codes.Code]string{
	codes.Created: "created", codes.Deleted: "deleted", codes.Valid: "valid", codes.Changed: "changed",
	codes.Content: "content", codes.Continue: "continue",
	codes.BadRequest: "bad_request", codes.Unauthorized: "unauthorized", codes.BadOption: "bad_option",
	codes.Forbidden: "forbidden", codes.NotFound: "not_found", codes.MethodNotAllowed: "method_not_allowed",
	codes.NotAcceptable: "not_acceptable", codes.RequestEntityIncomplete: "request_entity_incomplete",
	codes.PreconditionFailed: "precondition_failed", codes.RequestEntityTooLarge: "request_entity_too_large",
	codes.UnsupportedMediaType: "unsupported_content_format", codes.InternalServerError: "internal_server_error",
	codes.NotImplemented: "not_implemented", codes.BadGateway: "bad_gateway", codes.ServiceUnavailable: "service_unavailable",
	codes.GatewayTimeout: "gateway_timeout", codes.ProxyingNotSupported: "proxying_not_supported",
}

func codeMsg(c codes.Code) string {
	if s, ok := codeMsgs[c]; ok {
		return s
	}
	return "unknown"
}

// senmlRecord is one written value as SenML; b is its TLV encoding, which
// encodeValue already checked.
func senmlRecord(name, typ string, b []byte) SenML {
	r := SenML{Name: name}
	switch typ {
	case "Integer", "Time", "Unsigned Integer":
		n, _ := tlvToInt(b)
		f := float64(n)
		r.Value = &f
	case "Float":
		f, _ := tlvToFloat(b)
		r.Value = &f
	case "Boolean":
		v := len(b) == 1 && b[0] == 1
		r.BoolValue = &v
	case "Opaque":
		s := base64.RawURLEncoding.EncodeToString(b)
		r.DataValue = &s
	case "Objlnk":
		s := fmt.Sprintf("%d:%d", binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:]))
		r.ObjLnk = &s
	default:
		s := string(b)
		r.StringValue = &s
	}
	return r
}

// withFormat is c with its write values in SenML (cf 110 or 112) for a
// device that takes SenML rather than TLV; c itself for anything else.
func (c *command) withFormat(cf int) *command {
	if c.senml == nil || cf == 0 {
		return c
	}
	var b []byte
	var err error
	if cf == cfSenMLCBOR {
		b, err = EncodeSenMLCBOR(c.senml)
	} else {
		b, err = json.Marshal(c.senml)
	}
	if err != nil {
		return c
	}
	cc := *c
	cc.cf, cc.payload = cf, b
	return &cc
}
