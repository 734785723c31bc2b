package lwm2m

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/edgeway/edgeway/agent/api/route"
	"github.com/edgeway/edgeway/agent/gateway"
)

func init() {
	route.Register("POST", "/gateways/lwm2m/clients/{clientid}/read", apiRead)
	route.Register("POST", "/gateways/lwm2m/clients/{clientid}/write", apiWrite)
	route.Register("POST", "/gateways/lwm2m/clients/{clientid}/observe", apiObserve)
	route.Register("GET", "/gateways/lwm2m/clients/{clientid}/lookup", apiLookup)
}

// ErrNoClient is returned for a clientid with no live registration.
var ErrNoClient = errors.New("lwm2m: no such client")

func protoOf(m *gateway.Manager) *proto {
	g, ok := m.Get("lwm2m")
	if !ok {
		return nil
	}
	p, _ := protos.Load(g)
	pp, _ := p.(*proto)
	return pp
}

func (p *proto) byClientID(clientid string) *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.byLoc {
		if s.client != nil && s.client.ClientID() == clientid {
			return s
		}
	}
	return nil
}

// SendCommand queues a command, in EMQX's JSON form as a map, for the
// registration of clientid, exactly as if it came on the command topic;
// the reply goes to the response topic and to Lookup.
func SendCommand(m *gateway.Manager, clientid string, cmd map[string]any) error {
	p := protoOf(m)
	if p == nil {
		return ErrNoClient
	}
	s := p.byClientID(clientid)
	if s == nil {
		return ErrNoClient
	}
	c, errResp := newCommand(cmd)
	if errResp != nil {
		return errors.New("lwm2m: bad command: " + errResp["data"].(map[string]any)["codeMsg"].(string))
	}
	s.enqueue(c)
	return nil
}

// Lookup returns the last reply to action ("read", "write", "observe",
// "discover", "notify"…) on path for clientid.
func Lookup(m *gateway.Manager, clientid, action, path string) (map[string]any, error) {
	p := protoOf(m)
	if p == nil {
		return nil, ErrNoClient
	}
	s := p.byClientID(clientid)
	if s == nil {
		return nil, ErrNoClient
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, _ := s.records[action+" "+path].(map[string]any)
	return r, nil
}

func send(m *gateway.Manager, w http.ResponseWriter, r *http.Request, cmd map[string]any) {
	if err := SendCommand(m, r.PathValue("clientid"), cmd); err != nil {
		if errors.Is(err, ErrNoClient) {
			route.Error(w, http.StatusNotFound, "CLIENT_NOT_FOUND", "no lwm2m client "+r.PathValue("clientid"))
			return
		}
		route.Error(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func apiRead(m *gateway.Manager, w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	send(m, w, r, map[string]any{"msgType": "read", "data": map[string]any{"path": q.Get("path")}})
}

func apiWrite(m *gateway.Manager, w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	send(m, w, r, map[string]any{"msgType": "write", "data": map[string]any{"path": q.Get("path"), "type": q.Get("type"), "value": q.Get("value")}})
}

func apiObserve(m *gateway.Manager, w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	mt := "observe"
	if en, err := strconv.ParseBool(q.Get("enable")); err == nil && !en {
		mt = "cancel-observe"
	}
	send(m, w, r, map[string]any{"msgType": mt, "data": map[string]any{"path": q.Get("path")}})
}

func apiLookup(m *gateway.Manager, w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id, action, pth := r.PathValue("clientid"), q.Get("action"), q.Get("path")
	rec, err := Lookup(m, id, action, pth)
	if err != nil {
		route.Error(w, http.StatusNotFound, "CLIENT_NOT_FOUND", "no lwm2m client "+id)
		return
	}
	out := map[string]any{"clientid": id, "path": pth, "action": action}
	if data, ok := rec["data"].(map[string]any); ok {
		for _, k := range []string{"code", "codeMsg", "content"} {
			if v, ok := data[k]; ok {
				out[k] = v
			}
		}
	}
	route.JSON(w, http.StatusOK, out)
}
