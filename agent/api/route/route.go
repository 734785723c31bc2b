// Package route lets protocol packages add endpoints to edgeway's HTTP API
// (a CoAP request to a device, LwM2M read/write/observe) without importing
// the agent: it depends on agent/gateway only, so a protocol can call
// Register from its init, and agent/api mounts every registered route under
// /api/v5 with the same authentication, roles, body limit and error format
// as its own endpoints.
//
//	func init() {
//		route.Register("POST", "/gateways/coap/clients/{clientid}/request", request)
//	}
//
//	func request(m *gateway.Manager, w http.ResponseWriter, r *http.Request) {
//		g, ok := m.Get("coap")
//		...
//		route.Error(w, http.StatusNotFound, "CLIENT_NOT_FOUND", "no client "+r.PathValue("clientid"))
//	}
package route

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/edgeway/edgeway/agent/gateway"
)

// Handler serves one registered endpoint. It gets the gateway manager of
// the running agent; path wildcards are read with r.PathValue. The request
// has been authenticated and its role checked before the handler runs: GET
// and HEAD need the viewer role, every other method the admin role. The
// body is already limited to the API's max_body_size (reading past it
// fails with *http.MaxBytesError).
type Handler func(m *gateway.Manager, w http.ResponseWriter, r *http.Request)

// Route is one registered endpoint.
type Route struct {
	Method string
	// Pattern is a net/http ServeMux path pattern relative to /api/v5,
	// such as "/gateways/lwm2m/clients/{clientid}/read".
	Pattern string
	Handler Handler
}

var reg struct {
	sync.Mutex
	routes []Route
}

var methods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true}

// Register adds an endpoint; call it from init. A bad method or pattern, or
// the same method and pattern twice, panics: those are programming errors.
// A pattern that collides with one of the API's own endpoints is reported
// by the API server when it starts.
func Register(method, pattern string, h Handler) {
	method = strings.ToUpper(method)
	if !methods[method] {
		panic(fmt.Sprintf("route: bad method %q for %s", method, pattern))
	}
	if !strings.HasPrefix(pattern, "/") || strings.ContainsAny(pattern, " \t") {
		panic(fmt.Sprintf("route: pattern %q must be a path starting with /", pattern))
	}
	if h == nil {
		panic("route: nil handler for " + pattern)
	}
	reg.Lock()
	defer reg.Unlock()
	for _, r := range reg.routes {
		if r.Method == method && r.Pattern == pattern {
			panic("route: " + method + " " + pattern + " registered twice")
		}
	}
	reg.routes = append(reg.routes, Route{Method: method, Pattern: pattern, Handler: h})
}

// Routes returns the registered routes sorted by pattern, then method.
func Routes() []Route {
	reg.Lock()
	out := append([]Route(nil), reg.routes...)
	reg.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pattern != out[j].Pattern {
			return out[i].Pattern < out[j].Pattern
		}
		return out[i].Method < out[j].Method
	})
	return out
}

// Unregister removes a route; for tests.
func Unregister(method, pattern string) {
	reg.Lock()
	defer reg.Unlock()
	for i, r := range reg.routes {
		if r.Method == strings.ToUpper(method) && r.Pattern == pattern {
			reg.routes = append(reg.routes[:i], reg.routes[i+1:]...)
			return
		}
	}
}

// JSON writes v as a JSON response with the given status.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// ErrorBody is the API's error answer, as EMQX writes it.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error writes {code, message} with the given status. Codes are EMQX's
// upper-case words: BAD_REQUEST, NOT_FOUND, CLIENT_NOT_FOUND, …
func Error(w http.ResponseWriter, status int, code, message string) {
	JSON(w, status, ErrorBody{Code: code, Message: message})
}
