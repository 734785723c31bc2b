package lwm2m

import (
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Resource data types, as OMA object XML spells them.
const (
	typeString  = "String"
	typeInteger = "Integer"
	typeUint    = "Unsigned Integer"
	typeFloat   = "Float"
	typeBoolean = "Boolean"
	typeOpaque  = "Opaque"
	typeTime    = "Time"
	typeObjlnk  = "Objlnk"
	typeCorelnk = "Corelnk"
)

// objectDB maps object id → resource id → data type. It is read-only
// after load.
type objectDB map[uint16]map[uint16]string

func (db objectDB) typeOf(obj, res uint16) string {
	if m, ok := db[obj]; ok {
		if t, ok := m[res]; ok {
			return t
		}
	}
	if obj >= 3300 && obj < 3500 {
		if t, ok := ipsoCommon[res]; ok {
			return t
		}
	}
	return ""
}

// builtinObjects are the core objects 0–7; IPSO objects share ipsoCommon.
func builtinObjects() objectDB {
	s, i, f, b, o, t := typeString, typeInteger, typeFloat, typeBoolean, typeOpaque, typeTime
	return objectDB{
		0: {0: s, 1: b, 2: i, 3: o, 4: o, 5: o, 6: i, 7: o, 8: o, 9: o, 10: i, 11: i, 12: i},
		1: {0: i, 1: i, 2: i, 3: i, 5: i, 6: b, 7: s, 16: b, 17: i, 18: i, 19: i, 20: i, 21: typeUint, 22: s},
		2: {0: i, 1: i, 2: i, 3: i},
		3: {0: s, 1: s, 2: s, 3: s, 6: i, 7: i, 8: i, 9: i, 10: i, 11: i, 13: t, 14: s, 15: s, 16: s, 17: s, 18: s, 19: s, 20: i, 21: i},
		4: {0: i, 1: i, 2: i, 3: i, 4: s, 5: s, 6: i, 7: s, 8: i, 9: i, 10: i},
		5: {0: o, 1: s, 3: i, 5: i, 6: s, 7: s, 8: i, 9: i},
		6: {0: f, 1: f, 2: f, 3: f, 4: o, 5: t, 6: f},
		7: {0: i, 1: i, 2: i, 3: i, 4: i, 5: i, 6: i, 7: i},
	}
}

var ipsoCommon = map[uint16]string{
	5500: typeBoolean, 5501: typeInteger, 5513: typeString, 5514: typeString,
	5601: typeFloat, 5602: typeFloat, 5603: typeFloat, 5604: typeFloat,
	5700: typeFloat, 5701: typeString, 5750: typeString, 5800: typeFloat, 5805: typeFloat,
	5820: typeFloat, 5821: typeFloat, 5850: typeBoolean, 5851: typeInteger,
}

type xmlModel struct {
	Objects []struct {
		ID        uint16 `xml:"ObjectID"`
		Resources []struct {
			ID   uint16 `xml:"ID,attr"`
			Type string `xml:"Type"`
		} `xml:"Resources>Item"`
	} `xml:"Object"`
}

// loadObjects reads every *.xml in dir over the built-in definitions.
func loadObjects(dir string) (objectDB, error) {
	db := builtinObjects()
	if dir == "" {
		return db, nil
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.xml"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("lwm2m: xml_dir: %w", err)
		}
		var m xmlModel
		if err := xml.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("lwm2m: xml_dir: %s: %w", filepath.Base(f), err)
		}
		for _, o := range m.Objects {
			rs := map[uint16]string{}
			for _, r := range o.Resources {
				rs[r.ID] = strings.TrimSpace(r.Type)
			}
			db[o.ID] = rs
		}
	}
	return db, nil
}
