//go:build !nogw_mqttsn && (!nogw_all || gw_mqttsn)

package agent

import _ "github.com/edgeway/edgeway/protocols/mqttsn"
