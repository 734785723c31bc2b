package lwm2m

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestAPIReadLookup(t *testing.T) {
	e, d, up := registered(t, "")
	d.set("/3/0/0", 0, []byte("Edge"))
	call := func(h func(w http.ResponseWriter, r *http.Request), method, target, id string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, nil)
		r.SetPathValue("clientid", id)
		w := httptest.NewRecorder()
		h(w, r)
		return w
	}
	read := func(w http.ResponseWriter, r *http.Request) { apiRead(e.m, w, r) }
	lookup := func(w http.ResponseWriter, r *http.Request) { apiLookup(e.m, w, r) }
	if w := call(read, "POST", "/gateways/lwm2m/clients/cmd/read?path=/3/0/0", "cmd"); w.Code != http.StatusNoContent {
		t.Fatalf("read: %d %s", w.Code, w.Body)
	}
	d.nextReq()
	up.next(t)
	w := call(lookup, "GET", "/gateways/lwm2m/clients/cmd/lookup?path=/3/0/0&action=read", "cmd")
	var got map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != 200 {
		t.Fatalf("lookup: %d %s", w.Code, w.Body)
	}
	golden(t, "api_lookup", got)
	if w := call(read, "POST", "/gateways/lwm2m/clients/nobody/read?path=/3/0/0", "nobody"); w.Code != http.StatusNotFound {
		t.Fatalf("read of unknown client: %d", w.Code)
	}
}
