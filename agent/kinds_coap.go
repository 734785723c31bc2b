//go:build !nogw_coap && (!nogw_all || gw_coap)

package agent

import _ "github.com/edgeway/edgeway/protocols/coap"
