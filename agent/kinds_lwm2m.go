//go:build !nogw_lwm2m && (!nogw_all || gw_lwm2m)

package agent

import _ "github.com/edgeway/edgeway/protocols/lwm2m"
