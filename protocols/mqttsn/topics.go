package mqttsn

import (
	"errors"
	"strings"
)

// errTopicIDsExhausted: a client registered every normal topic id.
var errTopicIDsExhausted = errors.New("mqttsn: topic ids exhausted")

// maxTopicID is the highest normal topic id; 0x0000 and 0xFFFF are reserved.
const maxTopicID = 0xFFFE

// predefined is the gateway-wide table of predefined topic ids. It is
// immutable once built; an update builds a new one.
type predefined struct {
	byID   map[uint16]string
	byName map[string]uint16
}

func newPredefined(list []Predefined) *predefined {
	p := &predefined{byID: make(map[uint16]string, len(list)), byName: make(map[string]uint16, len(list))}
	for _, e := range list {
		p.byID[uint16(e.ID)] = e.Topic
		p.byName[e.Topic] = uint16(e.ID)
	}
	return p
}

// regEntry is one normal topic id of a client.
type regEntry struct {
	name string
	// byClient: the client registered it (to publish); otherwise the
	// gateway assigned it for a subscription or a delivery, and it is
	// re-REGISTERed on resume with subs_resume.
	byClient bool
}

// registry holds the normal topic ids of one client. Ids are per client,
// assigned from 1 up; the maps are made on first use so an idle client
// that never registered costs nothing.
type registry struct {
	byName map[string]uint16
	byID   map[uint16]regEntry
	next   uint16
}

func (r *registry) id(name string) (uint16, bool) {
	id, ok := r.byName[name]
	return id, ok
}

func (r *registry) name(id uint16) (string, bool) {
	e, ok := r.byID[id]
	return e.name, ok
}

// assign returns name's id, assigning the next free one if it has none.
func (r *registry) assign(name string, byClient bool) (uint16, error) {
	if id, ok := r.byName[name]; ok {
		if byClient {
			e := r.byID[id]
			e.byClient = true
			r.byID[id] = e
		}
		return id, nil
	}
	if len(r.byID) >= maxTopicID {
		return 0, errTopicIDsExhausted
	}
	if r.byName == nil {
		r.byName = map[string]uint16{}
		r.byID = map[uint16]regEntry{}
	}
	for {
		r.next++
		if r.next == 0 || r.next > maxTopicID {
			r.next = 1
		}
		if _, used := r.byID[r.next]; !used {
			break
		}
	}
	name = strings.Clone(name)
	r.byName[name] = r.next
	r.byID[r.next] = regEntry{name: name, byClient: byClient}
	return r.next, nil
}

// forget drops name's id, so the next delivery on it registers it anew.
func (r *registry) forget(name string) {
	if id, ok := r.byName[name]; ok {
		delete(r.byName, name)
		delete(r.byID, id)
	}
}

func (r *registry) reset() { *r = registry{} }

// gatewayAssigned lists the topics the gateway assigned ids to, in id order.
func (r *registry) gatewayAssigned() []regItem {
	var out []regItem
	for id, e := range r.byID {
		if !e.byClient {
			out = append(out, regItem{id: id, name: e.name})
		}
	}
	// small n: insertion sort keeps it dependency-free and stable
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].id < out[j-1].id; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

type regItem struct {
	id   uint16
	name string
}

func hasWildcard(s string) bool { return strings.ContainsAny(s, "+#") }
